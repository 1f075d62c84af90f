package controllers

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zeebo/blake3"
)

// newSeedHex returns a fresh Ed25519 seed in the key-file format of the contract:
// 32 bytes as 64 hex characters.
func newSeedHex() (string, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return "", fmt.Errorf("generate identity seed: %w", err)
	}
	return hex.EncodeToString(seed), nil
}

// peerIDFromSeedHex derives the libp2p peer id (12D3KooW...) the node will have, so the
// operator knows every node's peer id before any pod runs.
func peerIDFromSeedHex(seedHex string) (string, error) {
	seed, err := hex.DecodeString(strings.TrimSpace(seedHex))
	if err != nil {
		return "", fmt.Errorf("identity key is not hex: %w", err)
	}
	if len(seed) != ed25519.SeedSize {
		return "", fmt.Errorf("identity key has %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	sk, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		return "", fmt.Errorf("unmarshal identity key: %w", err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		return "", fmt.Errorf("derive peer id: %w", err)
	}
	return id.String(), nil
}

// canonicalID applies the id rule of docs/node-contract.md (pkg/operation.ParseID): 64
// hex characters are the raw bytes, anything else is BLAKE3 of the string. It returns
// the lowercase hex form the nodes' admin API reports. Kept local so the operator does
// not depend on the node's internal packages.
func canonicalID(s string) string {
	if len(s) == 64 {
		if b, err := hex.DecodeString(s); err == nil {
			return hex.EncodeToString(b)
		}
	}
	sum := blake3.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
