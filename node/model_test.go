package node

import (
	"crypto/sha256"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

// TestNoteModel: the daemon stores a newer committed model, and a model of
// the stored round only when a Train brings it re-sealed (after a re-key):
// that copy replaces the stored one, which only the previous group key
// opens.
func TestNoteModel(t *testing.T) {
	n := &Node{savedModel: 2, savedSum: sha256.Sum256([]byte("m2")), hasModel: true}
	steps := []struct {
		r       fl.Round
		sealed  string
		reseal  bool
		pend    string // "" if nothing to store
		replace bool
	}{
		{1, "m1", true, "", false},                    // older
		{2, "m2", true, "", false},                    // the stored copy again
		{2, "m2'", false, "", false},                  // a Model of the stored round: never replaced
		{2, "m2 resealed", true, "m2 resealed", true}, // Train after a re-key
		{2, "m2 resealed", true, "m2 resealed", true}, // the same Train again
		{3, "m3", false, "m3", false},                 // the next commit
		{2, "m2 resealed2", true, "m3", false},        // older than what is noted
	}
	for i, s := range steps {
		n.noteModel(s.r, []byte(s.sealed), s.reseal)
		switch {
		case s.pend == "" && n.pendModel != nil:
			t.Errorf("step %d: noted %q, want nothing", i, n.pendModel.Sealed)
		case s.pend != "" && (n.pendModel == nil || string(n.pendModel.Sealed) != s.pend || n.resealed != s.replace):
			t.Errorf("step %d: noted %+v (replace %t), want %q (replace %t)", i, n.pendModel, n.resealed, s.pend, s.replace)
		}
	}
}
