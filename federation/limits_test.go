package federation_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport"
)

// demoManifest is the manifest of `cloister demo`'s defaults: 5 nodes,
// t = 3, mode mhe with Agg128, the MLP 784-128-10, and the given strategy.
func demoManifest(t *testing.T, strategy string) *federation.Manifest {
	t.Helper()
	dir := t.TempDir() + "/fed"
	err := pki.InitFederation(dir, pki.InitOptions{Nodes: 5, Threshold: 3, Mode: federation.ModeMHE, Preset: "Agg128",
		Model: federation.ModelSpec{Kind: "mlp", Hidden: []int{128}}, Training: federation.Training{Strategy: strategy}}, time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kit, err := pki.LoadKit(dir + "/coordinator")
	if err != nil {
		t.Fatal(err)
	}
	return kit.Manifest
}

// TestLimitsDemo prints the computed limit of the demo's manifest and
// checks it: the model's 101,770 parameters take 13 Agg128 ciphertexts per
// update, every kind of message is bounded, the limit has its margin over
// the largest, and it is well below the old fixed 64 MiB.
func TestLimitsDemo(t *testing.T) {
	for _, strategy := range []string{"", "fedadam", "scaffold"} {
		man := demoManifest(t, strategy)
		s, err := federation.MessageSizes(man, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("demo manifest (%s, %s): d = %d, n = %d, update %d B, sealed model ≤ %d B", man.Training.Strategy,
			man.Model.Spec(), s.Params, s.Members, s.Payload.Update, s.Model)
		for _, k := range slices.Sorted(maps.Keys(s.Kinds)) {
			t.Logf("  %-13s ≤ %9d B", k, s.Kinds[k])
		}
		t.Logf("largest: %s, %d B; limit (+%d%%): %d B = %.2f MiB", s.Largest, s.Need, 100/federation.Margin, s.MaxMessage, float64(s.MaxMessage)/(1<<20))
		if s.Params != 101_770 || s.Members != 5 {
			t.Errorf("d = %d, n = %d, want 101770 and 5", s.Params, s.Members)
		}
		cts, dim := 13, s.Params
		if strategy == "scaffold" {
			cts, dim = 25, 2*s.Params // the model joined with the control variate
		}
		if want := 76 + cts*(4+8192*120/8); s.Payload.Update != want || s.Dim != dim {
			t.Errorf("update of %d bytes for vectors of %d, want %d Agg128 one-polynomial ciphertexts (%d bytes) for %d", s.Payload.Update, s.Dim, cts, want, dim)
		}
		if s.Kinds[s.Largest] != s.Need || s.MaxMessage < s.Need+s.Need/federation.Margin {
			t.Errorf("need %d (%s), limit %d: want the largest kind and a %d%% margin", s.Need, s.Largest, s.MaxMessage, 100/federation.Margin)
		}
		for k, b := range s.Kinds {
			if b > s.Need {
				t.Errorf("%s bound %d exceeds the need %d", k, b, s.Need)
			}
		}
		// Under mhe the included set is the key (protect.Capacity.SetBound):
		// a reveal request carries the aggregate, not the uploads.
		if rr := s.Kinds[round.KindRevealRequest]; rr < int64(s.Payload.Aggregate+s.Payload.TargetPublic) || rr >= int64(s.Members)*int64(s.Payload.Update) || s.Largest == round.KindRevealRequest || s.MaxMessage > 64<<20 {
			t.Errorf("reveal request bound %d, largest %s, limit %d B: want the aggregate and the target without %d uploads, under the 64 MiB the flag once fixed", rr, s.Largest, s.MaxMessage, s.Members)
		}
		fed, err := federation.Resolve(man, federation.Overrides{})
		if err != nil || fed.MaxMessage != s.MaxMessage {
			t.Errorf("Resolve: MaxMessage %v, %v, want %d", fed, err, s.MaxMessage)
		}
	}
}

// longName is a NodeID of the maximum length.
func longName(i int) fl.NodeID {
	p := fmt.Sprintf("node-%d-", i)
	return fl.NodeID(p + strings.Repeat("x", fl.MaxNameLen-len(p)))
}

// TestBoundsCoverWire builds each kind of message at its bounds (payloads
// of the scheme's stated sizes, sealed payloads with SealOverhead, evidence
// of MaxEvidence, every member named with a 64-byte NodeID) and checks
// that its wire encoding fits the bound MessageSizes states for its kind:
// the per-message and per-member overheads cover the protobuf framing.
func TestBoundsCoverWire(t *testing.T) {
	// The engine takes no larger Hello evidence than the bounds count per
	// member (one member's evidence above it made every Welcome and
	// SetupStart too large for the other members).
	// The limits count round.MaxEvidence; pki makes evidence of up to
	// pki.MaxHello.
	if round.MaxEvidence != pki.MaxHello {
		t.Fatalf("the engine and the limits take %d bytes of Hello evidence, pki makes up to %d", round.MaxEvidence, pki.MaxHello)
	}
	if federation.MaxMaxMessage != transport.MaxMaxMessage {
		t.Fatalf("the limits stop at %d bytes, the transport at %d", federation.MaxMaxMessage, transport.MaxMaxMessage)
	}
	for _, c := range []struct {
		mode, preset string
		n            int
	}{{federation.ModePlain, "", 3}, {federation.ModeMHE, "InsecureTest", 7}, {federation.ModeMHE, "Agg128", 5}} {
		man := &federation.Manifest{Mode: c.mode, Preset: c.preset, Members: make([]federation.Principal, c.n),
			Model:    federation.ModelSpec{Kind: "mlp", Inputs: 30, Classes: 4, Hidden: []int{20}},
			Training: federation.Training{Strategy: "fedyogi:lr=0.01,b1=0.9,b2=0.99,tau=0.001"}}
		s, err := federation.MessageSizes(man, nil)
		if err != nil {
			t.Fatal(err)
		}
		p := s.Payload
		var names []fl.NodeID
		for i := range c.n {
			names = append(names, longName(i))
		}
		each := func(size int) map[fl.NodeID][]byte {
			m := map[fl.NodeID][]byte{}
			for _, id := range names {
				m[id] = make([]byte, size)
			}
			return m
		}
		var included []round.Contribution
		for _, id := range names {
			included = append(included, round.Contribution{Node: id, Digest: round.DigestOf([]byte(id)), Signature: make([]byte, 64)})
		}
		model := make([]byte, s.Model)
		key := p.TargetSecret + federation.SealOverhead
		rec := round.Record{Epoch: 1 << 60, Round: 1 << 60, Base: 1<<60 - 1, Included: names}
		session := make([]byte, 64)
		msgs := []round.Message{
			{Kind: round.KindHello, Evidence: make([]byte, pki.MaxHello)},
			{Kind: round.KindWelcome, Evidences: each(pki.MaxHello), Dealer: names[0], Sealed: make([]byte, key), Target: make([]byte, p.TargetPublic)},
			{Kind: round.KindPeer, Evidences: each(pki.MaxHello)},
			{Kind: round.KindSetupStart, Participants: names, Evidences: each(pki.MaxHello)},
			{Kind: round.KindAnnounce, Payload: make([]byte, p.Announcement)},
			{Kind: round.KindAnnouncements, Payloads: each(p.Announcement)},
			{Kind: round.KindDeal, Payload: make([]byte, p.PublicDealing), Payloads: each(p.PrivateDealing + federation.SealOverhead)},
			{Kind: round.KindSetup, Payload: make([]byte, p.Setup), Payloads: each(p.PrivateDealing + federation.SealOverhead)},
			{Kind: round.KindGroupKey, Payloads: each(key), Target: make([]byte, p.TargetPublic), Model: model, Base: 1 << 60},
			{Kind: round.KindKeyRequest, Model: model, Base: 1 << 60},
			{Kind: round.KindKeyDelivery, Dealer: names[0], Sealed: make([]byte, key), Target: make([]byte, p.TargetPublic)},
			{Kind: round.KindTrain, Base: 1 << 60, Model: model, Config: make([]byte, 1024), Cohort: names, Leader: names[0]},
			{Kind: round.KindUpload, Payload: make([]byte, p.Update), Signature: make([]byte, 64)},
			{Kind: round.KindRevealRequest, Aggregate: make([]byte, p.Aggregate), Revealers: names, Target: make([]byte, p.TargetPublic), Included: included},
			{Kind: round.KindShare, Payload: make([]byte, p.Share)},
			{Kind: round.KindDecrypt, Base: 1 << 60, Model: model, Payload: make([]byte, p.Result), Included: included, Pledges: included, Record: round.Record{Aggregate: rec.Aggregate}},
			{Kind: round.KindCommit, Model: model, Record: rec, Signature: make([]byte, 64)},
			{Kind: round.KindModel, Model: model, Record: rec, Signature: make([]byte, 64), Leader: names[0]},
			{Kind: round.KindMetrics, Metrics: fl.Metrics{Accuracy: 0.5, Loss: 1, Examples: 1 << 40}},
			{Kind: round.KindRefuse, Reason: strings.Repeat("r", 16<<10)},
			{Kind: round.KindAccept}, {Kind: round.KindKeyAck}, {Kind: round.KindDone},
			{Kind: round.KindAmend, Serial: 1 << 60, Manifest: make([]byte, federation.MaxSize)},
			{Kind: round.KindPledge, Included: included[:1]},
			{Kind: round.KindPledges, Included: included},
		}
		seen := map[round.Kind]bool{}
		for _, m := range msgs {
			m.Session, m.Epoch, m.Round, m.To = session, 1<<60, 1<<60, names[c.n-1]
			got, err := transport.Size(m)
			if err != nil {
				t.Fatalf("%s: %v", m.Kind, err)
			}
			if bound := s.Kinds[m.Kind]; int64(got) > bound {
				t.Errorf("%s %s: a %s message at its bounds takes %d bytes, MessageSizes states %d", c.mode, c.preset, m.Kind, got, bound)
			}
			seen[m.Kind] = true
		}
		// Every kind that crosses the network has a bound, and was checked.
		for k := round.Kind(1); !strings.HasPrefix(k.String(), "Kind("); k++ {
			if k == round.KindTrained || k == round.KindEvaluated {
				continue // local inputs
			}
			if k == round.KindRelay {
				continue // vertical sessions' relay, not a federation's coordinator: relaynet bounds it
			}
			if _, ok := s.Kinds[k]; !ok || !seen[k] {
				t.Errorf("kind %s: bound %v, checked %v", k, ok, seen[k])
			}
		}
	}
}

func TestLimitsOverride(t *testing.T) {
	man := demoManifest(t, "")
	s, err := federation.MessageSizes(man, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		override, want int64
		err            error
	}{
		{0, s.MaxMessage, nil},
		{s.Need, s.Need, nil},
		{256 << 20, 256 << 20, nil},
		{s.Need - 1, 0, federation.ErrLimitTooSmall},
		{64 << 10, 0, federation.ErrLimitTooSmall},
	} {
		lim, err := s.Limit(c.override)
		if !errors.Is(err, c.err) || lim != c.want {
			t.Errorf("Limit(%d) = %d, %v, want %d, error %v", c.override, lim, err, c.want, c.err)
		}
		if err != nil {
			t.Logf("Limit(%d): %v", c.override, err)
			if !strings.Contains(err.Error(), fmt.Sprint(s.Need)) || !strings.Contains(err.Error(), s.Largest.String()) {
				t.Errorf("error %q does not name the need %d and its message kind %s", err, s.Need, s.Largest)
			}
		}
	}
}

func TestMessageSizesRefuses(t *testing.T) {
	base := func() *federation.Manifest {
		return &federation.Manifest{Mode: federation.ModeMHE, Preset: "InsecureTest", Members: make([]federation.Principal, 3),
			Model: federation.ModelSpec{Kind: "softmax", Inputs: 784, Classes: 10}}
	}
	for name, c := range map[string]struct {
		edit func(*federation.Manifest)
		err  error
	}{
		"model too large for the preset": {func(m *federation.Manifest) { m.Model.Inputs = 1 << 18 }, protect.ErrRange},
		"too many members":               {func(m *federation.Manifest) { m.Members = make([]federation.Principal, 1001) }, protect.ErrRange},
		"unknown mode":                   {func(m *federation.Manifest) { m.Mode = "nonesuch" }, federation.ErrUnsupported},
		"bad model":                      {func(m *federation.Manifest) { m.Model.Classes = 1 }, nil},
		"bad strategy":                   {func(m *federation.Manifest) { m.Training.Strategy = "scaffold" }, federation.ErrInvalidManifest},
	} {
		m := base()
		c.edit(m)
		_, err := federation.MessageSizes(m, nil)
		if err == nil || c.err != nil && !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want an error wrapping %v", name, err, c.err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := federation.MessageSizes(base(), nil); err != nil {
		t.Errorf("base manifest: %v", err)
	}
}

func ExampleMessageSizes() {
	// The demo's federation: 5 members, mhe with Agg128, the MLP 784-128-10.
	man := &federation.Manifest{Mode: "mhe", Preset: "Agg128", Members: make([]federation.Principal, 5),
		Model: federation.ModelSpec{Kind: "mlp", Inputs: 784, Classes: 10, Hidden: []int{128}}}
	s, err := federation.MessageSizes(man, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(s.Params, "parameters; an update takes", s.Payload.Update, "bytes")
	fmt.Println("largest message:", s.Largest, s.Need, "bytes; limit", s.MaxMessage)
	// Output:
	// 101770 parameters; an update takes 1597568 bytes
	// largest message: GroupKey 2995831 bytes; limit 3801088
}

// In mode tee the aggregator's answer, a KindShare, carries the sealed
// result: its bound covers the scheme's result, where a member's share is
// a few hundred bytes.
func TestLimitsTEE(t *testing.T) {
	man := demoManifest(t, "")
	man.Mode, man.Preset = federation.ModeTEE, ""
	s, err := federation.MessageSizes(man, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Kinds[round.KindShare] < int64(s.Payload.Result) {
		t.Errorf("KindShare ≤ %d B in mode tee, the sealed result takes %d B", s.Kinds[round.KindShare], s.Payload.Result)
	}
	man.Mode, man.Preset = federation.ModePlain, ""
	p, err := federation.MessageSizes(man, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kinds[round.KindShare] >= int64(p.Payload.Result) {
		t.Errorf("KindShare ≤ %d B in mode plain: a member's share is not a result", p.Kinds[round.KindShare])
	}
}
