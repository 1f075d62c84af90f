package p2p

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/pandanet/pandanet/pkg/operation"
)

func FuzzDecodeDiscoveryMessage(f *testing.F) {
	var salt saltHalf
	seeds := []*discMessage{
		{Kind: msgAliceSalt, Salt: salt[:]},
		{Kind: msgBobSaltHashes, Salt: salt[:], Hashes: hashesToWire(psiHashes(topicSet(1, 2), salt, salt, psiRoleBob))},
		{Kind: msgAliceHashes},
		{Kind: msgRecords, Records: [][]byte{{1, 2, 3}}},
	}
	for _, m := range seeds {
		data, err := encodeDiscMessage(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{0x84, 0x05, 0x40, 0x80, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeDiscMessage(data)
		if err == nil {
			// Whatever decodes re-encodes and decodes to the same message.
			again, err := encodeDiscMessage(m)
			if err != nil {
				t.Fatalf("decoded message does not re-encode: %v", err)
			}
			m2, err := decodeDiscMessage(again)
			if err != nil || m2.Kind != m.Kind || !bytes.Equal(m2.Salt, m.Salt) || len(m2.Hashes) != len(m.Hashes) || len(m2.Records) != len(m.Records) {
				t.Fatalf("round trip changed the message: %v", err)
			}
		}
		// The framed reader must not panic or over-allocate on arbitrary input.
		_, _ = readFrame(bufio.NewReader(bytes.NewReader(data)), msgRecords)
	})
}

func FuzzDecodeEphemeral(f *testing.F) {
	key, _ := operation.GenerateKey()
	good, _ := encodeEphemeral(key, 1, 2, []byte("body"))
	f.Add(good)
	f.Add([]byte{0x86, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := decodeEphemeral(data)
		if err == nil && !env.Author.Verify(ephemeralSigningBytes(env.Author, env.Timestamp, env.Lamport, env.Body), env.Signature) {
			t.Fatal("accepted an envelope whose signature does not verify")
		}
	})
}
