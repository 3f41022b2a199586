package node

import (
	"context"
	"fmt"
	"slices"

	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/store"
)

// persist writes a Ready's state, keys and sealed model in one
// transaction (the store seals the secrets), then the SCAFFOLD control
// variates of its commits.
func (n *Node) persist(rd round.NodeReady) (store.NodeBatch, error) {
	var b store.NodeBatch
	if rd.State != nil {
		var err error
		if b.State, err = rd.State.MarshalBinary(); err != nil {
			return b, err
		}
		b.Epoch = rd.State.Epoch
	}
	if k := rd.Keys; k != nil {
		b.Keys = &store.Keys{Party: k.Party, GroupKey: k.GroupKey, Target: k.Target}
	}
	if m := rd.Model; m != nil {
		b.Model, b.Resealed = &store.Model{Round: m.Round, Sealed: m.Sealed}, m.Replaces
	}
	if b.State != nil || b.Keys != nil || b.Model != nil {
		if err := n.sn.Save(context.Background(), b); err != nil {
			return b, fmt.Errorf("node: persisting state: %w", err)
		}
	}
	for _, c := range rd.Commits {
		if n.tr.scaffold && n.tr.ctl.commit(c.Record.Round, slices.Contains(c.Record.Included, n.self)) {
			// SCAFFOLD: the round included this node's Δc; keep its cᵢ.
			if err := n.tr.ctl.save(n.cfg.StateDir, n.atRest, n.session); err != nil {
				n.log.Error("the control variate of the committed round is not stored; a restart would lose it", "round", c.Record.Round, "err", err)
			}
		}
	}
	return b, nil
}

// engineState is the engine state and keys the store holds.
func engineState(saved store.NodeBatch) (round.NodeState, round.NodeKeys, error) {
	var st round.NodeState
	if err := st.UnmarshalBinary(saved.State); err != nil {
		return st, round.NodeKeys{}, fmt.Errorf("node: stored engine state: %w", err)
	}
	var keys round.NodeKeys
	if k := saved.Keys; k != nil {
		keys = round.NodeKeys{Party: k.Party, GroupKey: k.GroupKey, Target: k.Target}
	}
	return st, keys, nil
}
