package node

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"

	"github.com/cloisterfl/cloister/attack"
	"github.com/cloisterfl/cloister/client"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
)

// ErrAttackNotAllowed: an attack switch (Config.InsecureAttack) under a
// manifest that does not allow attacks (insecure_attacks).
var ErrAttackNotAllowed = errors.New("node: the manifest does not allow attacks")

// estimateShards is how many disjoint shards of its own data an attacker
// trains on, every round, to estimate the honest updates that the
// omniscient attacks (alie, ipm) read: it cannot see the other members'
// updates, so it uses its own honest work as their sample, as Baruch et
// al.'s colluding workers do.
const estimateShards = 4

// byzantine is what a node started with an attack switch does to its
// update: package attack's Poison on its training data (once), and Forge
// on each update, before the clip (which attested code would apply after
// any attack). It needs the built-in models (b), whose data and training
// it uses; an external trainer cannot be made an attacker this way.
type byzantine struct {
	attack   attack.Attack
	estimate bool // alie, ipm: forge from estimated honest updates
	seed     uint64
	b        *builtin
}

// newByzantine parses spec (package attack's spec) for the manifest's
// members, of which colluders attack (0 means 1; it sets ALIE's default
// z), and poisons the trainer's data. It refuses unless the manifest
// allows attacks.
func newByzantine(man *federation.Manifest, t *trainer, spec string, colluders int) (*byzantine, error) {
	bt, ok := t.local.(*builtin)
	if !ok {
		return nil, fmt.Errorf("node: --insecure-attack %q needs one of the built-in models, not an external trainer", spec)
	}
	if !man.InsecureAttacks {
		return nil, fmt.Errorf("%w: --insecure-attack %q needs a manifest written by cloister init --insecure-allow-attacks", ErrAttackNotAllowed, spec)
	}
	n := len(man.Members)
	if colluders == 0 {
		colluders = 1
	}
	if colluders < 1 || colluders > n {
		return nil, fmt.Errorf("node: %d colluding attackers outside 1..%d (the members)", colluders, n)
	}
	a, err := attack.Parse(spec, n, colluders)
	if err != nil {
		return nil, fmt.Errorf("node: --insecure-attack: %w", err)
	}
	b := &byzantine{attack: a, estimate: a.Name() == "alie" || a.Name() == "ipm", seed: bt.seed ^ bt.salt ^ 0x62797a616e74696e, b: bt}
	poisoned, err := a.Poison(bt.trainSet, mrand.New(mrand.NewPCG(b.seed, 0)))
	if err != nil {
		return nil, fmt.Errorf("node: --insecure-attack %s on the training data %s: %w", a, bt.trainSet.Name, err)
	}
	bt.trainSet = poisoned
	return b, nil
}

// forge replaces u.Delta, the update trained in round r from global, with
// the attack's.
func (z *byzantine) forge(r fl.Round, global fl.Vector, u *client.Update) error {
	b := z.b
	var ci fl.Vector
	if b.scaffold {
		ci = b.ctl.current()
	}
	rng := mrand.New(mrand.NewPCG(z.seed, uint64(r)))
	var honest []fl.Vector
	if z.estimate {
		perm := rng.Perm(b.trainSet.Len())
		k := min(estimateShards, len(perm))
		for i := range k {
			shard := b.trainSet.Subset(perm[i*len(perm)/k : (i+1)*len(perm)/k])
			h, err := b.client.Train(shard, global, ci, rng)
			if err != nil {
				return fmt.Errorf("node: attack %s: training on shard %d of %d: %w", z.attack, i+1, k, err)
			}
			honest = append(honest, h.Delta)
		}
	}
	out, err := z.attack.Forge([]fl.Vector{u.Delta}, honest, rng)
	if err != nil {
		return fmt.Errorf("node: attack %s: %w", z.attack, err)
	}
	u.Delta = out[0]
	return nil
}
