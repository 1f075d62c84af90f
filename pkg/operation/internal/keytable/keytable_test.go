package keytable

import (
	"crypto/ed25519"
	"crypto/rand"
	"math/big"
	"testing"

	"filippo.io/edwards25519"
)

// newKeyTable returns a fresh key and its table.
func newKeyTable(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey, *Table) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	table, err := New(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv, table
}

func TestVerifyAgreesOnValidAndTamperedSignatures(t *testing.T) {
	pub, priv, table := newKeyTable(t)
	for i := range 200 {
		msg := make([]byte, i*7)
		rand.Read(msg)
		sig := ed25519.Sign(priv, msg)
		if !table.Verify(msg, sig) {
			t.Fatalf("message %d: valid signature rejected", i)
		}
		sig[i%64] ^= 1 << (i % 8)
		if got, want := table.Verify(msg, sig), ed25519.Verify(pub, msg, sig); got != want {
			t.Fatalf("message %d, tampered: Verify = %v, crypto/ed25519 = %v", i, got, want)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := make([]byte, 1100)
	sig := ed25519.Sign(priv, msg)
	table, _ := New(pub)
	b.Run("table", func(b *testing.B) {
		for b.Loop() {
			if !table.Verify(msg, sig) {
				b.Fatal("rejected")
			}
		}
	})
	b.Run("crypto-ed25519", func(b *testing.B) {
		for b.Loop() {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("rejected")
			}
		}
	})
	b.Run("build", func(b *testing.B) {
		for b.Loop() {
			New(pub)
		}
	})
}

// TestSignedRadixIsTheExactInteger recombines the digits and compares with the scalar as
// an integer: a digit string that were only congruent modulo the group order would give a
// different point for keys with a torsion component.
func TestSignedRadixIsTheExactInteger(t *testing.T) {
	for _, bits := range []int{4, 5, 6, 7, 8} {
		for i := range 500 {
			var wide [64]byte
			rand.Read(wide[:])
			if i == 0 {
				clear(wide[:]) // zero
			}
			s, err := edwards25519.NewScalar().SetUniformBytes(wide[:])
			if err != nil {
				t.Fatal(err)
			}
			if i == 1 { // L − 1, the largest canonical scalar
				s.Subtract(edwards25519.NewScalar(), new(edwards25519.Scalar).Set(one()))
			}
			le := s.Bytes()
			var digits [64]int16
			d := signedRadix(digits[:windowsOf(bits)], le, bits)
			sum := new(big.Int)
			for j := len(d) - 1; j >= 0; j-- {
				if d[j] < -(1<<(bits-1)) || d[j] > 1<<(bits-1) {
					t.Fatalf("bits %d: digit %d = %d out of range", bits, j, d[j])
				}
				sum.Lsh(sum, uint(bits))
				sum.Add(sum, big.NewInt(int64(d[j])))
			}
			be := make([]byte, 32)
			for j := range le {
				be[31-j] = le[j]
			}
			if want := new(big.Int).SetBytes(be); sum.Cmp(want) != 0 {
				t.Fatalf("bits %d: digits give %v, scalar is %v", bits, sum, want)
			}
		}
	}
}

func one() *edwards25519.Scalar {
	var b [32]byte
	b[0] = 1
	s, _ := edwards25519.NewScalar().SetCanonicalBytes(b[:])
	return s
}

// A batch of more than batchMax checks with bad signatures spread through it gives every
// check the answer Verify gives it alone.
func TestVerifyBatchMatchesVerify(t *testing.T) {
	var checks []Check
	var want []bool
	for i := range 3*batchMax + 5 {
		_, priv, table := newKeyTable(t)
		msg := []byte{byte(i), 'm'}
		sig := ed25519.Sign(priv, msg)
		switch i % 5 {
		case 1:
			sig[i%32] ^= 4 // R changed
		case 3:
			msg = []byte("another message")
		}
		checks = append(checks, Check{Table: table, Msg: msg, Sig: sig})
		want = append(want, table.Verify(msg, sig))
	}
	ok := make([]bool, len(checks))
	VerifyBatch(checks, ok)
	bad := 0
	for i := range ok {
		if ok[i] != want[i] {
			t.Fatalf("check %d: batch says %v, alone %v", i, ok[i], want[i])
		}
		if !ok[i] {
			bad++
		}
	}
	if bad == 0 || bad == len(ok) {
		t.Fatalf("%d of %d rejected: the batch should mix good and bad", bad, len(ok))
	}
}
