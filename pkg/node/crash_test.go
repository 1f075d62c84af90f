package node

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/store"
)

const crashEnv = "PANDANET_CRASH_CHILD_DB"

// crashChild runs the child side of TestCrashDuringIngest when the test binary is
// re-executed with crashEnv set: it publishes into a file store from several goroutines
// (with an occasional prune) and prints "<topic index> <hash>" once Wait succeeded, until
// it is killed.
func crashChild() bool {
	path := os.Getenv(crashEnv)
	if path == "" {
		return false
	}
	ctx := context.Background()
	n, err := New(ctx, WithDatabase(path))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var out sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for ti := 0; ti < 3; ti++ {
		pub, sub, err := n.Stream(ctx, crashTopic(ti))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		go func() {
			for range sub.Events() {
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				var p *Pending
				if i%97 == 96 {
					p, err = pub.Prune(ctx, []byte("prune"))
				} else {
					p, err = pub.Publish(ctx, []byte(fmt.Sprintf("message %d", i)))
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				if _, err := p.Wait(ctx); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				out.Lock()
				fmt.Fprintf(w, "%d %s\n", ti, p.Hash())
				w.Flush()
				out.Unlock()
			}
		}()
	}
	wg.Wait()
	return true
}

func crashTopic(i int) operation.Topic {
	return operation.Topic(operation.HashOf([]byte(fmt.Sprint("crash", i))))
}

func TestCrashDuringIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "crash.sqlite")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type printed struct {
		topic int
		hash  operation.Hash
	}
	var seen []printed
	sc := bufio.NewScanner(stdout)
	deadline := time.Now().Add(60 * time.Second)
	for len(seen) < 600 && sc.Scan() {
		var ti int
		var hs string
		if _, err := fmt.Sscanf(sc.Text(), "%d %s", &ti, &hs); err != nil {
			t.Fatalf("child output %q: %v", sc.Text(), err)
		}
		h, err := operation.ParseHash(hs)
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, printed{ti, h})
		if time.Now().After(deadline) {
			break
		}
	}
	// Kill mid-ingest: the child keeps publishing while we read.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() { // lines already written before the kill are confirmed too
		var ti int
		var hs string
		if _, err := fmt.Sscanf(sc.Text(), "%d %s", &ti, &hs); err == nil {
			if h, err := operation.ParseHash(hs); err == nil {
				seen = append(seen, printed{ti, h})
			}
		}
	}
	cmd.Wait()
	if len(seen) < 100 {
		t.Fatalf("child confirmed only %d operations; stderr: %s", len(seen), stderr.String())
	}

	ctx := testCtx(t)
	s, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.IntegrityCheck(ctx); err != nil {
		t.Fatal(err)
	}
	// Every log is gap-free from its first retained entry, which is seq 0 or a prune op.
	first := map[int]uint64{}
	var author operation.PublicKey
	for ti := 0; ti < 3; ti++ {
		heights, err := s.LogHeights(ctx, crashTopic(ti))
		if err != nil {
			t.Fatal(err)
		}
		for a, logs := range heights {
			author = a
			for log, h := range logs {
				var prev *operation.Operation
				if err := s.LogRange(ctx, a, log, 0, h, func(op *operation.Operation) error {
					if prev == nil {
						if op.SeqNum() != 0 && !op.Prune() {
							return fmt.Errorf("log starts at %d without prune flag", op.SeqNum())
						}
						first[ti] = op.SeqNum()
					} else if op.SeqNum() != prev.SeqNum()+1 || op.Header.Backlink != prev.Hash {
						return fmt.Errorf("gap or broken backlink after seq %d", prev.SeqNum())
					}
					prev = op
					return nil
				}); err != nil {
					t.Fatalf("topic %d: %v", ti, err)
				}
			}
		}
	}
	// Every confirmed operation is stored, unless a later prune removed it.
	missing := 0
	for _, p := range seen {
		if _, err := s.Get(ctx, p.hash); err != nil {
			missing++
		}
	}
	// Confirmed but missing ones must all be below the log's pruned start: count how many
	// confirmed operations per topic precede that start (seq < first) by seq order of
	// confirmation, which is the log order for a single publisher per topic.
	allowed := 0
	perTopic := map[int]int{}
	for _, p := range seen {
		if uint64(perTopic[p.topic]) < first[p.topic] {
			allowed++
		}
		perTopic[p.topic]++
	}
	if missing != allowed {
		t.Fatalf("%d confirmed operations missing, %d explained by pruning (author %s)", missing, allowed, author.Short())
	}
	t.Logf("child confirmed %d operations before SIGKILL; all durable", len(seen))
}
