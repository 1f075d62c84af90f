package p2p

import (
	"math/rand/v2"

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
	// One stack buffer and one-shot Sum256 instead of a streaming hasher: a node following
	// 10,000 topics hashes each of them twice per discovery session, and blake3.New's
	// allocation was a third of that session's CPU.
	var in [len(topic) + 2*saltHalfSize + 1]byte
	n := copy(in[:], topic[:])
	n += copy(in[n:], alice[:])
	n += copy(in[n:], bob[:])
	in[n] = role
	return blake3.Sum256(in[:])
}

// psiHashes hashes our topics for the remote, in random order so the order reveals nothing
// (a shuffle, not a sort: sorting 10,000 hashes cost more than hashing them). With more than
// maxTopicHashes topics it announces a random subset, a different one each session.
func psiHashes(topics []operation.Topic, alice, bob saltHalf, role byte) [][32]byte {
	out := make([][32]byte, len(topics))
	for i, t := range topics {
		out[i] = psiHash(t, alice, bob, role)
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
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
