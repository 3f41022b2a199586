package secagg

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"slices"
)

// graph is a round's masking graph over the members' sorted indices: who
// masks with whom. It is public, the same for every party and the helper:
// the complete graph, or a ring of half-width deg/2 through the members in
// an order shuffled by a seed that hashes the setup transcript and the
// round, so that the coordinator does not choose it (Flower's server draws
// its own ring).
type graph struct {
	adj [][]int // ascending neighbour indices of each member
}

func newGraph(transcript [32]byte, r uint64, n, deg int) graph {
	adj := make([][]int, n)
	if deg >= n-1 {
		for i := range n {
			adj[i] = make([]int, 0, n-1)
			for j := range n {
				if j != i {
					adj[i] = append(adj[i], j)
				}
			}
		}
		return graph{adj}
	}
	h := sha256.New()
	h.Write([]byte("cloister/secagg/v1 graph"))
	h.Write(transcript[:])
	h.Write(binary.BigEndian.AppendUint64(nil, r))
	var s [32]byte
	h.Sum(s[:0])
	ring := make([]int, n)
	for i := range ring {
		ring[i] = i
	}
	rand.New(rand.NewChaCha8(s)).Shuffle(n, func(i, j int) { ring[i], ring[j] = ring[j], ring[i] })
	half := deg / 2
	for pos, i := range ring {
		nb := make([]int, 0, deg)
		for off := 1; off <= half; off++ {
			nb = append(nb, ring[(pos+off)%n], ring[(pos-off+n)%n])
		}
		slices.Sort(nb)
		adj[i] = nb
	}
	return graph{adj}
}

// isolated returns a member of inc (ascending indices, at least two) none
// of whose neighbours is in inc, or -1. Such a member's update would be
// unmasked on its own.
func (g graph) isolated(in []bool, inc []int) int {
	if len(inc) < 2 {
		return -1
	}
	for _, v := range inc {
		if !slices.ContainsFunc(g.adj[v], func(u int) bool { return in[u] }) {
			return v
		}
	}
	return -1
}
