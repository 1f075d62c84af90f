package p2p

import (
	"math/rand/v2"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
)

// resetProbability is p2panda's chance of restarting a walk from a bootstrap node, which
// keeps walkers from getting stuck in one region of the graph.
const resetProbability = 0.02

// walkBook is what the walk strategy needs from the address book.
type walkBook interface {
	known() []peer.ID
	bootstraps() []peer.ID
}

// walkState is one random walker (p2panda's random_walk strategy): visit unvisited peers
// at random, feeding it the peers learned at each visited node; on reset (start, nothing
// left to visit, or with probability resetProbability) reload the address book and start
// from a random bootstrap.
type walkState struct {
	self       peer.ID
	rng        *rand.Rand
	resetProb  float64
	needsReset bool
	visited    map[peer.ID]bool
	unvisited  map[peer.ID]bool
}

func newWalkState(self peer.ID, rng *rand.Rand) *walkState {
	return &walkState{self: self, rng: rng, resetProb: resetProbability, needsReset: true,
		visited: map[peer.ID]bool{}, unvisited: map[peer.ID]bool{}}
}

// next picks the next peer to visit; learned are the peers the previous visit told us
// about. It returns false when there is nobody to visit.
func (w *walkState) next(learned []peer.ID, book walkBook) (peer.ID, bool) {
	for _, id := range learned {
		if id != w.self && !w.visited[id] {
			w.unvisited[id] = true
		}
	}
	reset := w.needsReset || len(w.unvisited) == 0 || w.rng.Float64() < w.resetProb
	var candidates []peer.ID
	if reset {
		w.needsReset = false
		clear(w.visited)
		clear(w.unvisited)
		w.visited[w.self] = true
		for _, id := range book.known() {
			if id != w.self {
				w.unvisited[id] = true
			}
		}
		for _, id := range book.bootstraps() {
			if w.unvisited[id] {
				candidates = append(candidates, id)
			}
		}
	}
	if len(candidates) == 0 {
		for id := range w.unvisited {
			candidates = append(candidates, id)
		}
	}
	if len(candidates) == 0 {
		return "", false
	}
	slices.Sort(candidates) // map order is random; keep seeded walks reproducible
	id := candidates[w.rng.IntN(len(candidates))]
	delete(w.unvisited, id)
	w.visited[id] = true
	return id, true
}
