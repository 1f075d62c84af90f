package keytable

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"filippo.io/edwards25519"

	"github.com/pandanet/pandanet/pkg/operation/internal/edtest"
)

// checkAgainstCrypto is the differential check: a table's answer is crypto/ed25519's, for
// keys that decode at all; a key that does not decode gets no table and no signature.
func checkAgainstCrypto(t *testing.T, publicKey, msg, sig []byte) (accepted bool) {
	t.Helper()
	want := ed25519.Verify(publicKey, msg, sig)
	table, err := New(publicKey)
	if err != nil {
		if want {
			t.Fatalf("key %x has no table (%v) but crypto/ed25519 accepts %x", publicKey, err, sig)
		}
		return false
	}
	if got := table.Verify(msg, sig); got != want {
		t.Fatalf("key %x, sig %x, msg %x: table says %v, crypto/ed25519 says %v", publicKey, sig, msg, got, want)
	}
	// The same check in a batch, among valid signatures of another key: its answer is
	// the same, and it changes no other answer.
	checks := batchCompanions()
	at := len(msg) % (len(checks) + 1)
	checks = append(checks[:at], append([]Check{{Table: table, Msg: msg, Sig: sig}}, checks[at:]...)...)
	ok := make([]bool, len(checks))
	VerifyBatch(checks, ok)
	for i, got := range ok {
		if i == at && got != want {
			t.Fatalf("key %x, sig %x, msg %x: in a batch the table says %v, crypto/ed25519 says %v", publicKey, sig, msg, got, want)
		}
		if i != at && !got {
			t.Fatalf("a valid signature at %d of a batch was rejected next to key %x, sig %x", i, publicKey, sig)
		}
	}
	return want
}

// batchCompanions returns three valid checks under one fixed key.
func batchCompanions() []Check {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	table, err := New(priv.Public().(ed25519.PublicKey))
	if err != nil {
		panic(err)
	}
	var out []Check
	for i := range 3 {
		msg := []byte{'c', byte(i)}
		out = append(out, Check{Table: table, Msg: msg, Sig: ed25519.Sign(priv, msg)})
	}
	return out
}

// FuzzVerifyMatchesCryptoEd25519 is a differential fuzz target: for every crafted key,
// signature and message, Table.Verify answers exactly what crypto/ed25519.Verify answers.
func FuzzVerifyMatchesCryptoEd25519(f *testing.F) {
	modes := []edtest.Mode{0, edtest.MatchTorsion, edtest.OddKey, edtest.RawKey, edtest.OddR,
		edtest.SPlusL, edtest.HighBits, edtest.FlipBit, edtest.OtherMessage,
		edtest.MatchTorsion | edtest.SPlusL, edtest.OddKey | edtest.MatchTorsion}
	for tA := range uint8(8) {
		for _, mode := range modes {
			f.Add([]byte{tA, 1}, []byte{tA, 2}, tA, uint8(0), uint8(mode), []byte("seed message"))
		}
		f.Add([]byte{tA}, []byte{tA}, tA, tA, uint8(0), []byte{})
	}
	f.Fuzz(func(t *testing.T, aSeed, rSeed []byte, torsionA, torsionR, mode uint8, msg []byte) {
		publicKey, sig := edtest.Craft(aSeed, rSeed, torsionA, torsionR, edtest.Mode(mode), msg)
		checkAgainstCrypto(t, publicKey, msg, sig)
	})
}

// TestVerifyMatchesOnEveryTorsionCombination runs the differential check over every pair
// of torsion components for A and R under the modes that matter most, and asserts that
// the cases where a verifier could most easily go wrong are really covered: signatures
// crypto/ed25519 accepts under mixed-order keys, with mixed-order R values, and under
// non-canonical encodings of small-order keys.
func TestVerifyMatchesOnEveryTorsionCombination(t *testing.T) {
	modes := []edtest.Mode{0, edtest.MatchTorsion, edtest.OddKey, edtest.OddKey | edtest.MatchTorsion,
		edtest.OddR, edtest.MatchTorsion | edtest.OddR, edtest.SPlusL, edtest.MatchTorsion | edtest.SPlusL,
		edtest.HighBits, edtest.MatchTorsion | edtest.FlipBit, edtest.MatchTorsion | edtest.OtherMessage, edtest.RawKey}
	var mixedKey, mixedR, oddKey int
	for seed := range byte(2) {
		for tA := range uint8(8) {
			for tR := range uint8(8) {
				for _, mode := range modes {
					msg := []byte{seed, tA, tR, byte(mode)}
					publicKey, sig := edtest.Craft([]byte{seed + byte(mode), 'a'}, []byte{seed, 'r', byte(mode)}, tA, tR, mode, msg)
					if !checkAgainstCrypto(t, publicKey, msg, sig) {
						continue
					}
					A, _ := new(edwards25519.Point).SetBytes(publicKey)
					R, _ := new(edwards25519.Point).SetBytes(sig[:32])
					switch {
					case !bytes.Equal(A.Bytes(), publicKey):
						oddKey++
					case edtest.HasTorsion(A):
						mixedKey++
					}
					if edtest.HasTorsion(R) {
						mixedR++
					}
				}
			}
		}
	}
	t.Logf("accepted: %d under mixed-order keys, %d with R of mixed order, %d under non-canonical keys", mixedKey, mixedR, oddKey)
	if mixedKey == 0 || mixedR == 0 || oddKey == 0 {
		t.Error("some torsion or encoding case was never accepted, so it went untested")
	}
}
