package operation

import (
	"crypto/ed25519"
	"sync"
	"sync/atomic"

	"filippo.io/edwards25519"

	"github.com/pandanet/pandanet/pkg/operation/internal/keytable"
)

// Verify checks sig over msg the way ed25519-dalek's verify_strict does, which is what
// p2panda uses: on top of the standard check it rejects small-order public keys and
// small-order R components. Go's crypto/ed25519 alone accepts both, so a forged-looking
// signature under a weak key could verify here but not in p2panda.
//
// A key that has signed keyTableAfter operations gets a table of its multiples
// (package keytable), which makes each further check two to three times cheaper; the
// answer is the same, bit for bit, as VerifyStandard's.
func (k PublicKey) Verify(msg []byte, sig Signature) bool {
	table, ok := k.verifyOrTable(msg, sig)
	if table != nil {
		return table.Verify(msg, sig[:])
	}
	return ok
}

// verifyOrTable answers Verify itself, unless k has a key table (or earns one with this
// check): then it returns the table for the caller to verify with, alone or in a batch.
func (k PublicKey) verifyOrTable(msg []byte, sig Signature) (*keytable.Table, bool) {
	state := stateOf(k)
	if state.weak || smallOrderEncodings[[32]byte(sig[:32])] {
		return nil, false
	}
	if table := state.table.Load(); table != nil {
		return table, false
	}
	if state.uses.Add(1) == keyTableAfter {
		if table := giveTable(k, state); table != nil {
			return table, false
		}
	}
	return nil, ed25519.Verify(k[:], msg, sig[:])
}

// signatureCheck is one signature for verifyBatch, and its answer.
type signatureCheck struct {
	key PublicKey
	msg []byte
	sig *Signature
	ok  bool
}

// verifyBatch sets every check's ok to what Verify answers for it: together
// (keytable.VerifyBatch) for keys with a table, one at a time for the others.
func verifyBatch(checks []signatureCheck) {
	var batchBuf [16]keytable.Check
	var atBuf [16]int
	batch, at := batchBuf[:0], atBuf[:0]
	for i := range checks {
		c := &checks[i]
		table, ok := c.key.verifyOrTable(c.msg, *c.sig)
		if table == nil {
			c.ok = ok
			continue
		}
		batch = append(batch, keytable.Check{Table: table, Msg: c.msg, Sig: c.sig[:]})
		at = append(at, i)
	}
	if len(batch) == 0 {
		return // VerifyBatch would still invert once
	}
	var okBuf [16]bool
	ok := okBuf[:]
	if len(batch) > len(ok) {
		ok = make([]bool, len(batch))
	}
	ok = ok[:len(batch)]
	keytable.VerifyBatch(batch, ok)
	for j, i := range at {
		checks[i].ok = ok[j]
	}
}

// giveTable builds k's table and installs it in state, or returns nil if k decodes to no
// point (a weak key, which never gets this far in Verify).
func giveTable(k PublicKey, state *keyState) *keytable.Table {
	table, err := keytable.New(k[:])
	if err != nil {
		return nil
	}
	keyTables.add(state, table)
	return table
}

// VerifyStandard is Verify without the per-key table: crypto/ed25519.Verify and the two
// strict checks, at the cost of one single-signature verification every time. It is the
// reference Verify is tested against, and the bound make bench compares rows with.
func (k PublicKey) VerifyStandard(msg []byte, sig Signature) bool {
	if !ed25519.Verify(k[:], msg, sig[:]) {
		return false
	}
	// crypto/ed25519 compares R against a canonical re-encoding, so an accepted R is
	// canonical and small order iff it is one of the eight canonical small-order encodings.
	if smallOrderEncodings[[32]byte(sig[:32])] {
		return false
	}
	return !isWeakKey(k)
}

const (
	// keyTableAfter is how many signatures a key must have had checked before it gets a
	// table. Building one costs about twelve verifications and saves nearly two thirds of each
	// later one, so a key pays it back within some twenty more; a key that signs once never pays.
	keyTableAfter = 16
	// maxKeyTables bounds the tables' memory: 64 × 161 KiB = 10.1 MiB.
	maxKeyTables = 64
	// maxKeyStates bounds the per-key bookkeeping (a few dozen bytes each).
	maxKeyStates = 1 << 16
)

// keyState is what Verify remembers about one author.
type keyState struct {
	weak  bool          // the key decodes to no point or to one of small order
	uses  atomic.Uint32 // checks since the key last lost its table
	table atomic.Pointer[keytable.Table]
}

var (
	keyStates     sync.Map // PublicKey -> *keyState
	keyStateCount atomic.Int32
	keyTables     tableRing
)

func stateOf(k PublicKey) *keyState {
	if v, ok := keyStates.Load(k); ok {
		return v.(*keyState)
	}
	state := &keyState{weak: weakKey(k)}
	if keyStateCount.Load() >= maxKeyStates {
		return state // remembered nowhere: the next check decodes the key again
	}
	if v, loaded := keyStates.LoadOrStore(k, state); loaded {
		return v.(*keyState)
	}
	keyStateCount.Add(1)
	return state
}

func isWeakKey(k PublicKey) bool { return stateOf(k).weak }

func weakKey(k PublicKey) bool {
	p, err := new(edwards25519.Point).SetBytes(k[:])
	if err != nil {
		return true
	}
	return new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1
}

// tableRing holds the keys that have tables, oldest first. When it is full the oldest key
// loses its table and must earn a new one with keyTableAfter more checks, so authors who
// take turns cannot make every check rebuild a table.
type tableRing struct {
	mu   sync.Mutex
	keys []*keyState
}

func (r *tableRing) add(state *keyState, table *keytable.Table) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.keys) == maxKeyTables {
		oldest := r.keys[0]
		oldest.table.Store(nil)
		oldest.uses.Store(0)
		r.keys = append(r.keys[:0], r.keys[1:]...)
	}
	state.table.Store(table)
	r.keys = append(r.keys, state)
}
