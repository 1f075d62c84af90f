package p2p

import (
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pandanet/pandanet/pkg/operation"
)

// ErrNotEd25519 is returned when a peer id does not embed an Ed25519 key, which every
// pandanet node's id does (the node key is the operation signing key).
var ErrNotEd25519 = errors.New("peer id does not embed an ed25519 key")

// Libp2pPrivateKey converts the node's operation key into a libp2p identity key. Both are the
// same Ed25519 key, so the peer id is a function of the author's public key.
func Libp2pPrivateKey(key operation.PrivateKey) (crypto.PrivKey, error) {
	if key.IsZero() {
		return nil, errors.New("private key is not set")
	}
	priv, err := crypto.UnmarshalEd25519PrivateKey(key.Ed25519())
	if err != nil {
		return nil, fmt.Errorf("convert ed25519 key to libp2p key: %w", err)
	}
	return priv, nil
}

// PeerIDFromPublicKey returns the libp2p peer id of the node whose operation key is pk.
// Ed25519 keys are small enough to be inlined into the id (identity multihash), so this is
// a pure, reversible computation.
func PeerIDFromPublicKey(pk operation.PublicKey) (peer.ID, error) {
	pub, err := crypto.UnmarshalEd25519PublicKey(pk[:])
	if err != nil {
		return "", fmt.Errorf("convert public key %s: %w", pk.Short(), err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("peer id of %s: %w", pk.Short(), err)
	}
	return id, nil
}

// PublicKeyFromPeerID extracts the node's operation public key from its peer id.
func PublicKeyFromPeerID(id peer.ID) (operation.PublicKey, error) {
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return operation.PublicKey{}, fmt.Errorf("public key of peer %s: %w", id, err)
	}
	if pub.Type() != crypto.Ed25519 {
		return operation.PublicKey{}, fmt.Errorf("peer %s: %w", id, ErrNotEd25519)
	}
	raw, err := pub.Raw()
	if err != nil {
		return operation.PublicKey{}, fmt.Errorf("public key of peer %s: %w", id, err)
	}
	if len(raw) != operation.PublicKeySize {
		return operation.PublicKey{}, fmt.Errorf("peer %s: %w", id, ErrNotEd25519)
	}
	return operation.PublicKey(raw), nil
}
