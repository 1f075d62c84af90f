package fault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// floodEnv carries the flood's parameters to the re-executed test binary.
const floodEnv = "PANDA_FAULT_FLOOD"

type floodParams struct {
	Target string        // host:port of the victim's libp2p TCP listener
	IPs    []string      // source addresses, one per simulated attacker machine
	PerIP  int           // connections opened from each address
	Hold   time.Duration // how long the connections are kept open
}

// floodResult is what the attacker saw: how the victim treated its connections.
type floodResult struct {
	Dialed     int `json:"dialed"`     // TCP connections established
	DialFailed int `json:"dialFailed"` // refused or timed out at TCP level
	GotData    int `json:"gotData"`    // the victim spoke first (multistream header)
	ClosedFast int `json:"closedFast"` // closed by the victim within 1 s (resource limits)
	ClosedLate int `json:"closedLate"` // closed by the victim later (handshake timeout)
	StillOpen  int `json:"stillOpen"`  // open when the attacker gave up
}

// runFlood opens PerIP silent TCP connections from every source address to the victim and
// watches when the victim closes them. It never sends a byte: each connection occupies a
// slot in the victim's accept path until its resource manager refuses it or the security
// handshake times out.
func runFlood() int {
	var p floodParams
	if err := json.Unmarshal([]byte(os.Getenv(floodEnv)), &p); err != nil {
		fmt.Fprintln(os.Stderr, "flood parameters:", err)
		return 2
	}
	var (
		mu  sync.Mutex
		res floodResult
		wg  sync.WaitGroup
	)
	deadline := time.Now().Add(p.Hold)
	for _, ip := range p.IPs {
		for range p.PerIP {
			wg.Go(func() {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
				c, err := d.Dial("tcp", p.Target)
				if err != nil {
					mu.Lock()
					res.DialFailed++
					mu.Unlock()
					return
				}
				defer c.Close()
				opened := time.Now()
				_ = c.SetReadDeadline(deadline)
				n, err := c.Read(make([]byte, 1024))
				if n > 0 {
					// Keep reading, silently, until the victim gives up on us.
					mu.Lock()
					res.GotData++
					mu.Unlock()
					_, err = io.Copy(io.Discard, c)
					if err == nil {
						err = io.EOF
					}
				}
				mu.Lock()
				defer mu.Unlock()
				res.Dialed++
				switch {
				case errors.Is(err, os.ErrDeadlineExceeded):
					res.StillOpen++
				case time.Since(opened) < time.Second:
					res.ClosedFast++
				default:
					res.ClosedLate++
				}
			})
		}
	}
	wg.Wait()
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

// rssMiB is the resident memory of a process.
func rssMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// A thousand-odd silent connections from 100 different addresses (as from many machines,
// which per-IP limits alone cannot stop) hit an always-on node: it stays within memory,
// keeps serving the edge that was already connected, answers its admin API, and a new
// edge syncs with it once the flood is over.
func TestNamespacesConnectionFlood(t *testing.T) {
	needBinary(t)
	l := newLab(t, 4)
	const attacker = 2
	var ips []string
	for i := range 100 {
		ip := fmt.Sprintf("10.213.0.%d", 100+i)
		l.ip(l.nodes[attacker], "addr", "add", ip+"/32", "dev", "eth0")
		ips = append(ips, ip)
	}
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	victim := newDaemon(t, "flood-victim", filepath.Join(root, "victim"), l.nodes[0], l.addr(0), "--public", "--relay-service")
	victim.start()
	edge := newDaemon(t, "flood-edge", filepath.Join(root, "edge"), l.nodes[1], l.addr(1), "--bootstrap", victim.addr())
	edge.start()
	if _, err := edge.publish(ctx, "before the flood"); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, time.Minute, nil, victim, edge)
	before, err := rssMiB(victim.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}

	params, _ := json.Marshal(floodParams{Target: fmt.Sprintf("%s:%d", l.addr(0), victim.port), IPs: ips, PerIP: 12, Hold: 20 * time.Second})
	flood := exec.Command("ip", "netns", "exec", l.nodes[attacker], os.Args[0])
	flood.Env = append(os.Environ(), floodEnv+"="+string(params))
	var out strings.Builder
	flood.Stdout, flood.Stderr = &out, &out
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	floodDone := make(chan error, 1)
	go func() { floodDone <- flood.Wait() }()
	t.Cleanup(func() { _ = flood.Process.Kill() })

	// During the flood: the connected edge keeps publishing and the victim keeps storing.
	time.Sleep(3 * time.Second)
	peak := before
	for i := range 20 {
		if _, err := edge.publish(ctx, fmt.Sprintf("during the flood %d", i)); err != nil {
			t.Fatalf("edge publish during the flood: %v", err)
		}
	}
	took := waitConverged(t, time.Minute, nil, victim, edge)
	if rss, err := rssMiB(victim.cmd.Process.Pid); err == nil && rss > peak {
		peak = rss
	}
	// A new edge tries to join while the flood lasts (reported, not required: a flood
	// from enough addresses can fill the inbound connection limit for a while).
	late := newDaemon(t, "flood-late", filepath.Join(root, "late"), l.nodes[3], l.addr(3), "--bootstrap", victim.addr())
	late.start()
	joinStart := time.Now()
	joinedDuring := false
	for time.Since(joinStart) < 10*time.Second {
		if h, err := late.topics(); err == nil && ops(h) == 21 {
			joinedDuring = true
			break
		}
		if rss, err := rssMiB(victim.cmd.Process.Pid); err == nil && rss > peak {
			peak = rss
		}
		time.Sleep(200 * time.Millisecond)
	}

	select {
	case err := <-floodDone:
		if err != nil {
			t.Fatalf("flood helper: %v\n%s", err, out.String())
		}
	case <-ctx.Done():
		t.Fatal("flood helper did not finish")
	}
	var res floodResult
	if err := json.Unmarshal([]byte(strings.TrimSpace(out.String())), &res); err != nil {
		t.Fatalf("flood helper output %q: %v", out.String(), err)
	}
	if res.Dialed < len(ips) {
		t.Fatalf("the flood established only %d connections (%+v); it did not exercise the node", res.Dialed, res)
	}
	if peak-before > 256 {
		t.Errorf("victim memory grew by %.0f MiB during the flood (%.0f -> %.0f)", peak-before, before, peak)
	}
	if _, err := victim.topics(); err != nil {
		t.Fatalf("victim admin API after the flood: %v", err)
	}
	lateTook := waitConverged(t, time.Minute, nil, victim, edge, late)
	t.Logf("flood of %d connections from %d addresses: %+v; victim RSS %.0f -> %.0f MiB peak; "+
		"the connected edge's 20 publishes converged %v after publishing; a new edge joined during the flood: %v "+
		"(converged %v after the flood ended)",
		len(ips)*12, len(ips), res, before, peak, took.Round(time.Millisecond), joinedDuring, lateTook.Round(time.Millisecond))
}
