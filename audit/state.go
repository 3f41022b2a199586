package audit

import (
	"fmt"
	"maps"
	"math"

	"github.com/cloisterfl/cloister/fl"
)

// State is what a log says, folded record by record with [State.Apply]. It
// is a pure function of the records: replaying the same log always gives
// the same State.
type State struct {
	Actor    string // the log's writer, from its first record
	Seq      uint64 // the last record's Seq; 0 for an empty log
	Head     Digest // the last record's hash
	Session  string // from the session-started record
	Manifest Digest // from the session-started record

	Kinds   map[Kind]int                      // records per kind
	Commits map[fl.Round]Commit               // committed rounds
	Reveals map[fl.Round]map[fl.NodeID]Digest // round → revealer → aggregate digest
	// MicroEpsilon is the total privacy budget spent, in micro-ε.
	MicroEpsilon int64
}

// Commit is a committed round.
type Commit struct {
	Seq      uint64    // the committed record's Seq
	Model    Digest    // the committed model's digest
	Leader   fl.NodeID // the leader named in the record, if any
	Cosigner fl.NodeID // who cosigned it, if anyone
}

// Clone returns a deep copy of s.
func (s *State) Clone() State {
	c := *s
	c.Kinds = maps.Clone(s.Kinds)
	c.Commits = maps.Clone(s.Commits)
	c.Reveals = make(map[fl.Round]map[fl.NodeID]Digest, len(s.Reveals))
	for r, m := range s.Reveals {
		c.Reveals[r] = maps.Clone(m)
	}
	return c
}

// Records returns the number of records folded so far.
func (s *State) Records() uint64 { return s.Seq }

// Revealer returns who made a Revealed record: the Node it names, or its
// writer.
func (r *Record) Revealer() fl.NodeID {
	if r.Data.Node != "" {
		return r.Data.Node
	}
	return fl.NodeID(r.Actor)
}

// Apply folds r into s. It checks the chain (Seq follows, Prev is the
// current Head, one Actor per log), the record's form, and the protocol
// invariants: no round committed twice ([ErrDuplicateCommit]), no node
// revealing twice in a round ([ErrDuplicateReveal]), at most one session
// start, no overflow of the ε total, and an epsilon-spent record's
// total_micro_epsilon, if set, equal to the sum of the log's micro_epsilon
// ([ErrInvariant]). It does not verify signatures: that takes keys, see
// [Verify].
//
// On error s is unchanged.
func (s *State) Apply(r Record) error {
	if err := s.check(&r); err != nil {
		return err
	}
	h, err := r.Hash()
	if err != nil {
		return err
	}
	s.apply(&r, h)
	return nil
}

func (s *State) check(r *Record) error {
	if r.Seq != s.Seq+1 {
		if r.Seq <= s.Seq {
			return fmt.Errorf("%w: seq %d after seq %d: record repeated or out of order", ErrBrokenChain, r.Seq, s.Seq)
		}
		return fmt.Errorf("%w: seq %d after seq %d: record %d missing or out of order", ErrBrokenChain, r.Seq, s.Seq, s.Seq+1)
	}
	if r.Prev != s.Head {
		return fmt.Errorf("%w: seq %d has prev %.16s…, but seq %d hashes to %.16s…", ErrBrokenChain, r.Seq, r.Prev, s.Seq, s.Head)
	}
	if s.Seq > 0 && r.Actor != s.Actor {
		return fmt.Errorf("%w: seq %d written by %q in %q's log", ErrBrokenChain, r.Seq, r.Actor, s.Actor)
	}
	if err := r.validate(); err != nil {
		return err
	}
	switch r.Kind {
	case SessionStarted:
		if s.Session != "" {
			return fmt.Errorf("%w: second session start (session %s, already %s)", ErrInvariant, r.Data.Session, s.Session)
		}
	case Committed:
		if c, dup := s.Commits[r.Data.Round]; dup {
			return fmt.Errorf("%w: round %d, already committed at seq %d (model %.16s…)", ErrDuplicateCommit, r.Data.Round, c.Seq, c.Model)
		}
	case Revealed:
		if d, dup := s.Reveals[r.Data.Round][r.Revealer()]; dup {
			return fmt.Errorf("%w: %s revealed round %d again (aggregate %.16s…, earlier %.16s…)", ErrDuplicateReveal, r.Revealer(), r.Data.Round, r.Data.Digest, d)
		}
	case EpsilonSpent:
		if s.MicroEpsilon > math.MaxInt64-r.Data.MicroEpsilon {
			return fmt.Errorf("%w: ε total overflows", ErrInvariant)
		}
		if t := r.Data.TotalMicroEpsilon; t != 0 && t != s.MicroEpsilon+r.Data.MicroEpsilon {
			return fmt.Errorf("%w: seq %d says %d micro-ε in total, but the log's records add up to %d", ErrInvariant, r.Seq, t, s.MicroEpsilon+r.Data.MicroEpsilon)
		}
	}
	return nil
}

func (s *State) apply(r *Record, h Digest) {
	if s.Kinds == nil {
		s.Kinds = make(map[Kind]int)
		s.Commits = make(map[fl.Round]Commit)
		s.Reveals = make(map[fl.Round]map[fl.NodeID]Digest)
	}
	s.Actor = r.Actor
	s.Seq = r.Seq
	s.Head = h
	s.Kinds[r.Kind]++
	switch r.Kind {
	case SessionStarted:
		s.Session, s.Manifest = r.Data.Session, r.Data.Manifest
	case Committed:
		c := Commit{Seq: r.Seq, Model: r.Data.Digest, Leader: r.Data.Leader}
		if r.Cosign != nil {
			c.Cosigner = r.Cosign.Signer
		}
		s.Commits[r.Data.Round] = c
	case Revealed:
		m := s.Reveals[r.Data.Round]
		if m == nil {
			m = make(map[fl.NodeID]Digest)
			s.Reveals[r.Data.Round] = m
		}
		m[r.Revealer()] = r.Data.Digest
	case EpsilonSpent:
		s.MicroEpsilon += r.Data.MicroEpsilon
	}
}

// Replay folds records, in order, into a new State.
func Replay(records []Record) (State, error) {
	var s State
	for _, r := range records {
		if err := s.Apply(r); err != nil {
			return s, err
		}
	}
	return s, nil
}
