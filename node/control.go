package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sync"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/store"
)

// ControlFile holds a SCAFFOLD node's control variate in its state
// directory, sealed with the at-rest key.
const ControlFile = "control.sealed"

const labelControl = "cloister/node/v1/scaffold-control"

// control is a node's SCAFFOLD control variate cᵢ, and the next ones its
// training tasks computed, by round. A node adopts the control of round r
// when the model of round r commits with its update included: then the
// server control, which moved by the included updates' Δc, stays the
// weighted mean of the members' controls. A round that aborts, or that
// went on without this node's update, leaves cᵢ as it was.
//
// The worker proposes (trainTask) and the engine loop commits; mu guards
// both.
type control struct {
	mu      sync.Mutex
	ci      fl.Vector
	round   fl.Round // the round whose commit set ci; 0 for the initial zeros
	pending map[fl.Round]fl.Vector
}

// current returns a copy of cᵢ.
func (c *control) current() fl.Vector {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ci.Clone()
}

// propose records the control computed in round r's training task.
func (c *control) propose(r fl.Round, next fl.Vector) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending[r] = next
}

// commit notes that round r committed, with this node's update included
// or not. It returns true if cᵢ changed (and must be stored).
func (c *control) commit(r fl.Round, included bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	next, ok := c.pending[r]
	for q := range c.pending {
		if q <= r {
			delete(c.pending, q)
		}
	}
	if !ok || !included || r <= c.round {
		return false
	}
	c.ci, c.round = next, r
	return true
}

func controlAD(session []byte) []byte {
	return append([]byte(labelControl+"\x00"), session...)
}

// save writes cᵢ to dir/ControlFile, sealed with atRest, atomically and
// durably.
func (c *control) save(dir string, atRest store.AtRest, session []byte) error {
	c.mu.Lock()
	b := binary.BigEndian.AppendUint64(nil, uint64(c.round))
	b = binary.BigEndian.AppendUint64(b, uint64(len(c.ci)))
	for _, x := range c.ci {
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(x))
	}
	c.mu.Unlock()
	sealed, err := atRest.Seal(b, controlAD(session))
	if err != nil {
		return fmt.Errorf("node: sealing the control variate: %w", err)
	}
	if err := store.WriteFile(filepath.Join(dir, ControlFile), sealed, 0o600); err != nil {
		return fmt.Errorf("node: storing the control variate: %w", err)
	}
	return nil
}

// load restores cᵢ from dir/ControlFile; a missing file leaves the
// initial zeros.
func (c *control) load(dir string, atRest store.AtRest, session []byte) error {
	path := filepath.Join(dir, ControlFile)
	sealed, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: reading the control variate: %w", err)
	}
	b, err := atRest.Open(sealed, controlAD(session))
	if err != nil {
		return fmt.Errorf("node: opening %s: %w", path, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(b) < 16 || binary.BigEndian.Uint64(b[8:]) != uint64(len(c.ci)) || len(b) != 16+8*len(c.ci) {
		return fmt.Errorf("node: %s holds %d bytes, not a control variate of %d values", path, len(b), len(c.ci))
	}
	ci := make(fl.Vector, len(c.ci))
	for i := range ci {
		ci[i] = math.Float64frombits(binary.BigEndian.Uint64(b[16+8*i:]))
	}
	if !ci.Finite() {
		return fmt.Errorf("node: %s holds non-finite values", path)
	}
	c.ci, c.round = ci, fl.Round(binary.BigEndian.Uint64(b))
	return nil
}
