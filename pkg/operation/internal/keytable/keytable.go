// Package keytable verifies Ed25519 signatures faster for keys it has seen before, by
// precomputing a table of multiples of the public key.
//
// Standard verification computes R' = [S]B − [k]A with one double-scalar multiplication:
// about 250 point doublings shared by both scalars plus some 75 additions, and the
// doublings are most of the cost. When A signs many operations (a log is written by one
// author, so catching up a log verifies thousands of signatures under one key), the
// doublings can be done once per key instead: a Table holds j·64^i·A for every 6-bit
// window i and digit j, so [k]A is at most 43 additions of table entries and no doublings. The
// same holds for the base point B, whose table is built once per process.
//
// The result is exactly the group element standard verification computes, from the same
// integers k and S (not merely congruent ones), so accepting or rejecting never differs:
// Verify returns what crypto/ed25519.Verify returns for every input, including
// non-canonical encodings, small-order and mixed-order points. The differential fuzz
// target in this package and in pkg/operation checks that.
//
// A key's Table is 161 KiB and takes about as long to build as twelve verifications, so callers
// build one only for keys that sign many messages (pkg/operation keeps a bounded cache).
package keytable

import (
	"bytes"
	"crypto/sha512"
	"fmt"
	"sync"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// Key tables use 6-bit windows: 43 windows of 32 entries, 161 KiB, at most 43 additions
// per scalar. The base point's table is built once per process, so it can afford 8-bit
// windows: 32 windows of 128 entries, 480 KiB, at most 32 additions. Wider windows mean
// fewer additions but bigger tables that take longer to build (measured: 4-bit key
// windows and 6-bit base windows verify about a third slower; 6-bit key windows verify
// 7 % faster than 5-bit ones, also with 64 keys' tables in turn, and take 1.3 times as
// long to build).
const (
	keyWindowBits  = 6
	baseWindowBits = 8
)

// affineNiels is a point (x, y) kept as y+x, y−x and 2d·x·y: the form whose addition to
// an extended point costs 7 field multiplications and no inversion.
type affineNiels struct {
	yPlusX, yMinusX, xy2d field.Element
}

// extended is a point in extended twisted Edwards coordinates: x = X/Z, y = Y/Z, xy = T/Z.
type extended struct {
	X, Y, Z, T field.Element
}

// Table holds the multiples j·2^(w·i)·P of one point P for every window i of a 256-bit
// scalar and every digit 1 ≤ j ≤ 2^(w−1), w being the window width in bits.
type Table struct {
	publicKey [32]byte
	bits      int           // w
	perWindow int           // 2^(w−1) entries per window
	entries   []affineNiels // window i's digit j is entries[i·perWindow + j−1]
}

var d2 = func() field.Element {
	// d = −121665/121666 is the curve constant; the addition formulas need 2d.
	var num, den, d field.Element
	num.Mult32(new(field.Element).One(), 121665)
	num.Negate(&num)
	den.Mult32(new(field.Element).One(), 121666)
	d.Multiply(&num, den.Invert(&den))
	return *d.Add(&d, &d)
}()

// baseTable is built on first use (a few milliseconds), not when a program that never
// verifies with a key table starts.
var baseTable = sync.OnceValue(func() *Table { return newTable(edwards25519.NewGeneratorPoint(), baseWindowBits) })

// New builds the table of an encoded public key. It fails where crypto/ed25519.Verify
// would reject every signature: when the bytes decode to no point.
func New(publicKey []byte) (*Table, error) {
	if len(publicKey) != 32 {
		return nil, fmt.Errorf("keytable: public key is %d bytes, want 32", len(publicKey))
	}
	p, err := new(edwards25519.Point).SetBytes(publicKey)
	if err != nil {
		return nil, fmt.Errorf("keytable: public key: %w", err)
	}
	t := newTable(p, keyWindowBits)
	copy(t.publicKey[:], publicKey)
	return t, nil
}

// newTable builds the table of p with bits-wide windows. With 6-bit windows that is 258
// doublings, 1,376 additions and one inversion.
func newTable(p *edwards25519.Point, bits int) *Table {
	t := &Table{bits: bits, perWindow: 1 << (bits - 1)}
	windows := windowsOf(bits)
	points := make([]edwards25519.Point, 0, windows*t.perWindow)
	window := new(edwards25519.Point).Set(p)
	for range windows {
		multiple := new(edwards25519.Point).Set(window)
		for range t.perWindow {
			points = append(points, *multiple)
			multiple.Add(multiple, window)
		}
		for range bits {
			window.Double(window)
		}
	}
	// Normalise every Z to 1 with one inversion for all the points (Montgomery's trick):
	// prefix[i] is the product of the first i Zs.
	prefix := make([]field.Element, len(points)+1)
	prefix[0].One()
	for i := range points {
		_, _, z, _ := points[i].ExtendedCoordinates()
		prefix[i+1].Multiply(&prefix[i], z)
	}
	var inv field.Element
	inv.Invert(&prefix[len(points)])
	t.entries = make([]affineNiels, len(points))
	for i := len(points) - 1; i >= 0; i-- {
		X, Y, Z, _ := points[i].ExtendedCoordinates()
		var zInv, x, y field.Element
		zInv.Multiply(&inv, &prefix[i])
		inv.Multiply(&inv, Z)
		x.Multiply(X, &zInv)
		y.Multiply(Y, &zInv)
		e := &t.entries[i]
		e.yPlusX.Add(&y, &x)
		e.yMinusX.Subtract(&y, &x)
		e.xy2d.Multiply(&x, &y)
		e.xy2d.Multiply(&e.xy2d, &d2)
	}
	return t
}

// addAffine sets v = p + q (or p − q when negate is set). The formulas are the complete
// unified ones for a = −1 (Hisil–Wong–Carter–Dawson 2008, "add-2008-hwcd-3" with Z2 = 1),
// so they hold for every pair of points, equal, opposite or of small order.
func (v *extended) addAffine(p *extended, q *affineNiels, negate bool) {
	var a, b, c, dd, e, f, g, h, yPlusX, yMinusX field.Element
	yPlusX.Add(&p.Y, &p.X)
	yMinusX.Subtract(&p.Y, &p.X)
	if negate {
		// −(x, y) = (−x, y): y+x and y−x swap and 2dxy changes sign.
		a.Multiply(&yMinusX, &q.yPlusX)
		b.Multiply(&yPlusX, &q.yMinusX)
		c.Multiply(&p.T, &q.xy2d)
		c.Negate(&c)
	} else {
		a.Multiply(&yMinusX, &q.yMinusX)
		b.Multiply(&yPlusX, &q.yPlusX)
		c.Multiply(&p.T, &q.xy2d)
	}
	dd.Add(&p.Z, &p.Z)
	e.Subtract(&b, &a)
	f.Subtract(&dd, &c)
	g.Add(&dd, &c)
	h.Add(&b, &a)
	v.X.Multiply(&e, &f)
	v.Y.Multiply(&g, &h)
	v.T.Multiply(&e, &h)
	v.Z.Multiply(&f, &g)
}

// windowsOf is how many bits-wide signed windows cover a 256-bit scalar, ⌈256/bits⌉. The
// top window's carry needs no extra window because scalars here are below 2^253.
func windowsOf(bits int) int { return (256 + bits - 1) / bits }

// accumulate adds (or subtracts) [s]P to v, where t is P's table and s a canonical scalar.
func (v *extended) accumulate(t *Table, s *edwards25519.Scalar, negate bool) {
	var digits [64]int16
	w := signedRadix(digits[:windowsOf(t.bits)], s.Bytes(), t.bits)
	for i, digit := range w {
		switch {
		case digit > 0:
			v.addAffine(v, &t.entries[i*t.perWindow+int(digit)-1], negate)
		case digit < 0:
			v.addAffine(v, &t.entries[i*t.perWindow-int(digit)-1], !negate)
		}
	}
}

// signedRadix writes s (32 little-endian bytes, below 2^253) as digits d[i] in
// [−2^(bits−1), 2^(bits−1)] with s = Σ d[i]·2^(bits·i): the exact integer, not just its
// value modulo the group order, because a point with a torsion component tells the two
// apart.
func signedRadix(d []int16, s []byte, bits int) []int16 {
	mask := uint32(1)<<bits - 1
	half := int32(1) << (bits - 1)
	carry := int32(0)
	for i := range d {
		// Read the window's bits from the (at most) three bytes it spans.
		bit := i * bits
		var word uint32
		for b := range 3 {
			if idx := bit/8 + b; idx < len(s) {
				word |= uint32(s[idx]) << (8 * b)
			}
		}
		digit := int32((word>>(bit%8))&mask) + carry
		carry = 0
		if digit > half {
			digit -= 1 << bits
			carry = 1
		}
		d[i] = int16(digit)
	}
	return d
}

// Verify reports whether sig is a valid signature of msg by the table's public key, with
// exactly the semantics of crypto/ed25519.Verify: the RFC 8032 cofactorless check, S
// below the group order, and R compared as bytes against the canonical encoding of
// [S]B − [k]A.
func (t *Table) Verify(msg, sig []byte) bool {
	var r extended
	if !t.signaturePoint(&r, msg, sig) {
		return false
	}
	var zInv field.Element
	zInv.Invert(&r.Z)
	return r.encodes(sig[:32], &zInv)
}

// signaturePoint sets r = [S]B − [k]A for the signature sig of msg, or reports false when
// sig cannot be valid (its length, or S not below the group order).
func (t *Table) signaturePoint(r *extended, msg, sig []byte) bool {
	if len(sig) != 64 || sig[63]&224 != 0 {
		return false
	}
	h := sha512.New()
	h.Write(sig[:32])
	h.Write(t.publicKey[:])
	h.Write(msg)
	var digest [64]byte
	k, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(digest[:0]))
	if err != nil {
		return false
	}
	s, err := edwards25519.NewScalar().SetCanonicalBytes(sig[32:])
	if err != nil {
		return false
	}
	*r = extended{}
	r.Y.One()
	r.Z.One()
	r.accumulate(baseTable(), s, false)
	r.accumulate(t, k, true)
	return true
}

// encodes reports whether encoded is the canonical encoding of r, given zInv = 1/Z: y
// with the sign of x in the top bit, computed as edwards25519.Point.Bytes computes it.
func (r *extended) encodes(encoded []byte, zInv *field.Element) bool {
	// SetExtendedCoordinates checks the point is on the curve: an arithmetic slip here
	// would fail closed instead of comparing a wrong encoding.
	if _, err := new(edwards25519.Point).SetExtendedCoordinates(&r.X, &r.Y, &r.Z, &r.T); err != nil {
		return false
	}
	var x, y field.Element
	x.Multiply(&r.X, zInv)
	y.Multiply(&r.Y, zInv)
	var out [32]byte
	copy(out[:], y.Bytes())
	out[31] |= byte(x.IsNegative() << 7)
	return bytes.Equal(encoded, out[:])
}

// Check is one signature for VerifyBatch: Sig of Msg by Table's key.
type Check struct {
	Table    *Table
	Msg, Sig []byte
}

// batchMax is how many checks VerifyBatch shares one inversion among; more save little
// (the inversion is ~15 % of a verification, and each check adds three multiplications).
const batchMax = 16

// VerifyBatch sets ok[i] to checks[i].Table.Verify(checks[i].Msg, checks[i].Sig), for
// every i, exactly: each check computes its own point as Verify does. Only the last step
// is shared: every verification ends with a field inversion (1/Z, to encode its point),
// and one inversion serves the whole batch (Montgomery's trick: invert the product of the
// Zs, then peel each 1/Z off with three multiplications). Nothing is weighted or combined
// across checks, so one bad signature affects its own result only.
func VerifyBatch(checks []Check, ok []bool) {
	for len(checks) > batchMax {
		VerifyBatch(checks[:batchMax], ok[:batchMax])
		checks, ok = checks[batchMax:], ok[batchMax:]
	}
	var points [batchMax]extended
	var index [batchMax]int // points[j] is the point of checks[index[j]]
	n := 0
	for i := range checks {
		ok[i] = false
		if checks[i].Table.signaturePoint(&points[n], checks[i].Msg, checks[i].Sig) {
			index[n] = i
			n++
		}
	}
	// prefix[j] is the product of the first j Zs.
	var prefix [batchMax + 1]field.Element
	prefix[0].One()
	for j := range n {
		prefix[j+1].Multiply(&prefix[j], &points[j].Z)
	}
	if prefix[n].Equal(new(field.Element)) == 1 {
		// A zero Z would zero every inverse. The addition formulas never produce one for
		// points on the curve, but the result must not depend on that: verify one by one.
		for j := range n {
			c := &checks[index[j]]
			ok[index[j]] = c.Table.Verify(c.Msg, c.Sig)
		}
		return
	}
	var inv, zInv field.Element
	inv.Invert(&prefix[n])
	for j := n - 1; j >= 0; j-- {
		zInv.Multiply(&inv, &prefix[j])  // 1/Z_j
		inv.Multiply(&inv, &points[j].Z) // 1/(Z_0 ... Z_{j-1})
		ok[index[j]] = points[j].encodes(checks[index[j]].Sig[:32], &zInv)
	}
}
