package policy

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/store"
)

var topic = operation.Topic(operation.HashOf([]byte("policy test")))

func newEnforcer(t *testing.T, p Policy) *Enforcer {
	t.Helper()
	st, err := store.Open(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := NewEnforcer(st)
	if err := e.Set(context.Background(), topic, p); err != nil {
		t.Fatal(err)
	}
	return e
}

func cand(author byte, seq uint64, size uint64, prune bool) Candidate {
	return Candidate{Author: operation.PublicKey{author}, Log: operation.LogIDFromTopic(topic), Seq: seq, Size: size, Prune: prune}
}

func TestReserveReleaseAndQuotas(t *testing.T) {
	e := newEnforcer(t, Policy{PerAuthor: Quota{MaxOps: 2, MaxBytes: 250}, PerTopic: Quota{MaxOps: 3}})
	for i, c := range []Candidate{cand(1, 0, 100, false), cand(1, 1, 100, false)} {
		if err := e.Reserve(topic, c); err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
	}
	if err := e.Check(topic, cand(1, 2, 10, false)); ReasonOf(err) != OverQuota {
		t.Fatalf("third op of author 1: %v", err)
	}
	// A prune is checked against what remains after it: the author's log restarts.
	if err := e.Check(topic, cand(1, 2, 10, true)); err != nil {
		t.Fatalf("prune at the limit: %v", err)
	}
	if err := e.Reserve(topic, cand(2, 0, 10, false)); err != nil {
		t.Fatal(err)
	}
	if err := e.Check(topic, cand(3, 0, 10, false)); ReasonOf(err) != OverQuota {
		t.Fatalf("fourth op of the topic: %v", err)
	}
	// A reservation that was not stored frees its room.
	e.Release(topic, cand(2, 0, 10, false))
	if err := e.Check(topic, cand(3, 0, 10, false)); err != nil {
		t.Fatalf("after release: %v", err)
	}
	rep, _ := e.Report(topic)
	if rep.Usage != (store.Usage{Ops: 2, Bytes: 200}) || len(rep.Authors) != 1 || rep.Refused[OverQuota] != 2 {
		t.Fatalf("report %+v", rep)
	}
	if got := e.Refused()[OverQuota]; got != 2 {
		t.Fatalf("refused %d", got)
	}
}

func TestWritersAndRefusedError(t *testing.T) {
	e := newEnforcer(t, Policy{Writers: []operation.PublicKey{{7}}})
	err := e.Check(topic, cand(8, 0, 1, false))
	var r *RefusedError
	if !errors.As(err, &r) || !errors.Is(err, ErrRefused) || r.Reason != NotWriter || r.Author != (operation.PublicKey{8}) {
		t.Fatalf("non-writer: %v", err)
	}
	if err := e.Check(topic, cand(7, 0, 1, false)); err != nil {
		t.Fatalf("writer: %v", err)
	}
	// Topics without a policy take everything; a zero policy removes one.
	if err := e.Check(operation.Topic{1}, cand(8, 0, 1, false)); err != nil {
		t.Fatalf("other topic: %v", err)
	}
	if err := e.Set(context.Background(), topic, Policy{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.Policy(topic); ok {
		t.Fatal("zero policy kept")
	}
}

func TestValidate(t *testing.T) {
	if err := (Policy{Writers: []operation.PublicKey{{}}}).Validate(); err == nil {
		t.Error("zero writer key accepted")
	}
	if err := (Policy{Retention: Retention{MaxAge: -time.Second}}).Validate(); err == nil {
		t.Error("negative age accepted")
	}
}
