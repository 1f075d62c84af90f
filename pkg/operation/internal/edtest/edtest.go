// Package edtest crafts Ed25519 public keys and signatures that ordinary signing never
// produces: keys and R values with a small-order (torsion) component, small-order points,
// non-canonical encodings of A, R and S, and S at or above the group order. Differential
// tests feed them to two verifiers and require the same answer; random bytes alone would
// almost never make either verifier say yes, so the crafted signatures satisfy the
// verification equation unless a Mode bit breaks it on purpose.
package edtest

import (
	"crypto/sha512"
	"encoding/hex"
	"math/big"

	"filippo.io/edwards25519"
)

// Mode selects how Craft departs from an honest signature; bits combine.
type Mode uint8

const (
	// MatchTorsion picks R's torsion component so that the cofactorless equation
	// [S]B = R + [k]A holds although A has one: a mixed-order key whose signature
	// crypto/ed25519 accepts (when some of the eight choices fits, about two times in three).
	MatchTorsion Mode = 1 << iota
	// OddKey replaces the key with one of the non-canonical or undecodable encodings.
	OddKey
	// RawKey uses the first 32 bytes of the key seed as the key, whatever they decode to.
	RawKey
	// OddR replaces R with one of the non-canonical or undecodable encodings.
	OddR
	// SPlusL adds the group order to S: the same residue, a non-canonical encoding.
	SPlusL
	// HighBits sets one of S's three top bits.
	HighBits
	// FlipBit flips one bit of the signature, chosen by the R seed.
	FlipBit
	// OtherMessage signs one message and asks about another.
	OtherMessage
)

// SmallOrder holds the eight points of order dividing 8, SmallOrder[j] = j·T for a point
// T of order 8.
var SmallOrder = func() [8]*edwards25519.Point {
	var t8 [32]byte
	mustHex(t8[:], "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
	gen, err := new(edwards25519.Point).SetBytes(t8[:])
	if err != nil {
		panic(err)
	}
	var points [8]*edwards25519.Point
	points[0] = edwards25519.NewIdentityPoint()
	for j := 1; j < 8; j++ {
		points[j] = new(edwards25519.Point).Add(points[j-1], gen)
	}
	return points
}()

// OddEncodings are 32-byte strings that are not the canonical encoding of a point: y
// values from p to 2^255−1 (which some decoders reduce and accept) with either sign bit,
// and x = 0 with the sign bit set. Some decode to points, some to nothing.
var OddEncodings = func() [][]byte {
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	var out [][]byte
	for delta := int64(0); delta < 19; delta++ {
		y := new(big.Int).Add(p, big.NewInt(delta))
		for _, sign := range []byte{0, 0x80} {
			enc := littleEndian32(y)
			enc[31] |= sign
			out = append(out, enc)
		}
	}
	// x = 0 with the sign bit set: y = 1 (the identity) and y = p − 1 (order 2).
	for _, y := range []*big.Int{big.NewInt(1), new(big.Int).Sub(p, big.NewInt(1))} {
		enc := littleEndian32(y)
		enc[31] |= 0x80
		out = append(out, enc)
	}
	return out
}()

// Craft returns a public key and a signature of msg. The key is [a]B plus
// SmallOrder[torsionA%8] and R is [r]B plus SmallOrder[torsionR%8], with a and r derived
// from the seeds; S = r + k·a makes the signature valid for the key's prime-order part.
// mode changes that as its bits say.
func Craft(aSeed, rSeed []byte, torsionA, torsionR uint8, mode Mode, msg []byte) (publicKey, sig []byte) {
	a := scalarFrom("a", aSeed)
	r := scalarFrom("r", rSeed)
	tA := SmallOrder[torsionA%8]
	A := new(edwards25519.Point).Add(new(edwards25519.Point).ScalarBaseMult(a), tA)
	publicKey = A.Bytes()
	switch {
	case mode&OddKey != 0:
		publicKey = append([]byte(nil), OddEncodings[int(firstByte(aSeed))%len(OddEncodings)]...)
		// Where the odd encoding is a small-order point its discrete log is 0, so
		// MatchTorsion can still make a signature crypto/ed25519 accepts under it.
		if p, err := new(edwards25519.Point).SetBytes(publicKey); err == nil {
			for _, t := range SmallOrder {
				if t.Equal(p) == 1 {
					a, tA = edwards25519.NewScalar(), t
				}
			}
		}
	case mode&RawKey != 0:
		publicKey = make([]byte, 32)
		copy(publicKey, aSeed)
	}
	signed := msg
	if mode&OtherMessage != 0 {
		signed = append([]byte("other:"), msg...)
	}
	rB := new(edwards25519.Point).ScalarBaseMult(r)
	encR := new(edwards25519.Point).Add(rB, SmallOrder[torsionR%8]).Bytes()
	if mode&MatchTorsion != 0 {
		// [S]B − [k]A = [r]B − [k]T_A, so R must carry the torsion −[k]T_A; k depends
		// on R, so try each of the eight torsion components until one is consistent.
		for j := range SmallOrder {
			candidate := new(edwards25519.Point).Add(rB, SmallOrder[j]).Bytes()
			k := challenge(candidate, publicKey, signed)
			want := new(edwards25519.Point).Negate(new(edwards25519.Point).ScalarMult(k, tA))
			if want.Equal(SmallOrder[j]) == 1 {
				encR = candidate
				break
			}
		}
	}
	if mode&OddR != 0 {
		encR = append([]byte(nil), OddEncodings[int(firstByte(rSeed))%len(OddEncodings)]...)
	}
	k := challenge(encR, publicKey, signed)
	s := edwards25519.NewScalar().MultiplyAdd(k, a, r).Bytes()
	if mode&SPlusL != 0 {
		s = littleEndian32(new(big.Int).Add(fromLittleEndian(s), groupOrder))
	}
	sig = append(append([]byte(nil), encR...), s...)
	if mode&HighBits != 0 {
		sig[63] |= 0x20 << (firstByte(rSeed) % 3)
	}
	if mode&FlipBit != 0 {
		bit := int(firstByte(rSeed)) % 512
		sig[bit/8] ^= 1 << (bit % 8)
	}
	return publicKey, sig
}

// HasTorsion reports whether p has a small-order component, that is whether p is not in
// the prime-order subgroup: [8]·[1/8 mod L]·p differs from p exactly then.
func HasTorsion(p *edwards25519.Point) bool {
	back := new(edwards25519.Point).ScalarMult(inverseOf8, new(edwards25519.Point).MultByCofactor(p))
	return back.Equal(p) != 1
}

var inverseOf8 = func() *edwards25519.Scalar {
	inv := new(big.Int).ModInverse(big.NewInt(8), groupOrder)
	s, err := edwards25519.NewScalar().SetCanonicalBytes(littleEndian32(inv))
	if err != nil {
		panic(err)
	}
	return s
}()

var groupOrder, _ = new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)

func challenge(encR, publicKey, msg []byte) *edwards25519.Scalar {
	h := sha512.New()
	h.Write(encR)
	h.Write(publicKey)
	h.Write(msg)
	k, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		panic(err)
	}
	return k
}

func scalarFrom(label string, seed []byte) *edwards25519.Scalar {
	h := sha512.Sum512(append([]byte(label), seed...))
	s, err := edwards25519.NewScalar().SetUniformBytes(h[:])
	if err != nil {
		panic(err)
	}
	return s
}

func firstByte(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

func littleEndian32(v *big.Int) []byte {
	be := v.FillBytes(make([]byte, 32))
	for i, j := 0, 31; i < j; i, j = i+1, j-1 {
		be[i], be[j] = be[j], be[i]
	}
	return be
}

func fromLittleEndian(le []byte) *big.Int {
	be := make([]byte, len(le))
	for i := range le {
		be[len(le)-1-i] = le[i]
	}
	return new(big.Int).SetBytes(be)
}

func mustHex(dst []byte, s string) {
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		panic(err)
	}
}
