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
	return want
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
