package node

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/store"
)

// TestControl: a node adopts the control variate of a round only when
// that round commits with its update included, and keeps it sealed across
// restarts.
func TestControl(t *testing.T) {
	c := &control{ci: make(fl.Vector, 3), pending: map[fl.Round]fl.Vector{}}
	c.propose(1, fl.Vector{1, 1, 1})
	c.propose(2, fl.Vector{2, 2, 2})
	if c.commit(1, false) {
		t.Error("adopted the control of a round that did not include this node")
	}
	if !c.commit(2, true) || !slices.Equal(c.current(), fl.Vector{2, 2, 2}) {
		t.Errorf("after round 2 committed with this node: %v", c.current())
	}
	if c.commit(2, true) || len(c.pending) != 0 {
		t.Errorf("a second commit of round 2 changed the control, or pending %v remains", c.pending)
	}
	c.propose(3, fl.Vector{3, 3, 3})
	c.commit(4, true) // round 3 aborted; 4 committed without a proposal
	if !slices.Equal(c.current(), fl.Vector{2, 2, 2}) || len(c.pending) != 0 {
		t.Errorf("an aborted round's control was adopted: %v, pending %v", c.current(), c.pending)
	}

	dir := t.TempDir()
	key, _ := store.NewKey(make([]byte, 32))
	session := []byte("session")
	if err := c.save(dir, key, session); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, ControlFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control file: %v, %v", fi, err)
	}
	back := &control{ci: make(fl.Vector, 3), pending: map[fl.Round]fl.Vector{}}
	if err := back.load(dir, key, session); err != nil || !slices.Equal(back.current(), fl.Vector{2, 2, 2}) || back.round != 2 {
		t.Errorf("reloaded control %v of round %d, %v", back.current(), back.round, err)
	}
	other, _ := store.NewKey(append(make([]byte, 31), 1))
	for name, load := range map[string]func() error{
		"another key":     func() error { return back.load(dir, other, session) },
		"another session": func() error { return back.load(dir, key, []byte("other")) },
		"another model":   func() error { return (&control{ci: make(fl.Vector, 4)}).load(dir, key, session) },
	} {
		if err := load(); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	if err := (&control{ci: make(fl.Vector, 3)}).load(t.TempDir(), key, session); err != nil {
		t.Errorf("no file: %v, want the initial zeros", err)
	}
}
