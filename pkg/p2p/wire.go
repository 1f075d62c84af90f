package p2p

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pandanet/pandanet/pkg/operation"
)

// Discovery session messages, CBOR arrays in uvarint length-prefixed frames.
const (
	msgAliceSalt     = 0 // Alice → Bob: salt half
	msgBobSaltHashes = 1 // Bob → Alice: salt half and Bob's topic hashes
	msgAliceHashes   = 2 // Alice → Bob: Alice's topic hashes
	msgRecords       = 3 // both: signed peer records
	// maxTopicHashes bounds the topics one side announces per session. A node following
	// more announces a different random subset each session (psiHashes), so every topic
	// is still found over a few walk rounds. It used to be 1,024, and a node following
	// more topics failed every discovery session and found no topic peers at all.
	maxTopicHashes = 1 << 17
	// maxDiscoveryFrame fits maxTopicHashes hashes (34 bytes each in CBOR) plus the salt;
	// records frames are bounded by maxRecords × maxRecordSize. Inbound sessions are
	// limited to maxConcurrentDiscoverySessions, so at most that many such frames are held.
	maxDiscoveryFrame = maxTopicHashes*34 + 4<<10
	maxRecords        = 32
	maxRecordSize     = 2048
)

// ErrInvalidMessage marks a discovery message that breaks the protocol.
var ErrInvalidMessage = errors.New("invalid discovery message")

type discMessage struct {
	_       struct{} `cbor:",toarray"`
	Kind    uint64
	Salt    []byte
	Hashes  [][]byte
	Records [][]byte
}

var discDecMode = operation.StrictCBOR(4, maxTopicHashes)

func encodeDiscMessage(m *discMessage) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	out, err := envEncMode.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode discovery message: %w", err)
	}
	if len(out) > maxDiscoveryFrame {
		return nil, fmt.Errorf("%w: %d bytes", ErrInvalidMessage, len(out))
	}
	return out, nil
}

// decodeDiscMessage parses untrusted bytes; every size is bounded.
func decodeDiscMessage(data []byte) (*discMessage, error) {
	if len(data) > maxDiscoveryFrame {
		return nil, fmt.Errorf("%w: %d bytes", ErrInvalidMessage, len(data))
	}
	var m discMessage
	if err := discDecMode.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *discMessage) validate() error {
	wantSalt, wantHashes, wantRecords := false, false, false
	switch m.Kind {
	case msgAliceSalt:
		wantSalt = true
	case msgBobSaltHashes:
		wantSalt, wantHashes = true, true
	case msgAliceHashes:
		wantHashes = true
	case msgRecords:
		wantRecords = true
	default:
		return fmt.Errorf("%w: unknown kind %d", ErrInvalidMessage, m.Kind)
	}
	if wantSalt != (len(m.Salt) > 0) || (wantSalt && len(m.Salt) != saltHalfSize) {
		return fmt.Errorf("%w: kind %d with %d salt bytes", ErrInvalidMessage, m.Kind, len(m.Salt))
	}
	if !wantHashes && len(m.Hashes) > 0 || len(m.Hashes) > maxTopicHashes {
		return fmt.Errorf("%w: kind %d with %d topic hashes", ErrInvalidMessage, m.Kind, len(m.Hashes))
	}
	for _, h := range m.Hashes {
		if len(h) != 32 {
			return fmt.Errorf("%w: topic hash of %d bytes", ErrInvalidMessage, len(h))
		}
	}
	if !wantRecords && len(m.Records) > 0 || len(m.Records) > maxRecords {
		return fmt.Errorf("%w: kind %d with %d records", ErrInvalidMessage, m.Kind, len(m.Records))
	}
	for _, r := range m.Records {
		if len(r) == 0 || len(r) > maxRecordSize {
			return fmt.Errorf("%w: record of %d bytes", ErrInvalidMessage, len(r))
		}
	}
	return nil
}

func (m *discMessage) hashes() [][32]byte {
	out := make([][32]byte, len(m.Hashes))
	for i, h := range m.Hashes {
		out[i] = [32]byte(h)
	}
	return out
}

func hashesToWire(hs [][32]byte) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

func writeFrame(w io.Writer, m *discMessage) error {
	data, err := encodeDiscMessage(m)
	if err != nil {
		return err
	}
	buf := binary.AppendUvarint(make([]byte, 0, len(data)+binary.MaxVarintLen32), uint64(len(data)))
	buf = append(buf, data...)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write discovery message: %w", err)
	}
	return nil
}

func readFrame(r *bufio.Reader, wantKind uint64) (*discMessage, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, fmt.Errorf("read discovery frame length: %w", err)
	}
	if n == 0 || n > maxDiscoveryFrame {
		return nil, fmt.Errorf("%w: frame of %d bytes", ErrInvalidMessage, n)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("read discovery frame: %w", err)
	}
	m, err := decodeDiscMessage(data)
	if err != nil {
		return nil, err
	}
	if m.Kind != wantKind {
		return nil, fmt.Errorf("%w: got kind %d, expected %d", ErrInvalidMessage, m.Kind, wantKind)
	}
	return m, nil
}
