package node

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/round"
)

// commitEntries records the commits whose round record this node verified
// (every node does, so that every log of the session agrees on each
// committed round), and the privacy they spent.
func (n *Node) commitEntries(cs []round.Commit) []auditEntry {
	var out []auditEntry
	for _, c := range cs {
		r := c.Record.Round
		n.log.Info("round committed", "round", r, "leader", c.Leader, "included", len(c.Record.Included),
			"this_node_included", slices.Contains(c.Record.Included, n.self))
		out = append(out, auditEntry{audit.Committed, audit.Data{Round: r,
			Digest: audit.Digest(c.Record.Digest(n.session)), Leader: c.Leader, Session: n.sessionName()}})
		out = append(out, n.budget.spend(r)...)
	}
	return out
}

type auditEntry struct {
	kind audit.Kind
	data audit.Data
}

func (n *Node) appendAudit(e auditEntry) error {
	if err := audit.ValidateData(e.kind, e.data); err != nil {
		// A mapping bug, not a storage failure: say so, keep going.
		n.log.Error("cannot record an audit event", "kind", e.kind, "err", err)
		return nil
	}
	_, err := n.alog.Append(e.kind, e.data)
	if e.kind == audit.Committed && errors.Is(err, audit.ErrDuplicateCommit) {
		if c, ok := n.alog.State().Commits[e.data.Round]; ok && c.Model == e.data.Digest {
			return nil // the same commit again (a restarted node hears it twice)
		}
	}
	if err != nil {
		return fmt.Errorf("node: audit log: %w", err)
	}
	return nil
}

// auditEntries maps the engine's node events to audit records. Events
// without a matching record kind (restarts, done) are only logged.
func (n *Node) auditEntries(evs []round.Event) []auditEntry {
	var out []auditEntry
	for _, e := range evs {
		switch e.Kind {
		case round.EventRejected:
			out = append(out, auditEntry{audit.NodeRefused, audit.Data{Reason: audit.Reason("rejected from " + string(e.Node) + ": " + e.Detail)}})
		case round.EventPledged:
			// The step that protected the update (Party.Protect) and
			// pledged it: its time is the encryption's, mostly.
			n.stats.Protected.Add(1)
			n.stats.ProtectNanos.Add(uint64(n.stepSecs * 1e9))
			n.log.Info("protected", "round", e.Round, "protect_s", n.stepSecs, "mode", n.scheme.Name())
		case round.EventUploaded:
			n.log.Info("uploaded", "round", e.Round)
			out = append(out, auditEntry{audit.UpdateAccepted, audit.Data{Round: e.Round, Node: e.Node, Digest: audit.Digest(e.Digest)}})
		case round.EventRevealed:
			n.stats.Revealed.Add(1)
			n.stats.RevealNanos.Add(uint64(n.stepSecs * 1e9))
			n.log.Info("revealed", "round", e.Round, "reveal_s", n.stepSecs)
			out = append(out, auditEntry{audit.Revealed, audit.Data{Round: e.Round, Digest: audit.Digest(e.Digest)}})
		case round.EventPeerVerified:
			out = append(out, auditEntry{audit.AttestationOK, audit.Data{Node: e.Node, Format: n.peerFormat(e.Node), Digest: audit.Digest(e.Digest)}})
		case round.EventPeerFailed:
			out = append(out, auditEntry{audit.AttestationFailed, audit.Data{Node: e.Node, Reason: audit.Reason(e.Detail), Digest: audit.Digest(e.Digest)}})
		case round.EventKeyed:
			d := audit.Data{Epoch: e.Epoch, Digest: audit.Digest(e.Digest)}
			if d.Epoch == 0 {
				continue
			}
			out = append(out, auditEntry{audit.KeySetup, d})
		case round.EventPeerDistrusted:
			out = append(out, auditEntry{audit.AttestationFailed, audit.Data{Node: e.Node, Reason: audit.Reason(e.Detail)}})
		case round.EventRefused:
			out = append(out, auditEntry{audit.NodeRefused, audit.Data{Reason: audit.Reason("refused: " + e.Detail)}})
		case round.EventAmended:
			mh, _ := n.manifest().Hash() // adopted before the audit events are recorded
			out = append(out, auditEntry{audit.Amended, audit.Data{Manifest: mh, Members: e.Nodes, Reason: audit.Reason(e.Detail)}})
		case round.EventDone:
			if e.Detail != "" {
				n.log.Warn("leaving the session", "reason", e.Detail)
			}
		case round.EventCommitted:
			// The leader signed a round record. It is recorded as committed
			// when the coordinator broadcasts it (KindModel), like on every
			// other node: a leader that dies after signing did not commit.
			n.stats.Led.Add(1)
			n.stats.LeadNanos.Add(uint64(n.stepSecs * 1e9))
			n.log.Info("led the round: decrypted, applied, sealed and signed", "round", e.Round, "decrypt_s", n.stepSecs, "record", e.Digest)
		default:
			n.log.Debug("engine event", "event", e.String())
		}
	}
	return out
}
