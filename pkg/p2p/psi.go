package p2p

import (
	"bytes"
	"slices"

	"github.com/zeebo/blake3"

	"github.com/pandanet/pandanet/pkg/operation"
)

// Private topic intersection (p2panda's PSI hash protocol). Each session both sides
// contribute half of a fresh salt; a topic is sent as BLAKE3(topic ‖ alice_half ‖ bob_half ‖
// role), where role is the byte of the side that hashed it (Alice 0, Bob 1). A side can
// only recognise hashes of topics it knows itself, hashes are unlinkable across sessions,
// and neither side can echo the other's hashes back to fake an intersection.

const (
	saltHalfSize = 32
	psiRoleAlice = 0
	psiRoleBob   = 1
)

type saltHalf = [saltHalfSize]byte

func psiHash(topic operation.Topic, alice, bob saltHalf, role byte) [32]byte {
	h := blake3.New()
	_, _ = h.Write(topic[:])
	_, _ = h.Write(alice[:])
	_, _ = h.Write(bob[:])
	_, _ = h.Write([]byte{role})
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// psiHashes hashes our topics for the remote, sorted so the order reveals nothing. With more
// than maxTopicHashes topics it keeps the lowest hashes: the salt is fresh every session, so
// that is a different pseudo-random subset each time.
func psiHashes(topics []operation.Topic, alice, bob saltHalf, role byte) [][32]byte {
	out := make([][32]byte, 0, len(topics))
	for _, t := range topics {
		out = append(out, psiHash(t, alice, bob, role))
	}
	slices.SortFunc(out, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	out = slices.Compact(out)
	return out[:min(len(out), maxTopicHashes)]
}

// psiIntersect returns those of our topics whose hash (as the remote, with its role,
// would have computed it) is in remote.
func psiIntersect(ours []operation.Topic, remote [][32]byte, alice, bob saltHalf, remoteRole byte) []operation.Topic {
	set := make(map[[32]byte]struct{}, len(remote))
	for _, h := range remote {
		set[h] = struct{}{}
	}
	var out []operation.Topic
	for _, t := range ours {
		if _, ok := set[psiHash(t, alice, bob, remoteRole)]; ok {
			out = append(out, t)
		}
	}
	return out
}
