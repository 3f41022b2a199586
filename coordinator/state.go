package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/store"
)

func (c *Coordinator) open() error {
	ctx := context.Background()
	var err error
	if c.db, err = store.Open(filepath.Join(c.cfg.StateDir, DBFile)); err != nil {
		return err
	}
	if _, err := c.db.Session(ctx, c.session); errors.Is(err, store.ErrNotFound) {
		mh, _ := c.manifest().Hash()
		if err := c.db.CreateSession(ctx, store.Session{ID: c.session, Manifest: mh, Created: c.cfg.Now()}); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	c.sc = c.db.Coordinator(c.session)
	saved, err := c.sc.State(ctx)
	if err != nil {
		return err
	}
	var (
		st    round.CoordinatorState
		model *round.SealedModel
		key   *round.GroupKey
	)
	if saved != nil {
		// The terms in force first: the audit log checks cosignatures
		// with their members' keys.
		if st, model, key, err = c.engineState(ctx, saved); err != nil {
			return err
		}
		if err := c.restoreTerms(st); err != nil {
			return err
		}
	}
	if c.alog, err = audit.Open(filepath.Join(c.cfg.StateDir, AuditFile), c.cfg.Kit.AuditKey, c.name,
		audit.Options{Now: c.cfg.Now, Keys: memberKeys{c}, RepairTorn: true}); err != nil {
		return err
	}
	if st := c.alog.State(); st.Seq == 0 {
		mh, _ := c.manifest().Hash()
		if _, err := c.alog.Append(audit.SessionStarted, audit.Data{Session: c.sessionName(), Manifest: mh, Members: c.manifest().Nodes()}); err != nil {
			return err
		}
	} else if st.Session != c.sessionName() {
		return fmt.Errorf("coordinator: %s belongs to session %s, the manifest is session %s: use a new state directory", c.alog.Path(), st.Session, c.sessionName())
	}
	if c.budget != nil {
		c.budget.spent = c.alog.State().MicroEpsilon
	}

	keys := memberKeys{c}
	seed := c.cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	rc := round.CoordinatorConfig{Config: c.rcfg, Scheme: c.scheme, Verifier: keys, Rand: rand.New(rand.NewPCG(seed, 0x636f6f7264))}
	c.hist = newHistory(c)
	if saved != nil {
		if c.rc, err = round.RestartCoordinator(rc, st, model, key); err != nil {
			return err
		}
		if n := len(st.Leaders); n > 0 {
			c.leader = st.Leaders[n-1]
		}
		c.hist.resume(ctx, st)
		c.log.Info("resuming the session", "session", c.sessionName(), "phase", st.Phase, "round", st.Round, "commits", st.Commits)
	} else {
		if c.rc, err = round.NewCoordinator(rc); err != nil {
			return err
		}
		c.log.Info("new session", "session", c.sessionName(), "mode", c.scheme.Name(), "members", len(c.manifest().Members),
			"threshold", c.manifest().Threshold, "min_cohort", c.manifest().MinCohort, "rounds", c.rcfg.Rounds)
	}
	if err := c.budget.logPlan(c.log, c.rcfg.Rounds); err != nil {
		return err
	}
	c.setStatus()
	return nil
}

// engineState is the engine state, current model and group key the store
// holds.
func (c *Coordinator) engineState(ctx context.Context, saved []byte) (round.CoordinatorState, *round.SealedModel, *round.GroupKey, error) {
	var st round.CoordinatorState
	if err := st.UnmarshalBinary(saved); err != nil {
		return st, nil, nil, fmt.Errorf("coordinator: stored engine state: %w", err)
	}
	m, gk, err := c.sc.Current(ctx)
	if err != nil {
		return st, nil, nil, err
	}
	var model *round.SealedModel
	if m != nil {
		model = &round.SealedModel{Round: m.Round, Sealed: m.Sealed, Replaces: st.Resealed}
	}
	var key *round.GroupKey
	if gk != nil {
		key = new(round.GroupKey)
		if err := key.UnmarshalBinary(gk); err != nil {
			return st, nil, nil, fmt.Errorf("coordinator: stored group key: %w", err)
		}
	}
	return st, model, key, nil
}
