package coordinator

import (
	"errors"
	"time"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/store"
)

// batch is what a Ready persists: the engine's state and large pieces, the
// commits with their models, the round history and the metrics.
func (c *Coordinator) batch(rd round.CoordinatorReady, now time.Time) (store.CoordinatorBatch, error) {
	var b store.CoordinatorBatch
	if rd.State != nil {
		var err error
		if b.State, err = rd.State.MarshalBinary(); err != nil {
			return b, err
		}
		b.Epoch = rd.State.Epoch
	}
	if m := rd.Model; m != nil {
		b.Current = &store.Model{Round: m.Round, Sealed: m.Sealed}
	}
	if g := rd.GroupKey; g != nil {
		var err error
		if b.GroupKey, err = g.MarshalBinary(); err != nil {
			return b, err
		}
	}
	for _, cm := range rd.Commits {
		r := cm.Record.Round
		b.Models = append(b.Models, store.Model{Round: r, Sealed: cm.Model})
		b.Commits = append(b.Commits, store.Commit{Round: r, Epoch: cm.Record.Epoch, Leader: cm.Leader,
			Record: cm.Record.Signed(c.session), Signature: cm.Signature, Committed: now})
	}
	if err := c.budget.charge(rd.Audit); err != nil {
		return b, err
	}
	if c.budget != nil {
		c.met.epsilon.Set(dp.EpsilonFromMicro(c.budget.spent))
	}
	b.Rounds = c.hist.apply(rd, now)
	for _, e := range rd.Audit {
		if e.Kind == round.EventMetrics && e.Metrics != nil {
			b.Metrics = append(b.Metrics, store.Metric{Round: e.Round, Node: e.Node, Metrics: *e.Metrics})
		}
	}
	return b, nil
}

type auditEntry struct {
	kind audit.Kind
	data audit.Data
	// cosign is the round leader's cosignature of a committed record.
	cosign *audit.Cosignature
}

// auditEntries maps the engine's coordinator events to audit records.
// Events without a matching record kind (aggregated, reveal requested,
// opened, metrics, done, restarted) are logged only; the store keeps the
// included sets, aggregates and metrics. A committed record carries the
// cosignature of its leader from the Ready's Commits (round.CommitStatement
// is its statement).
func (c *Coordinator) auditEntries(evs []round.Event, commits []round.Commit) []auditEntry {
	var out []auditEntry
	add := func(k audit.Kind, d audit.Data) { out = append(out, auditEntry{kind: k, data: d}) }
	for _, e := range evs {
		d := audit.Digest(e.Digest)
		switch e.Kind {
		case round.EventRejected:
			if e.Node != "" && !c.recordRefusal(e.Node) {
				continue // counted in the member's rate-limit summary
			}
			add(audit.NodeRefused, audit.Data{Node: nodeOrEmpty(e.Node), Reason: audit.Reason(e.Detail), Digest: d})
		case round.EventAttested:
			add(audit.AttestationOK, audit.Data{Node: e.Node, Format: e.Detail, Digest: d})
		case round.EventAdmitted:
			add(audit.NodeAdmitted, audit.Data{Node: e.Node, Digest: d})
		case round.EventDown:
			add(audit.NodeDropped, audit.Data{Node: e.Node, Round: e.Round, Reason: audit.Reason(e.Detail)})
		case round.EventSetupStarted:
			add(audit.KeyRotated, audit.Data{Epoch: e.Epoch, Members: e.Nodes, Reason: audit.Reason("key setup started " + e.Detail)})
		case round.EventRelayed:
			for _, to := range e.Nodes {
				add(audit.PayloadRelayed, audit.Data{Node: e.Node, Recipient: to, Digest: d, Epoch: e.Epoch})
			}
		case round.EventSetupDone:
			members := e.Nodes
			if len(members) == 0 {
				members = c.manifest().Nodes()
			}
			add(audit.KeySetup, audit.Data{Epoch: e.Epoch, Members: members, Digest: d})
		case round.EventAmended:
			mh, _ := c.manifest().Hash() // adopted before the audit events are recorded
			add(audit.Amended, audit.Data{Manifest: mh, Members: e.Nodes, Round: e.Round, Reason: audit.Reason(e.Detail)})
		case round.EventExcluded:
			add(audit.NodeDropped, audit.Data{Node: e.Node, Round: e.Round, Reason: audit.Reason("excluded: " + e.Detail)})
		case round.EventReadmitted:
			// The daemon readmits a member only on valid evidence (admit).
			add(audit.NodeReadmitted, audit.Data{Node: e.Node, Round: e.Round, Reason: "valid evidence again; re-keyed in at the next round boundary"})
		case round.EventRoundStarted:
			c.leader = e.Node
			add(audit.RoundStarted, audit.Data{Round: e.Round, Members: e.Nodes, Leader: e.Node})
		case round.EventUploaded:
			add(audit.UpdateAccepted, audit.Data{Round: e.Round, Node: e.Node, Digest: d})
		case round.EventRevealed:
			add(audit.Revealed, audit.Data{Round: e.Round, Digest: d, Node: e.Node})
		case round.EventLeaderFailed:
			failed := c.leader
			c.leader = e.Node
			if failed != "" {
				add(audit.NodeDropped, audit.Data{Node: failed, Round: e.Round, Reason: audit.Reason("leader failed (" + e.Detail + "); next leader " + string(e.Node))})
			}
		case round.EventCommitted:
			ent := auditEntry{kind: audit.Committed, data: audit.Data{Round: e.Round, Digest: d, Leader: e.Node, Session: c.sessionName()}}
			for _, cm := range commits {
				if cm.Record.Round == e.Round && cm.Leader == e.Node && len(cm.Cosign) > 0 {
					ent.cosign = &audit.Cosignature{Signer: cm.Leader, Sig: cm.Cosign}
				}
			}
			out = append(out, ent)
			if ent, ok := c.budget.spentEntry(c.log, e); ok {
				out = append(out, ent)
			}
		case round.EventDone:
			if ent, ok := c.budget.exhaustedEntry(c.log, e.Round, c.rc.Status().Commits, c.rcfg.Rounds); ok {
				out = append(out, ent)
			}
		case round.EventAborted:
			add(audit.Aborted, audit.Data{Round: e.Round, Reason: audit.Reason(e.Detail)})
		}
	}
	return out
}

// appendAudit appends e, with its cosignature if it has one. The engine
// verified the leader's cosignature with the same audit keys, so the log
// refusing it is a bug: say so and record the commit without it, which
// `audit verify` then names.
func (c *Coordinator) appendAudit(e auditEntry) error {
	if e.cosign != nil {
		_, err := c.alog.AppendCosigned(e.kind, e.data, *e.cosign)
		if !errors.Is(err, audit.ErrBadSignature) && !errors.Is(err, audit.ErrUnknownSigner) && !errors.Is(err, audit.ErrMalformed) {
			return err
		}
		c.log.Error("the audit log refused the leader's cosignature; recording the commit without it", "round", e.data.Round,
			"leader", e.data.Leader, "err", err)
	}
	_, err := c.alog.Append(e.kind, e.data)
	return err
}

func nodeOrEmpty(id fl.NodeID) fl.NodeID {
	if pki.ValidateNodeID(id) != nil {
		return ""
	}
	return id
}
