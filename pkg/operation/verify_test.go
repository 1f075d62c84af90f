package operation

import (
	"bytes"
	"fmt"
	"slices"
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
		// In a batch with a valid signature on either side: the same answer, and theirs
		// stay valid.
		checks := []signatureCheck{batchNeighbour(t, 0), {key: k, msg: msg, sig: &s}, batchNeighbour(t, 1)}
		verifyBatch(checks)
		if checks[1].ok != want || !checks[0].ok || !checks[2].ok {
			t.Fatalf("key %x sig %x msg %x: in a batch %v (neighbours %v, %v), VerifyStandard %v",
				publicKey, sig, msg, checks[1].ok, checks[0].ok, checks[2].ok, want)
		}
	})
}

// batchNeighbour is a valid signature by a key that has its table.
func batchNeighbour(t *testing.T, i byte) signatureCheck {
	t.Helper()
	key, err := PrivateKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	installTable(t, key.PublicKey())
	msg := []byte{'n', i}
	sig := key.Sign(msg)
	return signatureCheck{key: key.PublicKey(), msg: msg, sig: &sig}
}

// DecodeBatch answers exactly what Decode and DecodeOwned answer, item by item: for an
// author with a key table and one without, a bad signature, a body that does not match,
// a header that does not decode, in batches of several sizes, and owned buffers are kept.
func TestDecodeBatchMatchesDecode(t *testing.T) {
	tabled, _ := GenerateKey()
	installTable(t, tabled.PublicKey())
	plain, _ := GenerateKey()
	logID := HashOf([]byte("batch"))
	var items []Encoded
	prev := map[PublicKey]*Operation{}
	for i := range 40 {
		key := tabled
		if i%7 == 3 {
			key = plain
		}
		d := Draft{LogID: logID, Body: fmt.Appendf(nil, "op %d", i)}
		if p := prev[key.PublicKey()]; p != nil {
			d.SeqNum, d.Backlink = p.SeqNum()+1, p.Hash
		}
		op, err := Sign(key, d)
		if err != nil {
			t.Fatal(err)
		}
		prev[key.PublicKey()] = op
		header, body := bytes.Clone(op.HeaderBytes), bytes.Clone(op.Body)
		switch i % 9 {
		case 2:
			header[len(header)-1] ^= 1 // bad signature
		case 5:
			body[0] ^= 1 // body does not match its hash
		case 7:
			header = header[:len(header)-3] // does not decode
		}
		items = append(items, Encoded{Header: header, Body: body, Owned: i%2 == 0})
	}
	for _, size := range []int{1, 3, 8, 40} {
		batch := slices.Clone(items)
		for start := 0; start < len(batch); start += size {
			DefaultLimits.DecodeBatch(batch[start:min(start+size, len(batch))])
		}
		bad := 0
		for i, got := range batch {
			want, werr := Decode(got.Header, got.Body)
			if fmt.Sprint(got.Err) != fmt.Sprint(werr) || (got.Op == nil) != (want == nil) {
				t.Fatalf("batches of %d, item %d: %v, %v; Decode says %v, %v", size, i, got.Op, got.Err, want, werr)
			}
			if werr != nil {
				bad++
				continue
			}
			if got.Op.Hash != want.Hash || !bytes.Equal(got.Op.HeaderBytes, want.HeaderBytes) || !bytes.Equal(got.Op.Body, want.Body) {
				t.Fatalf("batches of %d, item %d: decoded %s, Decode %s", size, i, got.Op.Hash.Short(), want.Hash.Short())
			}
			if kept := &got.Op.HeaderBytes[0] == &got.Header[0]; kept != got.Owned {
				t.Fatalf("batches of %d, item %d (owned %v): the operation kept the caller's header buffer: %v", size, i, got.Owned, kept)
			}
		}
		if bad != 13 {
			t.Fatalf("batches of %d: %d items refused, want 13", size, bad)
		}
	}
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
