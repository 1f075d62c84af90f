package testutil

import (
	"errors"
	"testing"
	"time"
)

func TestPollReturnsLastError(t *testing.T) {
	calls := 0
	err := Poll(t.Context(), 100*time.Millisecond, func() (bool, error) {
		calls++
		return false, errors.New("still 3 of 4")
	})
	if err == nil || calls < 2 {
		t.Fatalf("Poll = %v after %d calls, want an error after several calls", err, calls)
	}
	if got := err.Error(); got != "not true after 100ms, last error: still 3 of 4" {
		t.Fatalf("error = %q", got)
	}
}

func TestPollSucceeds(t *testing.T) {
	n := 0
	if err := Poll(t.Context(), time.Second, func() (bool, error) { n++; return n == 3, nil }); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
}

func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 200 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}

func TestInCI(t *testing.T) {
	for v, want := range map[string]bool{"true": true, "1": true, "": false, "false": false, "yes": false} {
		t.Setenv("CI", v)
		if got := InCI(); got != want {
			t.Errorf("CI=%q: InCI() = %v, want %v", v, got, want)
		}
	}
}

// PollEvery waits its interval between checks: a condition that holds on its third check
// cannot be satisfied before two intervals have passed (a lower bound, so load cannot flake it).
func TestPollEveryUsesItsInterval(t *testing.T) {
	calls := 0
	start := time.Now()
	err := PollEvery(t.Context(), time.Minute, 100*time.Millisecond, func() (bool, error) {
		calls++
		return calls == 3, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed < 200*time.Millisecond {
		t.Fatalf("third check after %s, want >= 2 intervals of 100ms", elapsed)
	}
}
