package round

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// AggregatorScheme is the aggregator's side of mode tee: package
// protect/tee's Scheme with the aggregator's identity.
type AggregatorScheme interface {
	// NewAggregator returns the helper that opens the rounds of key
	// epoch group, from the setup the coordinator broadcast.
	NewAggregator(group protect.Group, setup []byte) (protect.Helper, error)
}

// maxReason bounds the reason of the aggregator's refusals, as the
// coordinator bounds a refusal's.
const maxReason = 200

// AggregatorConfig configures an [Aggregator].
type AggregatorConfig struct {
	// Session and Threshold are the federation's (Config).
	Session   []byte
	Threshold int
	// Coordinator is the coordinator's authenticated identity: Step
	// accepts messages from it only.
	Coordinator fl.NodeID
	// Scheme opens the rounds.
	Scheme AggregatorScheme
}

// Aggregator is the engine of mode tee's aggregator process, a pure state
// machine like [Coordinator] and [Node]: the coordinator (with
// CoordinatorConfig.Aggregator set) sends it each key epoch's setup
// (KindSetup) and each round's reveal request with the t signed shares
// (KindRevealRequest, Payloads); it opens the round with the scheme
// (which checks the shares, opens the sealed updates, applies the rule
// and seals the result to the target) and answers KindShare (Payload: the
// sealed result) or KindRefuse (Reason: why it cannot open, a setup it
// refused included, each audited as EventRefused). It answers each round once,
// never a round older than one it answered, and keeps only the newest
// epoch's helper: no plaintext outlives a Step.
type Aggregator struct {
	cfg      AggregatorConfig
	epoch    uint64
	helper   protect.Helper // of epoch; nil before the first setup
	answered fl.Round       // the last round answered or refused
	// refused is why the rounds of epoch refusedEpoch are refused: its
	// setup was refused, or Rotate dropped its helper.
	refused      string
	refusedEpoch uint64
	audit        []Event
	messages     []Message
	done         bool
}

// Done reports whether the coordinator said the session is over.
func (a *Aggregator) Done() bool { return a.done }

// NewAggregator returns an aggregator that has no setup yet.
func NewAggregator(cfg AggregatorConfig) (*Aggregator, error) {
	switch {
	case len(cfg.Session) == 0 || len(cfg.Session) > 64:
		return nil, fmt.Errorf("round: session must have 1 to 64 bytes, has %d", len(cfg.Session))
	case cfg.Threshold < 1:
		return nil, fmt.Errorf("round: threshold %d", cfg.Threshold)
	case cfg.Coordinator == "":
		return nil, errors.New("round: aggregator without a coordinator identity")
	case cfg.Scheme == nil:
		return nil, errors.New("round: aggregator without a scheme")
	}
	return &Aggregator{cfg: cfg}, nil
}

// AggregatorReady is an aggregator's pending output: the audit events, to
// be durable before the messages are sent.
type AggregatorReady struct {
	Audit    []Event
	Messages []Message
}

// Ready returns the pending output; Advance drops it.
func (a *Aggregator) Ready() AggregatorReady {
	return AggregatorReady{Audit: slices.Clone(a.audit), Messages: slices.Clone(a.messages)}
}

// HasReady reports whether Ready has something.
func (a *Aggregator) HasReady() bool { return len(a.audit) > 0 || len(a.messages) > 0 }

// Advance acknowledges the output of the last Ready.
func (a *Aggregator) Advance() { a.audit, a.messages = nil, nil }

// Keyed reports whether the aggregator holds a key epoch's helper: it
// took a setup, and neither the session's end nor Rotate dropped it since.
// The daemon rotates at once when it does not (nothing sealed to the
// current key can be opened then).
func (a *Aggregator) Keyed() bool { return a.helper != nil }

// Rotate replaces the scheme, the aggregator's identity, with scheme (the
// daemon's new process keys, before it says Hello with their evidence). It
// drops the current epoch's helper and with it the previous identity: a
// round of that epoch is refused from then on (the members seal to the
// previous key until the coordinator, which has the new evidence, re-keys
// at its next round boundary), and the next setup must name the new key.
// What the aggregator answered stays: it still takes no setup of an epoch
// and answers no round older than one it took before.
func (a *Aggregator) Rotate(scheme AggregatorScheme) error {
	if scheme == nil {
		return errors.New("round: aggregator rotated to no scheme")
	}
	a.cfg.Scheme = scheme
	if a.helper != nil {
		a.helper = nil
		a.refused, a.refusedEpoch = fmt.Sprintf("its keys were rotated after its setup of epoch %d", a.epoch), a.epoch
	}
	return nil
}

// Hello says Hello to the coordinator with evidence: the aggregator's
// Hello evidence (its process keys, signed with its audit key, and TEE
// evidence bound to this connection), which the coordinator relays to
// every member. The daemon calls it on every new connection, and after
// Rotate on the live one.
func (a *Aggregator) Hello(evidence []byte) {
	a.send(Message{Kind: KindHello, Evidence: bytes.Clone(evidence), Epoch: a.epoch})
}

// Step processes a message from the authenticated sender from. A
// rejected message returns a *StepError and is reported as an
// EventRejected audit event.
func (a *Aggregator) Step(from fl.NodeID, m Message) error {
	if err := a.step(from, m); err != nil {
		a.audit = append(a.audit, Event{Kind: EventRejected, Epoch: m.Epoch, Round: m.Round, Node: from, Detail: fmt.Sprintf("%s: %v", m.Kind, err)})
		return &StepError{From: from, Kind: m.Kind, Epoch: m.Epoch, Round: m.Round, Err: err}
	}
	return nil
}

func (a *Aggregator) step(from fl.NodeID, m Message) error {
	switch {
	case from != a.cfg.Coordinator:
		return fmt.Errorf("%w: the aggregator takes messages from the coordinator only, not %s", ErrForged, from)
	case !bytes.Equal(m.Session, a.cfg.Session):
		return fmt.Errorf("%w: %x", ErrWrongSession, m.Session)
	}
	switch m.Kind {
	case KindSetup:
		return a.setup(m)
	case KindRevealRequest:
		return a.open(m)
	case KindDone:
		a.done, a.helper = true, nil
		a.audit = append(a.audit, Event{Kind: EventDone, Round: m.Round})
		return nil
	}
	return fmt.Errorf("%w: the coordinator does not send the aggregator %s", ErrForged, m.Kind)
}

// setup takes a key epoch's setup.
func (a *Aggregator) setup(m Message) error {
	switch {
	case m.Epoch <= a.epoch:
		return fmt.Errorf("%w: setup of epoch %d, this aggregator has epoch %d", ErrReplay, m.Epoch, a.epoch)
	case len(m.Payload) == 0:
		return fmt.Errorf("%w: setup: %v", ErrMalformed, errNoPayload)
	case !slices.IsSorted(m.Participants) || len(m.Participants) < a.cfg.Threshold:
		return fmt.Errorf("%w: participants %v: want at least %d, sorted", ErrMalformed, m.Participants, a.cfg.Threshold)
	}
	group := protect.Group{ID: protectSessionID(a.cfg.Session, m.Epoch), Members: slices.Clone(m.Participants), Threshold: a.cfg.Threshold}
	h, err := a.cfg.Scheme.NewAggregator(group, m.Payload)
	if err != nil {
		a.refused, a.refusedEpoch = fmt.Sprintf("its setup of epoch %d was refused: %v", m.Epoch, err), m.Epoch
		a.audit = append(a.audit, Event{Kind: EventRefused, Epoch: m.Epoch, Digest: DigestOf(m.Payload), Detail: a.refused})
		return nil
	}
	a.epoch, a.helper, a.refused = m.Epoch, h, ""
	a.audit = append(a.audit, Event{Kind: EventKeyed, Epoch: m.Epoch, Nodes: group.Members, Digest: DigestOf(m.Payload)})
	return nil
}

// open answers a round's reveal request, once: with the sealed result, or
// with a refusal that says why.
func (a *Aggregator) open(m Message) error {
	if m.Round <= a.answered {
		return fmt.Errorf("%w: round %d, this aggregator answered round %d", ErrReplay, m.Round, a.answered)
	}
	a.answered = m.Round
	if a.helper == nil || m.Epoch != a.epoch {
		reason := fmt.Sprintf("no setup of epoch %d (this aggregator has epoch %d's)", m.Epoch, a.epoch)
		if a.refused != "" && m.Epoch == a.refusedEpoch {
			reason = a.refused
		}
		if len(reason) > maxReason {
			reason = reason[:maxReason]
		}
		a.audit = append(a.audit, Event{Kind: EventRefused, Epoch: m.Epoch, Round: m.Round, Detail: reason})
		a.send(Message{Kind: KindRefuse, Epoch: m.Epoch, Round: m.Round, Reason: reason})
		return nil
	}
	req := protect.RevealRequest{Round: m.Round, Aggregate: m.Aggregate, Revealers: m.Revealers, Target: m.Target}
	res, err := a.helper.Open(req, m.Payloads)
	if err != nil {
		reason := fmt.Sprintf("opening round %d: %v", m.Round, err)
		if len(reason) > maxReason {
			reason = reason[:maxReason]
		}
		a.audit = append(a.audit, Event{Kind: EventRefused, Epoch: m.Epoch, Round: m.Round, Digest: DigestOf(m.Aggregate), Detail: reason})
		a.send(Message{Kind: KindRefuse, Epoch: m.Epoch, Round: m.Round, Reason: reason})
		return nil
	}
	a.audit = append(a.audit, Event{Kind: EventOpened, Epoch: m.Epoch, Round: m.Round, Nodes: slices.Clone(m.Revealers), Digest: DigestOf(res)})
	a.send(Message{Kind: KindShare, Epoch: m.Epoch, Round: m.Round, Payload: res})
	return nil
}

func (a *Aggregator) send(m Message) {
	m.To, m.Session = a.cfg.Coordinator, a.cfg.Session
	a.messages = append(a.messages, m)
}
