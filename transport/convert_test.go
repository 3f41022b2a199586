package transport

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport/internal/pb"
)

// roundKinds returns every kind round names.
func roundKinds() []round.Kind {
	var ks []round.Kind
	for k := round.Kind(1); k != 0; k++ {
		if !strings.HasPrefix(k.String(), "Kind(") {
			ks = append(ks, k)
		}
	}
	return ks
}

// Every kind of round has a wire encoding, and the mapping is one to one.
func TestKindTable(t *testing.T) {
	seen := map[pb.Kind]round.Kind{}
	for _, k := range roundKinds() {
		p, ok := kindToPB(k)
		if !ok {
			t.Fatalf("round.%s has no wire encoding: add it to federation.proto and kinds", k)
		}
		if o, dup := seen[p]; dup {
			t.Fatalf("round.%s and round.%s both encode as %s", k, o, p)
		}
		seen[p] = k
		if back, _ := kindFromPB(p); back != k {
			t.Fatalf("%s decodes as %s, want %s", p, back, k)
		}
		// The wire name follows the round name: KindRevealRequest → KIND_REVEAL_REQUEST.
		var want strings.Builder
		want.WriteString("KIND")
		for i, r := range k.String() {
			if i == 0 || r >= 'A' && r <= 'Z' {
				want.WriteByte('_')
			}
			want.WriteString(strings.ToUpper(string(r)))
		}
		if p.String() != want.String() {
			t.Errorf("round.%s encodes as %s, want %s", k, p, want.String())
		}
	}
	if len(seen) != len(kinds) || len(pb.Kind_name) != len(kinds)+1 {
		t.Errorf("%d round kinds, %d table entries, %d wire kinds (with UNSPECIFIED)", len(seen), len(kinds), len(pb.Kind_name))
	}
}

// randMessage returns a message with every field set at random (each
// field empty now and then).
func randMessage(r *rand.Rand) round.Message {
	ks := roundKinds()
	bs := func() []byte {
		if r.IntN(8) == 0 {
			return nil
		}
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	node := func() fl.NodeID {
		const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
		n := make([]byte, 1+r.IntN(12))
		for i := range n {
			n[i] = chars[r.IntN(len(chars))]
		}
		if string(n) == "coordinator" {
			return "node-x"
		}
		return fl.NodeID(n)
	}
	opt := func() fl.NodeID {
		if r.IntN(4) == 0 {
			return ""
		}
		return node()
	}
	nodes := func() []fl.NodeID {
		var ns []fl.NodeID
		for range r.IntN(6) {
			ns = append(ns, node())
		}
		return ns
	}
	byNode := func() map[fl.NodeID][]byte {
		if r.IntN(5) == 0 {
			return nil
		}
		m := map[fl.NodeID][]byte{}
		for range r.IntN(6) {
			m[node()] = bs()
		}
		return m
	}
	digest := func() (d round.Digest) {
		if r.IntN(4) != 0 {
			for i := range d {
				d[i] = byte(r.Uint32())
			}
		}
		return d
	}
	float := func() float64 {
		switch r.IntN(8) {
		case 0:
			return math.NaN()
		case 1:
			return math.Inf(-1 + 2*r.IntN(2))
		case 2:
			return math.Copysign(0, -1)
		case 3:
			return math.Float64frombits(r.Uint64())
		}
		return r.NormFloat64() * 1e3
	}
	reasons := []string{"", "bad included set", "naïve ✓ 测试", strings.Repeat("x", 300)}
	m := round.Message{
		Kind: ks[r.IntN(len(ks))], To: opt(), Session: bs(), Epoch: r.Uint64(), Round: fl.Round(r.Uint64()),
		Evidence: bs(), Evidences: byNode(), Payload: bs(), Payloads: byNode(), Dealer: opt(),
		Sealed: bs(), Target: bs(), Model: bs(), Base: fl.Round(r.Uint64()), Config: bs(),
		Cohort: nodes(), Leader: opt(), Revealers: nodes(), Aggregate: bs(), Signature: bs(),
		Cosign: bs(), Reason: reasons[r.IntN(len(reasons))], Participants: nodes(),
	}
	for range r.IntN(4) {
		m.Included = append(m.Included, round.Contribution{Node: node(), Digest: digest(), Signature: bs()})
	}
	for range r.IntN(3) {
		m.Pledges = append(m.Pledges, round.Contribution{Node: node(), Digest: digest(), Signature: bs()})
	}
	m.Serial = r.Uint64()
	if r.IntN(2) == 0 {
		m.Manifest = bs()
	}
	if r.IntN(4) != 0 {
		m.Record = round.Record{Epoch: r.Uint64(), Round: fl.Round(r.Uint64()), Base: fl.Round(r.Uint64()),
			Included: nodes(), Aggregate: digest(), Model: digest()}
	}
	if r.IntN(4) != 0 {
		m.Update = fl.Update{Node: opt(), Round: fl.Round(r.Uint64()), Weight: float()}
		for range r.IntN(20) {
			m.Update.Delta = append(m.Update.Delta, float())
		}
	}
	if r.IntN(4) != 0 {
		m.Metrics = fl.Metrics{Accuracy: float(), Loss: float(), Examples: r.IntN(1 << 30)}
	}
	return m
}

// canonical returns m as decoding gives it back: empty byte slices, slices
// and maps become nil. Floats are moved out into bits (compared exactly,
// NaN payloads and the sign of zero included).
func canonical(m round.Message) (round.Message, []uint64) {
	nb := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		return b
	}
	nm := func(in map[fl.NodeID][]byte) map[fl.NodeID][]byte {
		if len(in) == 0 {
			return nil
		}
		out := map[fl.NodeID][]byte{}
		for k, v := range in {
			out[k] = nb(v)
		}
		return out
	}
	nn := func(ns []fl.NodeID) []fl.NodeID {
		if len(ns) == 0 {
			return nil
		}
		return ns
	}
	m.Session, m.Evidence, m.Payload, m.Sealed, m.Target = nb(m.Session), nb(m.Evidence), nb(m.Payload), nb(m.Sealed), nb(m.Target)
	m.Model, m.Config, m.Aggregate, m.Signature = nb(m.Model), nb(m.Config), nb(m.Aggregate), nb(m.Signature)
	m.Cosign = nb(m.Cosign)
	m.Evidences, m.Payloads = nm(m.Evidences), nm(m.Payloads)
	m.Cohort, m.Revealers, m.Record.Included = nn(m.Cohort), nn(m.Revealers), nn(m.Record.Included)
	m.Participants = nn(m.Participants)
	if len(m.Included) == 0 {
		m.Included = nil
	}
	m.Manifest = nb(m.Manifest)
	ncs := func(cs []round.Contribution) []round.Contribution {
		if len(cs) == 0 {
			return nil
		}
		out := append([]round.Contribution(nil), cs...)
		for i := range out {
			out[i].Signature = nb(out[i].Signature)
		}
		return out
	}
	m.Included, m.Pledges = ncs(m.Included), ncs(m.Pledges)
	var bits []uint64
	for _, x := range m.Update.Delta {
		bits = append(bits, math.Float64bits(x))
	}
	bits = append(bits, math.Float64bits(m.Update.Weight), math.Float64bits(m.Metrics.Accuracy), math.Float64bits(m.Metrics.Loss))
	m.Update.Delta, m.Update.Weight, m.Metrics.Accuracy, m.Metrics.Loss = nil, 0, 0, 0
	return m, bits
}

func sameMessage(a, b round.Message) bool {
	ca, fa := canonical(a)
	cb, fb := canonical(b)
	return reflect.DeepEqual(ca, cb) && reflect.DeepEqual(fa, fb)
}

// Random messages with every field set survive the wire encoding exactly.
func TestConvertRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		m := randMessage(r)
		b, err := marshalMessage(m)
		if err != nil {
			t.Fatalf("message %d: marshal: %v\n%+v", i, err, m)
		}
		got, err := unmarshalMessage(b)
		if err != nil {
			t.Fatalf("message %d: unmarshal: %v\n%+v", i, err, m)
		}
		if !sameMessage(got, m) {
			t.Fatalf("message %d changed on the wire:\n got %+v\nwant %+v", i, got, m)
		}
	}
}

func TestConvertReasonRepaired(t *testing.T) {
	b, err := marshalMessage(round.Message{Kind: round.KindRefuse, Reason: "bad \xff byte"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := unmarshalMessage(b)
	if err != nil || m.Reason != "bad \uFFFD byte" {
		t.Fatalf("got %q, %v", m.Reason, err)
	}
}

func TestToPBRejects(t *testing.T) {
	many := make([]fl.NodeID, maxNodes+1)
	for i := range many {
		many[i] = fl.NodeID(fmt.Sprintf("n%d", i))
	}
	for _, tc := range []struct {
		name string
		m    round.Message
		want string
	}{
		{"unknown kind", round.Message{Kind: 200}, "kind Kind(200)"},
		{"zero kind", round.Message{}, "kind unknown"},
		{"bad to", round.Message{Kind: round.KindTrain, To: "Node 1"}, "to:"},
		{"reserved leader", round.Message{Kind: round.KindTrain, Leader: "coordinator"}, "leader:"},
		{"empty cohort entry", round.Message{Kind: round.KindTrain, Cohort: []fl.NodeID{"a", ""}}, "cohort[1]"},
		{"too many revealers", round.Message{Kind: round.KindRevealRequest, Revealers: many}, "revealers: 1001 entries"},
		{"too many participants", round.Message{Kind: round.KindSetupStart, Participants: many}, "participants: 1001 entries"},
		{"bad map key", round.Message{Kind: round.KindSetup, Payloads: map[fl.NodeID][]byte{"UPPER": nil}}, "payloads key"},
		{"negative examples", round.Message{Kind: round.KindMetrics, Metrics: fl.Metrics{Examples: -1}}, "metrics.examples: negative"},
		{"bad included node", round.Message{Kind: round.KindDecrypt, Included: []round.Contribution{{Node: "x y"}}}, "included[0].node"},
		{"bad record node", round.Message{Kind: round.KindModel, Record: round.Record{Included: []fl.NodeID{"-a"}}}, "record.included[0]"},
		{"bad update node", round.Message{Kind: round.KindTrained, Update: fl.Update{Node: "a_b"}}, "update.node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := marshalMessage(tc.m)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrMalformed mentioning %q", err, tc.want)
			}
		})
	}
}

func TestFromPBRejects(t *testing.T) {
	many := make([]string, maxNodes+1)
	for i := range many {
		many[i] = fmt.Sprintf("n%d", i)
	}
	ok := func(f func(p *pb.Message)) *pb.Message {
		p := &pb.Message{Kind: pb.Kind_KIND_TRAIN}
		f(p)
		return p
	}
	for _, tc := range []struct {
		name string
		p    *pb.Message
		want string
	}{
		{"unspecified kind", &pb.Message{}, "kind 0"},
		{"unknown kind", &pb.Message{Kind: 99}, "kind 99"},
		{"negative kind", &pb.Message{Kind: -3}, "kind -3"},
		{"bad to", ok(func(p *pb.Message) { p.To = "../etc" }), "to:"},
		{"bad dealer", ok(func(p *pb.Message) { p.Dealer = strings.Repeat("a", 65) }), "dealer:"},
		{"too many cohort", ok(func(p *pb.Message) { p.Cohort = many }), "cohort: 1001 entries"},
		{"empty cohort entry", ok(func(p *pb.Message) { p.Cohort = []string{""} }), "cohort[0]"},
		{"bad evidences key", ok(func(p *pb.Message) { p.Evidences = map[string][]byte{"": {1}} }), "evidences key"},
		{"too many payloads", ok(func(p *pb.Message) {
			p.Payloads = map[string][]byte{}
			for _, n := range many {
				p.Payloads[n] = nil
			}
		}), "payloads: 1001 entries"},
		{"nil contribution", ok(func(p *pb.Message) { p.Included = []*pb.Contribution{nil} }), "included[0]: missing"},
		{"short digest", ok(func(p *pb.Message) { p.Included = []*pb.Contribution{{Node: "a", Digest: make([]byte, 31)}} }), "included[0].digest: 31 bytes"},
		{"long record digest", ok(func(p *pb.Message) { p.Record = &pb.Record{Model: make([]byte, 33)} }), "record.model: 33 bytes"},
		{"bad record node", ok(func(p *pb.Message) { p.Record = &pb.Record{Included: []string{"A"}} }), "record.included[0]"},
		{"negative examples", ok(func(p *pb.Message) { p.Metrics = &pb.Metrics{Examples: -5} }), "metrics.examples: negative count -5"},
		{"reserved update node", ok(func(p *pb.Message) { p.Update = &pb.Update{Node: "coordinator"} }), "update.node"},
		{"invalid utf-8 reason", ok(func(p *pb.Message) { p.Reason = "\xff" }), "reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fromPB(tc.p)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrMalformed mentioning %q", err, tc.want)
			}
		})
	}
	// An unknown kind is also round's ErrUnknownKind.
	if _, err := fromPB(&pb.Message{Kind: 99}); !errors.Is(err, round.ErrUnknownKind) {
		t.Errorf("unknown kind: %v does not wrap round.ErrUnknownKind", err)
	}
	// Bytes that are not a message at all.
	if _, err := unmarshalMessage([]byte{0xff, 0xff, 0xff}); !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage: %v", err)
	}
	// A string field with invalid UTF-8 on the wire.
	b, _ := proto.Marshal(&pb.Message{Kind: pb.Kind_KIND_REFUSE})
	b = protowire.AppendTag(b, 25, protowire.BytesType) // reason
	b = protowire.AppendBytes(b, []byte("\xff"))
	if _, err := unmarshalMessage(b); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("invalid UTF-8 reason on the wire: %v", err)
	}
}
