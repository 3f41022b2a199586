package transport

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport/internal/pb"
)

// Conversion between round.Message and its wire form, pb.Message. Both
// directions validate: toPB refuses what the receiver would refuse, with
// an error that names the field, and fromPB trusts nothing.
//
// On the wire, nil and empty are the same: decoded byte slices, slices and
// maps are nil when empty.

// maxNodes bounds every list or map of NodeIDs in a message: no
// federation has more members (pki.MaxNodes).
const maxNodes = pki.MaxNodes

// maxDelta bounds the length of an update vector (as round bounds a
// decoded model).
const maxDelta = 1 << 28

// kinds maps round.Kind to the wire enum. The numbers on the wire are the
// pb.Kind values, fixed in federation.proto; round's constants may move.
var kinds = [...]struct {
	r round.Kind
	p pb.Kind
}{
	{round.KindHello, pb.Kind_KIND_HELLO},
	{round.KindWelcome, pb.Kind_KIND_WELCOME},
	{round.KindPeer, pb.Kind_KIND_PEER},
	{round.KindSetupStart, pb.Kind_KIND_SETUP_START},
	{round.KindAnnounce, pb.Kind_KIND_ANNOUNCE},
	{round.KindAnnouncements, pb.Kind_KIND_ANNOUNCEMENTS},
	{round.KindDeal, pb.Kind_KIND_DEAL},
	{round.KindSetup, pb.Kind_KIND_SETUP},
	{round.KindAccept, pb.Kind_KIND_ACCEPT},
	{round.KindKeyRequest, pb.Kind_KIND_KEY_REQUEST},
	{round.KindGroupKey, pb.Kind_KIND_GROUP_KEY},
	{round.KindKeyDelivery, pb.Kind_KIND_KEY_DELIVERY},
	{round.KindKeyAck, pb.Kind_KIND_KEY_ACK},
	{round.KindTrain, pb.Kind_KIND_TRAIN},
	{round.KindUpload, pb.Kind_KIND_UPLOAD},
	{round.KindRevealRequest, pb.Kind_KIND_REVEAL_REQUEST},
	{round.KindShare, pb.Kind_KIND_SHARE},
	{round.KindDecrypt, pb.Kind_KIND_DECRYPT},
	{round.KindCommit, pb.Kind_KIND_COMMIT},
	{round.KindModel, pb.Kind_KIND_MODEL},
	{round.KindMetrics, pb.Kind_KIND_METRICS},
	{round.KindRefuse, pb.Kind_KIND_REFUSE},
	{round.KindDone, pb.Kind_KIND_DONE},
	{round.KindTrained, pb.Kind_KIND_TRAINED},
	{round.KindEvaluated, pb.Kind_KIND_EVALUATED},
	{round.KindAmend, pb.Kind_KIND_AMEND},
	{round.KindPledge, pb.Kind_KIND_PLEDGE},
	{round.KindPledges, pb.Kind_KIND_PLEDGES},
	{round.KindRelay, pb.Kind_KIND_RELAY},
}

func kindToPB(k round.Kind) (pb.Kind, bool) {
	for _, e := range kinds {
		if e.r == k {
			return e.p, true
		}
	}
	return 0, false
}

func kindFromPB(k pb.Kind) (round.Kind, bool) {
	for _, e := range kinds {
		if e.p == k {
			return e.r, true
		}
	}
	return 0, false
}

// malformed wraps ErrMalformed with the field at fault.
func malformed(field string, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformed, field, fmt.Sprintf(format, args...))
}

func checkNode(field string, id string, optional bool) error {
	if id == "" && optional {
		return nil
	}
	if err := pki.ValidateNodeID(fl.NodeID(id)); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, field, err)
	}
	return nil
}

func checkCount(field string, n int) error {
	if n > maxNodes {
		return malformed(field, "%d entries, at most %d are allowed", n, maxNodes)
	}
	return nil
}

// marshalMessage validates m and returns its wire encoding.
func marshalMessage(m round.Message) ([]byte, error) {
	p, err := toPB(m)
	if err != nil {
		return nil, err
	}
	// Deterministic: the same message always has the same bytes (map keys
	// sorted), so its digest is reproducible.
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding %s: %v", ErrMalformed, m.Kind, err)
	}
	return b, nil
}

// unmarshalMessage decodes and validates a wire message.
func unmarshalMessage(b []byte) (round.Message, error) {
	var p pb.Message
	if err := proto.Unmarshal(b, &p); err != nil {
		return round.Message{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return fromPB(&p)
}

// toPB converts m to its wire form. It refuses what fromPB would refuse:
// a kind without a wire encoding, a NodeID that pki would not issue, more
// than maxNodes entries in a list or map, a negative example count or an
// overlong update. A Reason that is not valid UTF-8 is repaired (invalid
// bytes become U+FFFD): a refusal must always be sendable.
func toPB(m round.Message) (*pb.Message, error) {
	k, ok := kindToPB(m.Kind)
	if !ok {
		return nil, fmt.Errorf("%w: kind %s: %w", ErrMalformed, m.Kind, round.ErrUnknownKind)
	}
	if err := checkNode("to", string(m.To), true); err != nil {
		return nil, err
	}
	if err := checkNode("dealer", string(m.Dealer), true); err != nil {
		return nil, err
	}
	if err := checkNode("leader", string(m.Leader), true); err != nil {
		return nil, err
	}
	p := &pb.Message{
		Kind:      k,
		To:        string(m.To),
		Session:   m.Session,
		Epoch:     m.Epoch,
		Round:     uint64(m.Round),
		Evidence:  m.Evidence,
		Payload:   m.Payload,
		Dealer:    string(m.Dealer),
		Sealed:    m.Sealed,
		Target:    m.Target,
		Model:     m.Model,
		Base:      uint64(m.Base),
		Config:    m.Config,
		Leader:    string(m.Leader),
		Aggregate: m.Aggregate,
		Signature: m.Signature,
		Cosign:    m.Cosign,
		Serial:    m.Serial,
		Manifest:  m.Manifest,
		Reason:    strings.ToValidUTF8(m.Reason, "\uFFFD"),
	}
	var err error
	if p.Evidences, err = mapToPB("evidences", m.Evidences); err != nil {
		return nil, err
	}
	if p.Payloads, err = mapToPB("payloads", m.Payloads); err != nil {
		return nil, err
	}
	if p.Cohort, err = nodesToPB("cohort", m.Cohort); err != nil {
		return nil, err
	}
	if p.Revealers, err = nodesToPB("revealers", m.Revealers); err != nil {
		return nil, err
	}
	if p.Participants, err = nodesToPB("participants", m.Participants); err != nil {
		return nil, err
	}
	if p.Included, err = contributionsToPB("included", m.Included); err != nil {
		return nil, err
	}
	if p.Pledges, err = contributionsToPB("pledges", m.Pledges); err != nil {
		return nil, err
	}
	if r := m.Record; !recordZero(r) {
		inc, err := nodesToPB("record.included", r.Included)
		if err != nil {
			return nil, err
		}
		p.Record = &pb.Record{
			Epoch: r.Epoch, Round: uint64(r.Round), Base: uint64(r.Base), Included: inc,
			Aggregate: digestToPB(r.Aggregate), Model: digestToPB(r.Model),
		}
	}
	if u := m.Update; u.Node != "" || u.Round != 0 || len(u.Delta) != 0 || u.Weight != 0 {
		if err := checkNode("update.node", string(u.Node), true); err != nil {
			return nil, err
		}
		if len(u.Delta) > maxDelta {
			return nil, malformed("update.delta", "%d values, at most %d are allowed", len(u.Delta), maxDelta)
		}
		p.Update = &pb.Update{Node: string(u.Node), Round: uint64(u.Round), Delta: u.Delta, Weight: u.Weight}
	}
	if mt := m.Metrics; mt != (fl.Metrics{}) {
		if mt.Examples < 0 {
			return nil, malformed("metrics.examples", "negative count %d", mt.Examples)
		}
		p.Metrics = &pb.Metrics{Accuracy: mt.Accuracy, Loss: mt.Loss, Examples: int64(mt.Examples)}
	}
	return p, nil
}

// fromPB converts and validates a wire message.
func fromPB(p *pb.Message) (round.Message, error) {
	k, ok := kindFromPB(p.Kind)
	if !ok {
		return round.Message{}, fmt.Errorf("%w: kind %d: %w", ErrMalformed, int32(p.Kind), round.ErrUnknownKind)
	}
	if err := checkNode("to", p.To, true); err != nil {
		return round.Message{}, err
	}
	if err := checkNode("dealer", p.Dealer, true); err != nil {
		return round.Message{}, err
	}
	if err := checkNode("leader", p.Leader, true); err != nil {
		return round.Message{}, err
	}
	m := round.Message{
		Kind:      k,
		To:        fl.NodeID(p.To),
		Session:   bytesOf(p.Session),
		Epoch:     p.Epoch,
		Round:     fl.Round(p.Round),
		Evidence:  bytesOf(p.Evidence),
		Payload:   bytesOf(p.Payload),
		Dealer:    fl.NodeID(p.Dealer),
		Sealed:    bytesOf(p.Sealed),
		Target:    bytesOf(p.Target),
		Model:     bytesOf(p.Model),
		Base:      fl.Round(p.Base),
		Config:    bytesOf(p.Config),
		Leader:    fl.NodeID(p.Leader),
		Aggregate: bytesOf(p.Aggregate),
		Signature: bytesOf(p.Signature),
		Cosign:    bytesOf(p.Cosign),
		Serial:    p.Serial,
		Manifest:  bytesOf(p.Manifest),
		Reason:    p.Reason,
	}
	var err error
	if m.Evidences, err = mapFromPB("evidences", p.Evidences); err != nil {
		return round.Message{}, err
	}
	if m.Payloads, err = mapFromPB("payloads", p.Payloads); err != nil {
		return round.Message{}, err
	}
	if m.Cohort, err = nodesFromPB("cohort", p.Cohort); err != nil {
		return round.Message{}, err
	}
	if m.Revealers, err = nodesFromPB("revealers", p.Revealers); err != nil {
		return round.Message{}, err
	}
	if m.Participants, err = nodesFromPB("participants", p.Participants); err != nil {
		return round.Message{}, err
	}
	if m.Included, err = contributionsFromPB("included", p.Included); err != nil {
		return round.Message{}, err
	}
	if m.Pledges, err = contributionsFromPB("pledges", p.Pledges); err != nil {
		return round.Message{}, err
	}
	if r := p.Record; r != nil {
		inc, err := nodesFromPB("record.included", r.Included)
		if err != nil {
			return round.Message{}, err
		}
		agg, err := digestFromPB("record.aggregate", r.Aggregate)
		if err != nil {
			return round.Message{}, err
		}
		mod, err := digestFromPB("record.model", r.Model)
		if err != nil {
			return round.Message{}, err
		}
		m.Record = round.Record{Epoch: r.Epoch, Round: fl.Round(r.Round), Base: fl.Round(r.Base), Included: inc, Aggregate: agg, Model: mod}
	}
	if u := p.Update; u != nil {
		if err := checkNode("update.node", u.Node, true); err != nil {
			return round.Message{}, err
		}
		if len(u.Delta) > maxDelta {
			return round.Message{}, malformed("update.delta", "%d values, at most %d are allowed", len(u.Delta), maxDelta)
		}
		var delta fl.Vector
		if len(u.Delta) > 0 {
			delta = fl.Vector(u.Delta)
		}
		m.Update = fl.Update{Node: fl.NodeID(u.Node), Round: fl.Round(u.Round), Delta: delta, Weight: u.Weight}
	}
	if mt := p.Metrics; mt != nil {
		if mt.Examples < 0 {
			return round.Message{}, malformed("metrics.examples", "negative count %d", mt.Examples)
		}
		if mt.Examples > math.MaxInt {
			return round.Message{}, malformed("metrics.examples", "count %d overflows int", mt.Examples)
		}
		m.Metrics = fl.Metrics{Accuracy: mt.Accuracy, Loss: mt.Loss, Examples: int(mt.Examples)}
	}
	if !utf8.ValidString(m.Reason) { // proto.Unmarshal checks this; fromPB may be given a value built by hand
		return round.Message{}, malformed("reason", "not valid UTF-8")
	}
	return m, nil
}

func recordZero(r round.Record) bool {
	return r.Epoch == 0 && r.Round == 0 && r.Base == 0 && len(r.Included) == 0 &&
		r.Aggregate == (round.Digest{}) && r.Model == (round.Digest{})
}

func bytesOf(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func digestToPB(d round.Digest) []byte {
	if d == (round.Digest{}) {
		return nil
	}
	return d[:]
}

func digestFromPB(field string, b []byte) (round.Digest, error) {
	var d round.Digest
	switch len(b) {
	case 0:
	case len(d):
		copy(d[:], b)
	default:
		return d, malformed(field, "%d bytes, want %d (or none)", len(b), len(d))
	}
	return d, nil
}

func nodesToPB(field string, ns []fl.NodeID) ([]string, error) {
	if err := checkCount(field, len(ns)); err != nil {
		return nil, err
	}
	if len(ns) == 0 {
		return nil, nil
	}
	out := make([]string, len(ns))
	for i, n := range ns {
		if err := checkNode(fmt.Sprintf("%s[%d]", field, i), string(n), false); err != nil {
			return nil, err
		}
		out[i] = string(n)
	}
	return out, nil
}

func nodesFromPB(field string, ns []string) ([]fl.NodeID, error) {
	if err := checkCount(field, len(ns)); err != nil {
		return nil, err
	}
	if len(ns) == 0 {
		return nil, nil
	}
	out := make([]fl.NodeID, len(ns))
	for i, n := range ns {
		if err := checkNode(fmt.Sprintf("%s[%d]", field, i), n, false); err != nil {
			return nil, err
		}
		out[i] = fl.NodeID(n)
	}
	return out, nil
}

func mapToPB(field string, m map[fl.NodeID][]byte) (map[string][]byte, error) {
	if err := checkCount(field, len(m)); err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		if err := checkNode(field+" key", string(k), false); err != nil {
			return nil, err
		}
		out[string(k)] = v
	}
	return out, nil
}

func mapFromPB(field string, m map[string][]byte) (map[fl.NodeID][]byte, error) {
	if err := checkCount(field, len(m)); err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[fl.NodeID][]byte, len(m))
	for k, v := range m {
		if err := checkNode(field+" key", k, false); err != nil {
			return nil, err
		}
		out[fl.NodeID(k)] = bytesOf(v)
	}
	return out, nil
}

// contributionsToPB converts a list of contributions (included uploads or
// pledges), checking its length and node IDs.
func contributionsToPB(name string, cs []round.Contribution) ([]*pb.Contribution, error) {
	if err := checkCount(name, len(cs)); err != nil {
		return nil, err
	}
	var out []*pb.Contribution
	for i, c := range cs {
		if err := checkNode(fmt.Sprintf("%s[%d].node", name, i), string(c.Node), false); err != nil {
			return nil, err
		}
		out = append(out, &pb.Contribution{Node: string(c.Node), Digest: digestToPB(c.Digest), Signature: c.Signature})
	}
	return out, nil
}

// contributionsFromPB converts and validates a list of contributions.
func contributionsFromPB(name string, ps []*pb.Contribution) ([]round.Contribution, error) {
	if err := checkCount(name, len(ps)); err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, nil
	}
	out := make([]round.Contribution, len(ps))
	for i, c := range ps {
		field := fmt.Sprintf("%s[%d]", name, i)
		if c == nil {
			return nil, malformed(field, "missing")
		}
		if err := checkNode(field+".node", c.Node, false); err != nil {
			return nil, err
		}
		d, err := digestFromPB(field+".digest", c.Digest)
		if err != nil {
			return nil, err
		}
		out[i] = round.Contribution{Node: fl.NodeID(c.Node), Digest: d, Signature: bytesOf(c.Signature)}
	}
	return out, nil
}
