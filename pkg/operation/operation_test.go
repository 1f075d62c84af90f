package operation

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixtureBytes returns a fixture's header bytes and its body (nil when it has none).
func fixtureBytes(t testing.TB, header, body string) (raw, bodyBytes []byte) {
	t.Helper()
	if body != "" {
		bodyBytes = []byte(body)
	}
	return mustHex(t, header), bodyBytes
}

const fixtureSeed = "f47b55d7a1cc5ee3effd80a4e4a0c33112317d0432da9de6ae019ae7e78e16aa"

// p2panda-core serde.rs fixtures (spec appendix A.1), headers without extensions.
var coreFixtures = []struct {
	name, header, unsigned, hash string
	body                         string
}{
	{
		name: "F1 seq 0 no body",
		header: `85015820e415c4190cc7f1647a592ebf8e5f905c2adef9948b175b2b5c11e14511b51620584011815a20d4e04a8ddb52a0
2313cd5237f7cc799980cb7b666c5a3c17dfb0fb9af383b1368ed200e77d5ace1cf025b358c8f6b931f687f285807f16761766
16020000`,
		unsigned: "84015820e415c4190cc7f1647a592ebf8e5f905c2adef9948b175b2b5c11e14511b516200000",
		hash:     "fbc25eaaa999123a8655a6879bf5da1353977bf41d0a9740ab2f436bd1199250",
	},
	{
		name: "F2 seq 0 with body",
		header: `86015820e415c4190cc7f1647a592ebf8e5f905c2adef9948b175b2b5c11e14511b516205840bb599da5c5164f91e374e2cb
e7d5e1fdc5fdf09310e0ba925e7e4fb9965466106d38f1e4a4bf992f8ebd0c479f8f51cc6c7c1627de7a58c67b7d02d31cc4
5a000d5820bf7f440de32bfc9b3194b002a2d9afab312cb5d74771d3c31d80c0a9058aa08e00`,
		hash: "442bfafb2f97793a1e901881ab235938a1704b5ba8c9c379a99b5568813c8da1",
		body: "Hello, Sloth!",
	},
	{
		name: "F3 seq 1 backlink",
		header: `86015820e415c4190cc7f1647a592ebf8e5f905c2adef9948b175b2b5c11e14511b5162058405af1dbb37160cff5c10373a6
54b1ecbfc28622d675b6827961096eaa232c9bcd93b4eabc11276d928e44b5ba77c5472df5f6208b2ec5960cff6e8663058b
df0d00015820442bfafb2f97793a1e901881ab235938a1704b5ba8c9c379a99b5568813c8da1`,
		hash: "232288a6d97adbbc090eb760335ee925d190822635bd1e1a667d31afd57ab542",
	},
}

func TestCoreFixturesRoundTrip(t *testing.T) {
	key, err := ParsePrivateKey(fixtureSeed)
	if err != nil {
		t.Fatal(err)
	}
	if got := key.PublicKey().String(); got != "e415c4190cc7f1647a592ebf8e5f905c2adef9948b175b2b5c11e14511b51620" {
		t.Fatalf("public key %s", got)
	}
	var prev *Operation
	for _, f := range coreFixtures {
		t.Run(f.name, func(t *testing.T) {
			raw, body := fixtureBytes(t, f.header, f.body)
			op, err := Decode(raw, body)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !bytes.Equal(op.Header.Encode(), raw) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", op.Header.Encode(), raw)
			}
			if op.Hash.String() != f.hash {
				t.Fatalf("hash %s, want %s", op.Hash, f.hash)
			}
			if f.unsigned != "" && hex.EncodeToString(op.Header.SigningBytes()) != f.unsigned {
				t.Fatalf("unsigned bytes %x", op.Header.SigningBytes())
			}
			// Signing is deterministic: re-signing reproduces the fixture byte for byte.
			d := Draft{SeqNum: op.SeqNum(), Backlink: op.Header.Backlink, Body: body, NoExtensions: true}
			resigned, err := Sign(key, d)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(resigned.HeaderBytes, raw) {
				t.Fatalf("re-signed header differs:\n got %x\nwant %x", resigned.HeaderBytes, raw)
			}
			if prev != nil && op.SeqNum() == 1 {
				if err := CheckSequence(prev, op); err != nil {
					t.Fatalf("F3 must follow F2: %v", err)
				}
			}
			prev = op
		})
	}
}

func TestNodeExtensionVectors(t *testing.T) {
	key, _ := ParsePrivateKey(fixtureSeed)
	var topic Topic
	for i := range topic {
		topic[i] = 1
	}
	logID := LogIDFromTopic(topic)
	if logID.String() != "9515049071ed913149a80d3bb7891fcd4c6c1e3d14ad878939a80f9b9a91e08c" {
		t.Fatalf("log id %s", logID)
	}
	const ts = 1767225600000000
	body := mustHex(t, "6d48656c6c6f2c2050616e646121") // CBOR text "Hello, Panda!"
	op0, err := Sign(key, Draft{LogID: logID, Timestamp: ts, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	want0 := `87015820e415c4190cc7f1647a592ebf8e5f905c2adef9948b175b2b5c11e14511b5162058400ce7d5a92df0da102daef33c
95fd1597b6f6177379d56df674b0749ab1091aebb9b92c50795c8d93ab69302f6f770f294070958d0e8c7768160079b2f8d0
84040e5820c6208537343f375abecc6811528fe87ed3b51f344765e7586f645bd05ed27e900085010058209515049071ed91
3149a80d3bb7891fcd4c6c1e3d14ad878939a80f9b9a91e08c1b0006474846204000f4`
	if !bytes.Equal(op0.HeaderBytes, mustHex(t, want0)) {
		t.Fatalf("op0 header %x", op0.HeaderBytes)
	}
	if op0.Hash.String() != "1672252e9d5693f4183b6f1178f49c2d0fc9b8c966b7073d3104ae4a7bdf488a" {
		t.Fatalf("op0 hash %s", op0.Hash)
	}
	op1, err := Sign(key, Draft{SeqNum: 1, Backlink: op0.Hash, LogID: logID, Timestamp: ts, Prune: true})
	if err != nil {
		t.Fatal(err)
	}
	if op1.Hash.String() != "27fe40c96c89d8d60cb988fda358e33258b73000d8dd169f03c2a6d5fb5822bd" {
		t.Fatalf("op1 hash %s", op1.Hash)
	}
	decoded, err := Decode(op1.HeaderBytes, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !decoded.Prune() || decoded.LogID() != logID || decoded.Timestamp() != ts {
		t.Fatalf("extensions lost: %+v", decoded.Header.Extensions)
	}
	if err := CheckSequence(op0, decoded); err != nil {
		t.Fatal(err)
	}
}

func TestKnownHashesAndIDs(t *testing.T) {
	if got := HashOf([]byte{1, 2, 3}).String(); got != "b177ec1bf26dfb3b7010d473e6d44713b29b765b99c6e60ecbfae742de496543" {
		t.Fatal(got)
	}
	if got := DefaultNetworkID.String(); got != "f745f8f284789fe66264d6c84e284f5eae080c1b54c3f69f84f04fd0012b8476" {
		t.Fatal(got)
	}
	id, err := ParseNetworkID("p2panda")
	if err != nil || id != DefaultNetworkID {
		t.Fatalf("ParseNetworkID(p2panda) = %s, %v", id, err)
	}
	raw, err := ParseTopic(strings.Repeat("01", 32))
	if err != nil || raw[0] != 1 || raw[31] != 1 {
		t.Fatalf("hex topic not taken raw: %s %v", raw, err)
	}
	for _, bad := range []string{"", "a\nb", strings.Repeat("x", 300)} {
		if _, err := ParseTopic(bad); err == nil {
			t.Errorf("ParseTopic(%q) accepted", bad)
		}
	}
}

func TestTruncatedCBORIsRejected(t *testing.T) {
	_, err := DecodeHeader(mustHex(t, "828901582014d59877a250"))
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("want ErrMalformed, got %v", err)
	}
}

func validOp(t testing.TB) (PrivateKey, *Operation) {
	t.Helper()
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	op, err := Sign(key, Draft{LogID: HashOf([]byte("log")), Body: []byte("payload")})
	if err != nil {
		t.Fatal(err)
	}
	return key, op
}

// resign re-signs a modified header so only the intended defect remains.
func resign(key PrivateKey, h Header) []byte {
	h.Signature = key.Sign(h.SigningBytes())
	return h.Encode()
}

func TestInvalidOperations(t *testing.T) {
	key, op := validOp(t)
	other, _ := GenerateKey()
	cases := []struct {
		name   string
		header func() []byte
		body   []byte
		want   error
	}{
		{"version 0", func() []byte { h := op.Header; h.Version = 0; return resign(key, h) }, op.Body, ErrUnsupportedVersion},
		{"wrong key", func() []byte { h := op.Header; h.PublicKey = other.PublicKey(); return h.Encode() }, op.Body, ErrSignature},
		{"flipped signature bit", func() []byte { h := op.Header; h.Signature[10] ^= 1; return h.Encode() }, op.Body, ErrSignature},
		{"tampered timestamp", func() []byte { h := op.Header; e := *h.Extensions; e.Timestamp++; h.Extensions = &e; return h.Encode() }, op.Body, ErrSignature},
		{"body differs", func() []byte { return op.HeaderBytes }, []byte("PAYLOAD"), ErrPayloadMismatch},
		{"body longer", func() []byte { return op.HeaderBytes }, []byte("payload!"), ErrPayloadMismatch},
		{"body too large", func() []byte { return op.HeaderBytes }, make([]byte, DefaultMaxPayloadSize+1), ErrTooLarge},
		{"payload size too large", func() []byte {
			h := op.Header
			h.PayloadSize = DefaultMaxPayloadSize + 1
			return resign(key, h)
		}, nil, ErrTooLarge},
		{"trailing garbage", func() []byte { return append(bytes.Clone(op.HeaderBytes), 0) }, op.Body, ErrMalformed},
		{"not an array", func() []byte { return []byte{0x01} }, nil, ErrMalformed},
		{"empty", func() []byte { return nil }, nil, ErrMalformed},
		{"non-canonical int", func() []byte {
			// version 1 encoded in two bytes (0x18 0x01) instead of one.
			b := bytes.Clone(op.HeaderBytes)
			return append([]byte{b[0], 0x18, 0x01}, b[2:]...)
		}, op.Body, ErrMalformed},
		{"header too large", func() []byte { return make([]byte, MaxHeaderSize+1) }, nil, ErrTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.header(), c.body)
			if !errors.Is(err, c.want) {
				t.Fatalf("want %v, got %v", c.want, err)
			}
			if Reason(err) == "other" {
				t.Fatalf("no reason label for %v", err)
			}
		})
	}
	if _, err := Decode(op.HeaderBytes, nil); err != nil {
		t.Fatalf("a missing body is allowed: %v", err)
	}
}

func TestStructuralRulesAtDecode(t *testing.T) {
	key, _ := GenerateKey()
	// Hand-build arrays that break the "hash iff size, backlink iff seq" rules.
	pk := key.PublicKey()
	sig := make([]byte, 64)
	cases := map[string][]any{
		"size without hash":   {uint64(1), pk[:], sig, uint64(5), uint64(0)},
		"seq without link":    {uint64(1), pk[:], sig, uint64(0), uint64(3)},
		"short key":           {uint64(1), pk[:5], sig, uint64(0), uint64(0)},
		"negative seq":        {uint64(1), pk[:], sig, uint64(0), int64(-1)},
		"text for key":        {uint64(1), string(pk[:]), sig, uint64(0), uint64(0)},
		"bad ext version":     {uint64(1), pk[:], sig, uint64(0), uint64(0), []any{uint64(2), uint64(0), make([]byte, 32), uint64(1), false}},
		"bad ext variant":     {uint64(1), pk[:], sig, uint64(0), uint64(0), []any{uint64(1), uint64(1), make([]byte, 32), uint64(1), false}},
		"ext field not canon": {uint64(1), pk[:], sig, uint64(0), uint64(0), []any{uint64(1), uint64(0), make([]byte, 32), uint64(1), false, cbor.RawMessage{0x18, 0x01}}},
		"excess header elem":  {uint64(1), pk[:], sig, uint64(0), uint64(0), []any{uint64(1), uint64(0), make([]byte, 32), uint64(1), false}, uint64(1)},
		"seq beyond u32":      {uint64(1), pk[:], sig, uint64(0), uint64(1 << 33), make([]byte, 32)},
	}
	for name, fields := range cases {
		raw, err := encMode.Marshal(fields)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeHeader(raw); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: want ErrMalformed, got %v", name, err)
		}
	}
}

func TestStrictVerifyRejectsSmallOrderKeys(t *testing.T) {
	for enc := range smallOrderEncodings {
		pk := PublicKey(enc)
		if !isWeakKey(pk) {
			t.Errorf("%x not detected as small order", enc)
		}
		// With A = identity and R = identity, s = 0 satisfies the verification equation
		// for every message: Go's crypto/ed25519 accepts it, dalek's verify_strict does not.
		var sig Signature
		copy(sig[:32], mustHex(t, "0100000000000000000000000000000000000000000000000000000000000000"))
		if pk.Verify([]byte("anything"), sig) {
			t.Errorf("signature under small-order key %x accepted", enc)
		}
	}
	key, _ := GenerateKey()
	if isWeakKey(key.PublicKey()) {
		t.Fatal("random key flagged as weak")
	}
}

func TestCheckSequence(t *testing.T) {
	key, _ := GenerateKey()
	logID := HashOf([]byte("t"))
	op0, _ := Sign(key, Draft{LogID: logID, Body: []byte("a")})
	op1, _ := Sign(key, Draft{SeqNum: 1, Backlink: op0.Hash, LogID: logID})
	fork1, _ := Sign(key, Draft{SeqNum: 1, Backlink: HashOf([]byte("elsewhere")), LogID: logID})
	op7, _ := Sign(key, Draft{SeqNum: 7, Backlink: HashOf([]byte("x")), LogID: logID})
	prune7, _ := Sign(key, Draft{SeqNum: 7, Backlink: HashOf([]byte("x")), LogID: logID, Prune: true})
	cases := []struct {
		name   string
		latest *Operation
		op     *Operation
		want   error
	}{
		{"seq 0 on empty", nil, op0, nil},
		{"seq 1 after 0", op0, op1, nil},
		{"fork at 1", op0, fork1, ErrFork},
		{"gap without prune", nil, op7, ErrSeqNum},
		{"prune starts a log", nil, prune7, nil},
		{"prune skips ahead", op1, prune7, nil},
		{"gap after 1", op1, op7, ErrSeqNum},
		{"seq 0 after 1", op1, op0, ErrSeqNum},
	}
	for _, c := range cases {
		if err := CheckSequence(c.latest, c.op); !errors.Is(err, c.want) && !(c.want == nil && err == nil) {
			t.Errorf("%s: want %v, got %v", c.name, c.want, err)
		}
	}
}

func TestKeyFile(t *testing.T) {
	path := t.TempDir() + "/identity.key"
	key, created, err := LoadOrCreateKeyFile(path)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	again, created, err := LoadOrCreateKeyFile(path)
	if err != nil || created || again.PublicKey() != key.PublicKey() {
		t.Fatalf("reload: %v %v", created, err)
	}
}

// The extensions spec: decoders must not fail on fields a later version appends. They are
// kept verbatim, so the header re-encodes to the signed bytes and the signature verifies.
func TestUnknownExtensionFieldsAreKept(t *testing.T) {
	key, _ := GenerateKey()
	op, err := Sign(key, Draft{LogID: LogIDFromTopic(Topic(HashOf([]byte("t")))), Body: []byte("hi")})
	if err != nil {
		t.Fatal(err)
	}
	h := op.Header
	future, _ := encMode.Marshal([]any{"a later field", uint64(7)})
	flag, _ := encMode.Marshal(true)
	h.Extensions = &Extensions{LogID: h.Extensions.LogID, Timestamp: h.Extensions.Timestamp, Unknown: [][]byte{future, flag}}
	h.Signature = key.Sign(h.SigningBytes())
	enc := h.Encode()
	got, err := Decode(enc, op.Body)
	if err != nil {
		t.Fatalf("decode with unknown extension fields: %v", err)
	}
	if u := got.Header.Extensions.Unknown; len(u) != 2 || !bytes.Equal(u[0], future) || !bytes.Equal(u[1], flag) {
		t.Fatalf("unknown fields %x, want %x and %x", u, future, flag)
	}
	if !bytes.Equal(got.Header.Encode(), enc) || got.Hash != HashOf(enc) {
		t.Fatal("the decoded header does not re-encode to the signed bytes")
	}
}

// p2panda-core rejects a present body that does not match the header: an empty body with
// payload_size 0 has no payload_hash to match. Only an absent (nil) body is allowed.
func TestPresentEmptyBodyIsRejected(t *testing.T) {
	key, _ := GenerateKey()
	op, err := Sign(key, Draft{LogID: LogIDFromTopic(Topic(HashOf([]byte("t"))))}) // payload_size 0
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(op.HeaderBytes, []byte{}); !errors.Is(err, ErrPayloadMismatch) {
		t.Fatalf("payload_size 0 with a present empty body: want ErrPayloadMismatch, got %v", err)
	}
	if _, err := Decode(op.HeaderBytes, nil); err != nil {
		t.Fatalf("payload_size 0 without a body: %v", err)
	}
	withBody, err := Sign(key, Draft{LogID: LogIDFromTopic(Topic(HashOf([]byte("t")))), Body: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(withBody.HeaderBytes, []byte{}); !errors.Is(err, ErrPayloadMismatch) {
		t.Fatalf("payload_size 1 with a present empty body: want ErrPayloadMismatch, got %v", err)
	}
}

// DecodeOwned must answer exactly as Decode does and differ only in keeping the caller's
// buffers: Decode's operation survives the caller reusing its buffers, DecodeOwned's is
// built on them.
func TestDecodeOwnedKeepsTheBuffersDecodeCopiesThem(t *testing.T) {
	for _, f := range coreFixtures[:2] {
		raw, body := fixtureBytes(t, f.header, f.body)
		copied, err := Decode(raw, body)
		if err != nil {
			t.Fatalf("%s: Decode: %v", f.name, err)
		}
		owned, err := DefaultLimits.DecodeOwned(raw, body)
		if err != nil {
			t.Fatalf("%s: DecodeOwned: %v", f.name, err)
		}
		if owned.Hash != copied.Hash || !bytes.Equal(owned.HeaderBytes, copied.HeaderBytes) || !bytes.Equal(owned.Body, copied.Body) {
			t.Fatalf("%s: DecodeOwned gave %s, Decode %s", f.name, owned.Hash, copied.Hash)
		}
		if &owned.HeaderBytes[0] != &raw[0] || (body != nil && &owned.Body[0] != &body[0]) {
			t.Fatalf("%s: DecodeOwned copied the buffers it was handed", f.name)
		}
		clear(raw)
		clear(body)
		if copied.Hash.String() != f.hash || HashOf(copied.HeaderBytes).String() != f.hash ||
			(body != nil && string(copied.Body) != f.body) {
			t.Fatalf("%s: Decode's operation changed with the caller's buffers", f.name)
		}
	}
	// Rejections are the same too: a body that does not match its header.
	raw := mustHex(t, coreFixtures[1].header)
	_, errCopy := Decode(raw, []byte("Hello, Otter!"))
	_, errOwned := DefaultLimits.DecodeOwned(raw, []byte("Hello, Otter!"))
	if errCopy == nil || errOwned == nil || errCopy.Error() != errOwned.Error() {
		t.Fatalf("mismatched body: Decode said %v, DecodeOwned %v", errCopy, errOwned)
	}
}
