package operation

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pandanet/pandanet/pkg/operation/internal/edtest"
)

// installTable gives k its key table now instead of after keyTableAfter checks, so a
// single fuzz input exercises the table path. It reports false for a weak key.
func installTable(t *testing.T, k PublicKey) bool {
	t.Helper()
	state := stateOf(k)
	if state.weak {
		return false
	}
	if giveTable(k, state) == nil {
		t.Fatalf("key %x decodes (not weak) but gets no table", k)
	}
	return true
}

// FuzzVerifyMatchesStandard is the differential target for the strict verifier: with a
// key table, Verify answers exactly what VerifyStandard (crypto/ed25519 plus the checks
// against small-order keys and R values) answers, for crafted keys and signatures with
// torsion, non-canonical encodings and S out of range.
func FuzzVerifyMatchesStandard(f *testing.F) {
	for tA := range uint8(8) {
		for _, mode := range []edtest.Mode{0, edtest.MatchTorsion, edtest.OddKey | edtest.MatchTorsion, edtest.OddR, edtest.SPlusL, edtest.FlipBit} {
			f.Add([]byte{tA, 7}, []byte{tA, 9}, tA, uint8(0), uint8(mode), []byte("seed"))
		}
		// R itself of small order: a torsion-free R plus nothing is impossible to sign
		// without the key, so these are rejected by both, for the right reason.
		f.Add([]byte{tA}, []byte{}, tA, tA, uint8(edtest.MatchTorsion), []byte{})
	}
	f.Fuzz(func(t *testing.T, aSeed, rSeed []byte, torsionA, torsionR, mode uint8, msg []byte) {
		publicKey, sig := edtest.Craft(aSeed, rSeed, torsionA, torsionR, edtest.Mode(mode), msg)
		k, s := PublicKey(publicKey), Signature(sig)
		want := k.VerifyStandard(msg, s)
		installTable(t, k)
		if got := k.Verify(msg, s); got != want {
			t.Fatalf("key %x sig %x msg %x: Verify says %v, VerifyStandard %v", publicKey, sig, msg, got, want)
		}
	})
}

// TestVerifyBuildsATableAndStillFindsTheBadSignature checks the path every catch-up takes:
// one author's signatures checked many times over. The key gets its table after
// keyTableAfter checks, every answer before and after equals VerifyStandard's, and the one
// bad signature in the run is rejected and named by Decode's error.
func TestVerifyBuildsATableAndStillFindsTheBadSignature(t *testing.T) {
	key, _ := GenerateKey()
	logID := HashOf([]byte("table"))
	const n, bad = 3 * keyTableAfter, 2*keyTableAfter + 3
	var previous *Operation
	for seq := range uint64(n) {
		d := Draft{SeqNum: seq, LogID: logID, Body: fmt.Appendf(nil, "op %d", seq)}
		if previous != nil {
			d.Backlink = previous.Hash
		}
		op, err := Sign(key, d)
		if err != nil {
			t.Fatal(err)
		}
		previous = op
		header := op.HeaderBytes
		if seq == bad {
			header = append([]byte(nil), header...)
			header[len(header)-1] ^= 1 // the signature is the header's last element
		}
		_, err = Decode(header, op.Body)
		h, herr := DecodeHeader(header)
		if herr != nil {
			t.Fatal(herr)
		}
		standard := h.PublicKey.VerifyStandard(signingBytesOfCanonical(header, h), h.Signature)
		if (err == nil) != standard {
			t.Fatalf("op %d: Decode error %v, VerifyStandard %v", seq, err, standard)
		}
		if seq == bad && (err == nil || !strings.Contains(err.Error(), HashOf(header).Short())) {
			t.Fatalf("op %d: the bad signature gave %v, want an error naming operation %s", seq, err, HashOf(header).Short())
		}
	}
	if stateOf(key.PublicKey()).table.Load() == nil {
		t.Fatalf("no key table after %d checks, so the table path went untested", n)
	}
}

func TestKeyTablesStayBounded(t *testing.T) {
	for range maxKeyTables + 3 {
		key, _ := GenerateKey()
		if !installTable(t, key.PublicKey()) {
			t.Fatal("fresh key is weak")
		}
	}
	keyTables.mu.Lock()
	defer keyTables.mu.Unlock()
	if len(keyTables.keys) != maxKeyTables {
		t.Fatalf("%d keys hold tables, want at most %d", len(keyTables.keys), maxKeyTables)
	}
}
