package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/keyring"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/store"
	"github.com/cloisterfl/cloister/strategy/scaffold"
)

// ErrNoModel: the node's store holds no model yet.
var ErrNoModel = errors.New("node: no model yet")

// Exported is a plaintext global model.
type Exported struct {
	Federation string    `json:"federation"`
	Session    string    `json:"session"` // hex
	Round      fl.Round  `json:"round"`   // the round that committed it (0: the initial model)
	Kind       string    `json:"kind"`
	Hidden     []int     `json:"hidden,omitempty"`
	Params     int       `json:"params"`
	Model      fl.Vector `json:"model"`
	Node       fl.NodeID `json:"exported_by"`
	Digest     string    `json:"sealed_digest"` // SHA-256 of the sealed model, as the round record names it
	Layout     string    `json:"layout"`
	// Strategy is the manifest's server optimizer, and OptimizerState its
	// state sealed with the model (its MarshalBinary output; not written
	// to JSON).
	Strategy       string `json:"strategy"`
	OptimizerState []byte `json:"-"`
}

// OpenModel opens a model of round r sealed with the group key (the
// NodeState.GroupKey of package round) under session.
func OpenModel(groupKey, session []byte, r fl.Round, sealed []byte) (fl.Vector, error) {
	v, err := round.OpenModel(keyring.Box{}, groupKey, session, r, sealed)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	return v, nil
}

// Export opens the newest model in a node's state directory with the group
// key from its (sealed) state (or, right after a re-key, the model key of
// the previous epoch it keeps). atRest is the key the node's store was sealed
// with (nil: store.LoadOrCreateKey on the kit directory kitDir).
func Export(ctx context.Context, kit *pki.Kit, kitDir, stateDir string, atRest store.AtRest) (*Exported, error) {
	if atRest == nil {
		k, err := store.LoadOrCreateKey(kitDir)
		if err != nil {
			return nil, err
		}
		atRest = k
	}
	sess, err := kit.Manifest.Hash()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(stateDir, DBFile)); err != nil {
		return nil, fmt.Errorf("%w: no %s in %s (has the node run?)", ErrNoModel, DBFile, stateDir)
	}
	db, err := store.Open(filepath.Join(stateDir, DBFile))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	b, err := db.Node(sess[:], atRest).Load(ctx)
	if errors.Is(err, store.ErrNotFound) || err == nil && (b.State == nil || b.Model == nil) {
		return nil, fmt.Errorf("%w in %s (has the node joined a session?)", ErrNoModel, stateDir)
	}
	if err != nil {
		return nil, err
	}
	st, keys, err := engineState(b)
	if err != nil {
		return nil, err
	}
	if len(keys.GroupKey) == 0 {
		return nil, fmt.Errorf("%w: the node holds no group key", ErrNoModel)
	}
	// The stored model is sealed under the group key or, right after a
	// re-key (before the node gets it re-sealed in the next Train), under
	// the previous one, which the state still keeps.
	v, opt, err := st.OpenModel(keys, keyring.Box{}, b.Model.Round, b.Model.Sealed)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	man := kit.Manifest
	if man.Training.Scaffold() {
		// The sealed vector joins the model and the server control.
		if v, _, err = scaffold.Split(v); err != nil {
			return nil, fmt.Errorf("node: the SCAFFOLD model of round %d: %w", b.Model.Round, err)
		}
	}
	layout := "package model's flat layout: per layer, the weight matrix (outputs × inputs, row-major), then the biases"
	if man.Model.External() {
		layout = "the external trainer's layout " + man.Model.Layout + " (cloister trainer describe): its tensors in order, each row-major"
	}
	return &Exported{
		Federation: man.Federation, Session: fmt.Sprintf("%x", sess[:]), Round: b.Model.Round,
		Kind: man.Model.Kind, Hidden: man.Model.Hidden, Params: len(v), Model: v, Node: fl.NodeID(kit.Config.Name),
		Digest:   fmt.Sprintf("%x", round.DigestOf(b.Model.Sealed)),
		Layout:   layout,
		Strategy: man.Training.Strategy, OptimizerState: opt,
	}, nil
}
