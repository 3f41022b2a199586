package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/store"
)

// The formats below are package round's (round/codec.go): the group key
// round keeps in NodeState.GroupKey, the associated data of a sealed model
// and the model payload. round does not export a way to open a sealed model
// outside its engine, so this file restates them for `cloister model
// export`; TestExportMatchesEvaluated checks that they still agree.
const (
	roundLabelModelAD  = "cloister/round/v1/model"
	roundLabelModel    = "cloister/round/v1/model-payload"
	roundLabelGroupKey = "cloister/round/v1/group-key"
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
}

// OpenModel opens a model of round r sealed with the group key (the
// NodeState.GroupKey of package round) under session.
func OpenModel(groupKey, session []byte, r fl.Round, sealed []byte) (fl.Vector, error) {
	g := rbuf{b: groupKey}
	label, _, key := g.str(), g.bytes(), g.bytes()
	if err := g.end(); err != nil || label != roundLabelGroupKey {
		return nil, fmt.Errorf("node: the stored group key does not decode (%v)", err)
	}
	var ad wbuf
	ad.str(roundLabelModelAD)
	ad.bytes(session)
	ad.u64(uint64(r))
	pt, err := GCMBox{}.Open(key, sealed, ad.b)
	if err != nil {
		return nil, fmt.Errorf("node: opening the model of round %d: %w", r, err)
	}
	p := rbuf{b: pt}
	if p.str() != roundLabelModel && p.err == nil {
		return nil, fmt.Errorf("node: the sealed model of round %d is not a model payload", r)
	}
	n := p.u64()
	if p.err == nil && n*8 > uint64(len(p.b)) {
		return nil, fmt.Errorf("node: model of %d values in %d bytes", n, len(p.b))
	}
	v := make(fl.Vector, 0, n)
	for range n {
		v = append(v, math.Float64frombits(p.u64()))
	}
	p.bytes() // optimizer state
	if err := p.end(); err != nil {
		return nil, fmt.Errorf("node: model payload of round %d: %v", r, err)
	}
	return v, nil
}

// Export opens the newest model in a node's state directory with the group
// key from its (sealed) state. atRest is the key the node's store was sealed
// with (nil: store.LoadOrCreateKey on the kit directory kitDir).
func Export(ctx context.Context, kit *pki.Kit, kitDir, stateDir string, atRest store.Sealer) (*Exported, error) {
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
	st, err := loadState(b)
	if err != nil {
		return nil, err
	}
	if st.GroupKey == nil {
		return nil, fmt.Errorf("%w: the node holds no group key", ErrNoModel)
	}
	v, err := OpenModel(st.GroupKey, sess[:], b.Model.Round, b.Model.Sealed)
	if err != nil {
		return nil, err
	}
	man := kit.Manifest
	return &Exported{
		Federation: man.Federation, Session: fmt.Sprintf("%x", sess[:]), Round: b.Model.Round,
		Kind: man.Model.Kind, Hidden: man.Model.Hidden, Params: len(v), Model: v, Node: fl.NodeID(kit.Config.Name),
		Digest: fmt.Sprintf("%x", round.DigestOf(b.Model.Sealed)),
		Layout: "package model's flat layout: per layer, the weight matrix (outputs × inputs, row-major), then the biases",
	}, nil
}
