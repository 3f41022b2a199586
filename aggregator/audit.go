package aggregator

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/round"
)

// AuditFile is the aggregator's audit log in its state directory
// (Config.StateDir).
const AuditFile = "audit.log"

// errAudit marks a failure to write the audit log: the aggregator stops
// rather than answer without it.
var errAudit = errors.New("aggregator: cannot write the audit log")

// openAudit opens the aggregator's audit log in Config.StateDir, starting
// it with the session, or resumes it if it belongs to this session. No
// state directory, no log: the events then go to the process log only.
func (a *Aggregator) openAudit() error {
	if a.cfg.StateDir == "" {
		return nil
	}
	session := hex.EncodeToString(a.session)
	l, err := audit.Open(filepath.Join(a.cfg.StateDir, AuditFile), a.cfg.Kit.AuditKey, string(a.self),
		audit.Options{Keys: selfKey{string(a.self): a.cfg.Kit.AuditKey.Public().(ed25519.PublicKey)}, Now: a.cfg.Now, RepairTorn: true})
	if err != nil {
		return fmt.Errorf("aggregator: %w", err)
	}
	m := a.cfg.Kit.Manifest
	if st := l.State(); st.Seq == 0 {
		mh, err := m.Hash()
		if err == nil {
			_, err = l.Append(audit.SessionStarted, audit.Data{Session: session, Manifest: mh, Members: m.Nodes()})
		}
		if err != nil {
			l.Close()
			return fmt.Errorf("aggregator: %w", err)
		}
	} else if st.Session != session {
		l.Close()
		return fmt.Errorf("aggregator: %s belongs to session %s, the manifest is session %s: use a new state directory", l.Path(), st.Session, session)
	}
	a.alog = l
	return nil
}

// selfKey resolves the aggregator's own audit key: the only writer of its
// log, which holds no cosignatures.
type selfKey map[string]ed25519.PublicKey

func (k selfKey) PublicKey(name string) (ed25519.PublicKey, error) {
	if key, ok := k[name]; ok {
		return key, nil
	}
	return nil, fmt.Errorf("%w: %q does not write the aggregator's log", audit.ErrUnknownSigner, name)
}

// record appends what an engine event means to the audit log: a key
// setup it took, the round it opened (the digest of the sealed result),
// a message it rejected or a request it refused. The log is on disk
// before the messages that follow from the event leave.
func (a *Aggregator) record(e round.Event) error {
	if a.alog == nil {
		return nil
	}
	var (
		kind audit.Kind
		data audit.Data
	)
	switch e.Kind {
	case round.EventKeyed:
		if e.Epoch == 0 {
			return nil
		}
		kind, data = audit.KeySetup, audit.Data{Epoch: e.Epoch, Members: e.Nodes, Digest: audit.Digest(e.Digest)}
	case round.EventOpened:
		kind, data = audit.Revealed, audit.Data{Round: e.Round, Digest: audit.Digest(e.Digest)}
	case round.EventRefused:
		kind, data = audit.NodeRefused, audit.Data{Reason: audit.Reason("refused: " + e.Detail)}
	case round.EventRejected:
		kind, data = audit.NodeRefused, audit.Data{Node: e.Node, Reason: audit.Reason("rejected: " + e.Detail)}
	default:
		return nil
	}
	if _, err := a.alog.Append(kind, data); err != nil {
		return fmt.Errorf("%w: %s: %w", errAudit, e.Kind, err)
	}
	return nil
}
