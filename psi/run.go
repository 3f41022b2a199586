package psi

import (
	"errors"
	"fmt"
	"slices"
)

// Party is one party's input to [Run]: its name, its IDs (distinct, in its
// table's order) and its secret key.
type Party struct {
	Name string
	IDs  []string
	Key  *Key
}

// Options tune [Run].
type Options struct {
	// Batch is the number of points per message (0: 65,536).
	Batch int
	// Workers is the number of goroutines per step (0: one per core).
	Workers int
}

// Result is the outcome of a run: the aligned order of the shared IDs.
type Result struct {
	// Shared is the intersection, sorted: row i of the aligned tables.
	Shared []string
	// Rows holds, for the hub and then each other party in the order
	// given, the position in that party's ID list of each shared ID, in
	// the order of Shared.
	Rows [][]int
	// Bytes counts what the parties sent each other (blinded points and
	// the final position lists), the traffic a relay carries.
	Bytes int64
}

// Run computes the intersection of the hub's IDs with every other
// party's, as the protocol in the package documentation does, with every
// message passed in memory. It is the reference the networked runtime
// follows step by step, and what a single process that hosts all parties
// (a demo, a benchmark) calls.
func Run(hub Party, others []Party, o Options) (*Result, error) {
	if len(others) == 0 {
		return nil, errors.New("psi: need at least one party besides the hub")
	}
	batch := o.Batch
	if batch <= 0 {
		batch = 1 << 16
	}
	all := append([]Party{hub}, others...)
	names := make(map[string]bool)
	for _, p := range all {
		if names[p.Name] {
			return nil, fmt.Errorf("psi: party %q listed twice", p.Name)
		}
		names[p.Name] = true
		if err := checkParty(p); err != nil {
			return nil, err
		}
	}
	var bytes int64
	// Steps 2 and 3: the hub's singly blinded points go to every party,
	// which returns them doubly blinded; the hub keeps fingerprints only.
	matchers := make([]Matcher, len(others))
	for lo := 0; lo < len(hub.IDs); lo += batch {
		hi := min(lo+batch, len(hub.IDs))
		single := hub.Key.Blind(hub.IDs[lo:hi], o.Workers)
		for j, f := range others {
			bytes += int64(len(single))
			double, err := f.Key.Reblind(single, lo, o.Workers)
			if err != nil {
				return nil, fmt.Errorf("psi: party %q blinding the hub's points: %w", f.Name, err)
			}
			bytes += int64(len(double))
			if err := matchers[j].Add(double); err != nil {
				return nil, err
			}
		}
	}
	// Steps 1 and 4: each party's singly blinded points go to the hub,
	// which blinds them again and matches them.
	pair := make([][]int32, len(others))
	for j, f := range others {
		pair[j] = unmatched(len(hub.IDs))
		found := 0
		for lo := 0; lo < len(f.IDs); lo += batch {
			hi := min(lo+batch, len(f.IDs))
			single := f.Key.Blind(f.IDs[lo:hi], o.Workers)
			bytes += int64(len(single))
			double, err := hub.Key.Reblind(single, lo, o.Workers)
			if err != nil {
				return nil, fmt.Errorf("psi: hub %q blinding the points of %q: %w", hub.Name, f.Name, err)
			}
			err = matchers[j].Match(double, lo, func(h, other int) {
				pair[j][h] = int32(other)
				found++
			})
			if err != nil {
				return nil, fmt.Errorf("psi: hub %q matching %q: %w", hub.Name, f.Name, err)
			}
		}
		if found == 0 {
			return nil, fmt.Errorf("%w: party %q and hub %q", ErrNoOverlap, f.Name, hub.Name)
		}
		matchers[j] = Matcher{}
	}
	res, err := intersect(hub.IDs, pair)
	if err != nil {
		return nil, err
	}
	// The final lists: 4 bytes per shared position, to each party.
	bytes += int64(len(others)) * 4 * int64(len(res.Shared))
	res.Bytes = bytes
	return res, nil
}

// maxIDs bounds a party's set: positions travel as 32-bit integers and
// are held as int32.
const maxIDs = 1<<31 - 1

// checkParty checks one party's own input: a key and a valid set of at
// most maxIDs IDs.
func checkParty(p Party) error {
	if p.Key == nil {
		return fmt.Errorf("psi: party %q has no key", p.Name)
	}
	if err := CheckIDs(p.IDs); err != nil {
		return fmt.Errorf("psi: party %q: %w", p.Name, err)
	}
	if len(p.IDs) > maxIDs {
		return fmt.Errorf("psi: party %q has %d IDs, at most 2^31-1", p.Name, len(p.IDs))
	}
	return nil
}

// intersect turns the pairwise matches into the aligned order: pair[j][h]
// is the position in party j's list (j counting the parties after the
// hub) of the hub's ID h, or -1. It returns Shared and Rows (not Bytes),
// or ErrNoOverlap if no hub ID is held by every party.
func intersect(hubIDs []string, pair [][]int32) (*Result, error) {
	var shared []int32
	for h := range hubIDs {
		in := true
		for j := range pair {
			if pair[j][h] < 0 {
				in = false
				break
			}
		}
		if in {
			shared = append(shared, int32(h))
		}
	}
	if len(shared) == 0 {
		return nil, fmt.Errorf("%w: no ID is held by all %d parties", ErrNoOverlap, len(pair)+1)
	}
	slices.SortFunc(shared, func(a, b int32) int {
		if hubIDs[a] < hubIDs[b] {
			return -1
		}
		return 1
	})
	res := &Result{Shared: make([]string, len(shared)), Rows: make([][]int, len(pair)+1)}
	for i := range res.Rows {
		res.Rows[i] = make([]int, len(shared))
	}
	for r, h := range shared {
		res.Shared[r] = hubIDs[h]
		res.Rows[0][r] = int(h)
		for j := range pair {
			res.Rows[j+1][r] = int(pair[j][h])
		}
	}
	return res, nil
}

// unmatched returns n positions, each -1: no match yet.
func unmatched(n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = -1
	}
	return out
}
