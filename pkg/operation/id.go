package operation

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Topic identifies an eventually consistent stream. It never appears on the wire inside an
// operation; operations carry LogIDFromTopic(topic) instead.
type Topic [32]byte

// NetworkID scopes a node to one network: peers with another network id never exchange data.
type NetworkID [32]byte

// DefaultNetworkID is p2panda's default network id, BLAKE3("p2panda").
var DefaultNetworkID = NetworkID(HashOf([]byte("p2panda")))

// LogID identifies one author's log. The Node keeps exactly one log per (author, topic),
// with id BLAKE3(topic).
type LogID = Hash

// LogIDFromTopic returns the log id every author uses for topic.
func LogIDFromTopic(t Topic) LogID { return HashOf(t[:]) }

func (t Topic) String() string     { return hex.EncodeToString(t[:]) }
func (n NetworkID) String() string { return hex.EncodeToString(n[:]) }

// MarshalText implements encoding.TextMarshaler (hex).
func (t Topic) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText accepts any id string under the ParseID rule.
func (t *Topic) UnmarshalText(text []byte) error {
	id, err := ParseID(string(text))
	if err != nil {
		return err
	}
	*t = Topic(id)
	return nil
}

// MarshalText implements encoding.TextMarshaler (hex).
func (n NetworkID) MarshalText() ([]byte, error) { return []byte(n.String()), nil }

// MaxIDNameLength bounds names that are hashed into ids.
const MaxIDNameLength = 256

// ParseID turns what a user typed into a 32-byte id. Exactly 64 hex characters are the raw
// bytes; any other non-empty string is hashed with BLAKE3, so "p2panda" is p2panda's default
// network id and "chat" is topic BLAKE3("chat"). The same rule applies to flags, config files,
// topic files and Kubernetes resources.
func ParseID(s string) ([32]byte, error) {
	switch {
	case s == "":
		return [32]byte{}, errors.New("id is empty")
	case len(s) > MaxIDNameLength:
		return [32]byte{}, fmt.Errorf("id is %d bytes long, at most %d allowed", len(s), MaxIDNameLength)
	case strings.ContainsAny(s, "\r\n\x00"):
		return [32]byte{}, errors.New("id contains a newline or NUL byte")
	}
	var id [32]byte
	if len(s) == 64 {
		if _, err := hex.Decode(id[:], []byte(s)); err == nil {
			return id, nil
		}
	}
	return HashOf([]byte(s)), nil
}

// ParseTopic applies ParseID and returns a Topic.
func ParseTopic(s string) (Topic, error) {
	id, err := ParseID(s)
	if err != nil {
		return Topic{}, fmt.Errorf("topic %q: %w", s, err)
	}
	return Topic(id), nil
}

// ParseNetworkID applies ParseID and returns a NetworkID.
func ParseNetworkID(s string) (NetworkID, error) {
	id, err := ParseID(s)
	if err != nil {
		return NetworkID{}, fmt.Errorf("network id %q: %w", s, err)
	}
	return NetworkID(id), nil
}
