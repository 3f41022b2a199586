package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/store"
)

func (c *Coordinator) open() error {
	ctx := context.Background()
	if err := c.openStore(ctx); err != nil {
		return err
	}
	// The audit log first: its lock makes this process the only one on the
	// state directory, which names the lead's holder (lease.go).
	path := filepath.Join(c.cfg.StateDir, AuditFile)
	_, statErr := os.Stat(path)
	var err error
	if c.alog, err = audit.Open(path, c.cfg.Kit.AuditKey, c.name,
		audit.Options{Now: c.cfg.Now, Keys: memberKeys{c}, RepairTorn: true}); err != nil {
		return err
	}
	logState := c.alog.State()
	if logState.Seq > 0 && logState.Session != c.sessionName() {
		return fmt.Errorf("coordinator: %s belongs to session %s, the manifest is session %s: use a new state directory", c.alog.Path(), logState.Session, c.sessionName())
	}
	if err := c.takeLead(ctx); err != nil {
		if errors.Is(statErr, fs.ErrNotExist) { // leave no empty log behind
			c.alog.Close()
			c.alog = nil
			os.Remove(path)
		}
		return err
	}
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
		// The terms in force, which the kit's manifest may not be.
		if st, model, key, err = c.engineState(ctx, saved); err != nil {
			return err
		}
		if err := c.restoreTerms(st); err != nil {
			return err
		}
	}
	if logState.Seq == 0 {
		mh, _ := c.manifest().Hash()
		if _, err := c.alog.Append(audit.SessionStarted, audit.Data{Session: c.sessionName(), Manifest: mh, Members: c.manifest().Nodes()}); err != nil {
			return err
		}
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
	if agg := c.manifest().Aggregator; agg != nil {
		rc.Aggregator = fl.NodeID(agg.Name)
	}
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

// openStore opens the coordinator's store and creates its session if it
// is new. A store elsewhere than the state directory is opened first, so
// that one that cannot be reached leaves no state directory behind.
func (c *Coordinator) openStore(ctx context.Context) error {
	loc := c.cfg.Store
	mkdir := func() error {
		if err := os.MkdirAll(c.cfg.StateDir, 0o700); err != nil {
			return fmt.Errorf("coordinator: state directory: %w", err)
		}
		return nil
	}
	if loc == "" {
		if err := mkdir(); err != nil {
			return err
		}
		loc = filepath.Join(c.cfg.StateDir, DBFile)
	}
	var err error
	if c.db, err = store.Open(loc); err != nil {
		return err
	}
	if err := mkdir(); err != nil {
		return err
	}
	if _, err := c.db.Session(ctx, c.session); errors.Is(err, store.ErrNotFound) {
		mh, _ := c.manifest().Hash()
		err := c.db.CreateSession(ctx, store.Session{ID: c.session, Manifest: mh, Created: c.cfg.Now()})
		if err != nil && !errors.Is(err, store.ErrExists) { // ErrExists: another coordinator made it first
			return err
		}
	} else if err != nil {
		return err
	}
	c.log.Info("store", "store", c.db.String(), "schema", store.SchemaVersion)
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
