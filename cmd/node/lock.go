package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockFileName is the file in the data dir that a running daemon holds an exclusive flock
// on. Two daemons on one data dir would share a peer id and fork each other's logs.
const lockFileName = "LOCK"

type dataDirLock struct{ f *os.File }

// lockDataDir takes the data dir's lock or explains who holds it. The kernel drops the lock
// when the process dies, so a crash never leaves a stale lock behind; the pid written into
// the file is only for the message.
func lockDataDir(dir string) (*dataDirLock, error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		// Usually a read-only mount or wrong ownership: the node could not store anything.
		return nil, fmt.Errorf("data directory %s is not writable: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder := ""
		if data, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(data))); perr == nil {
				holder = fmt.Sprintf(" (by process %d)", pid)
			}
		}
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s is in use by another panda-node%s: two nodes on one data dir would share a peer id and fork their logs; stop the other node or use another --data-dir", dir, holder)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dataDirLock{f: f}, nil
}

// release unlocks by closing the file; the file stays (removing it would race a starting
// daemon that already opened it).
func (l *dataDirLock) release() { _ = l.f.Close() }
