package keyring

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/tee"
)

// aggregatorHello makes the aggregator's Hello evidence for keys on a TEE,
// attested at at and issued at issued.
func aggregatorHello(t testing.TB, platform attest.Attester, keys *Keys, audit ed25519.PrivateKey, issued, at time.Time) []byte {
	t.Helper()
	nonce, _ := attest.NewNonce(rand.Reader, at)
	ev, err := attest.Attest(platform, keys.Binding(nonce, []byte("ekm of the aggregator's connection")), at)
	if err != nil {
		t.Fatal(err)
	}
	return keys.Evidence([]byte("s"), "aggregator", audit, issued, ev)
}

// A node seals to the aggregator only with a key from evidence that passes
// the aggregator's own policy; each failure is refused with its reason,
// and the refused keys are never taken again.
func TestAggregator(t *testing.T) {
	var m, am [48]byte // the members' image and the aggregator's
	rand.Read(m[:])
	rand.Read(am[:])
	now := time.Now()
	clock := now
	kr, _ := teeRing(t, m, time.Minute, func() time.Time { return clock })
	if _, err := kr.AggregatorKey(now); !errors.Is(err, ErrNoAggregator) {
		t.Errorf("no aggregator: %v, want ErrNoAggregator", err)
	}
	aggPub, aggAudit, _ := ed25519.GenerateKey(nil)
	policy := attest.Policy{Formats: []string{attest.FormatSim}, AllowSim: true, MaxAge: attest.Duration(time.Minute),
		Measurements: map[string][]string{attest.FormatSim: {hex.EncodeToString(am[:])}}}
	v, err := attest.NewVerifier(policy, attest.Roots{})
	if err != nil {
		t.Fatal(err)
	}
	if err := kr.RequireAggregator("node-2", aggPub, v); err == nil {
		t.Error("a member named as the aggregator: no error")
	}
	if err := kr.RequireAggregator("aggregator", aggPub, nil); err == nil {
		t.Error("an aggregator without a policy: no error")
	}
	if err := kr.RequireAggregator("aggregator", aggPub, v); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.AggregatorKey(now); !errors.Is(err, ErrNoAggregator) {
		t.Errorf("before its Hello: %v, want ErrNoAggregator", err)
	}

	dir := t.TempDir()
	debugState := filepath.Join(dir, "debug.json")
	if err := os.WriteFile(debugState, []byte(`{"tcb": 2, "debug": true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		platform attest.Attester
		at       time.Time
		want     error
	}{
		{"the members' image, not the aggregator's", attest.NewSimTEE(m, ""), now, attest.ErrMeasurement},
		{"a debug TEE", attest.NewSimTEE(am, debugState), now, attest.ErrDebug},
		{"stale evidence", attest.NewSimTEE(am, ""), now.Add(-2 * time.Minute), attest.ErrTooOld},
	} {
		keys, _ := NewKeys(nil)
		clock = clock.Add(time.Second)
		err := kr.VerifyPeer("aggregator", aggregatorHello(t, c.platform, keys, aggAudit, clock, c.at))
		if !errors.Is(err, ErrAggregatorRefused) || !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want ErrAggregatorRefused and %v", c.name, err, c.want)
		}
		_, kerr := kr.AggregatorKey(clock)
		if !errors.Is(kerr, ErrAggregatorRefused) || !errors.Is(kerr, c.want) {
			t.Errorf("%s: AggregatorKey gives %v, want the refusal's reason", c.name, kerr)
		}
	}

	// Good evidence of new keys: the key to seal to.
	good := attest.NewSimTEE(am, "")
	keys, _ := NewKeys(nil)
	clock = clock.Add(time.Second)
	if err := kr.VerifyAggregator(aggregatorHello(t, good, keys, aggAudit, clock, clock)); err != nil {
		t.Fatalf("good evidence: %v", err)
	}
	key, err := kr.AggregatorKey(clock)
	if err != nil {
		t.Fatal(err)
	}
	checkSealsTo(t, key, keys)

	// Older evidence (another process's keys, relayed again) is stale.
	old, _ := NewKeys(nil)
	if err := kr.VerifyAggregator(aggregatorHello(t, good, old, aggAudit, clock.Add(-time.Second), clock)); !errors.Is(err, ErrStaleEvidence) {
		t.Errorf("older evidence: %v, want ErrStaleEvidence", err)
	}
	// Evidence that aged past MaxAge: the aggregator did not re-attest.
	if _, err := kr.AggregatorKey(clock.Add(2 * time.Minute)); !errors.Is(err, attest.ErrTooOld) {
		t.Errorf("two minutes later: %v, want ErrTooOld", err)
	}

	// Its keys, then announced from a debug TEE: refused, and never taken
	// again, even in later evidence that passes.
	clock = clock.Add(time.Second)
	if err := kr.VerifyAggregator(aggregatorHello(t, attest.NewSimTEE(am, debugState), keys, aggAudit, clock, clock)); !errors.Is(err, attest.ErrDebug) {
		t.Errorf("debug: %v", err)
	}
	clock = clock.Add(time.Second)
	err = kr.VerifyAggregator(aggregatorHello(t, good, keys, aggAudit, clock, clock))
	if !errors.Is(err, ErrAggregatorRefused) || !strings.Contains(err.Error(), "refused evidence before") {
		t.Errorf("refused keys in good evidence: %v, want ErrAggregatorRefused", err)
	}
	// A member's audit key does not sign for the aggregator.
	_, member2, _ := ed25519.GenerateKey(nil)
	if err := kr.VerifyAggregator(aggregatorHello(t, good, keys, member2, clock, clock)); err == nil || errors.Is(err, ErrAggregatorRefused) {
		t.Errorf("evidence signed by another key: %v, want a signature error", err)
	}
}

// checkSealsTo runs a round of mode tee: a party seals to key, the
// aggregator opens with the private key of keys (its Identity).
func checkSealsTo(t *testing.T, key []byte, keys *Keys) {
	t.Helper()
	sess := protect.Group{ID: []byte("s"), Members: []fl.NodeID{"node-1"}, Threshold: 1}
	node, agg := tee.Scheme{Key: key}, tee.Scheme{Identity: keys.PrivateHPKE()}
	p, err := node.NewParty(sess, "node-1", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := tee.Scheme{}.NewHelper(sess)
	ann, _ := p.Announce()
	anns := map[fl.NodeID][]byte{"node-1": ann}
	d, _ := p.Deal(anns)
	setup, err := h.Setup(anns, map[fl.NodeID][]byte{"node-1": d.Public})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Accept(setup, d.Private); err != nil {
		t.Fatal(err)
	}
	a, err := agg.NewAggregator(sess, setup)
	if err != nil {
		t.Fatal(err)
	}
	target, _ := node.NewTarget(rand.Reader)
	up, err := p.Protect(1, fl.Vector{1, 2}, 1)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := h.Aggregate(1, map[fl.NodeID][]byte{"node-1": up})
	req := protect.RevealRequest{Round: 1, Aggregate: all, Revealers: []fl.NodeID{"node-1"}, Target: target.Public()}
	share, _ := p.Reveal(req, &protect.MemLedger{})
	res, err := a.Open(req, map[fl.NodeID][]byte{"node-1": share})
	if err != nil {
		t.Fatalf("the attested aggregator opening: %v", err)
	}
	if sum, err := target.Decrypt(res); err != nil || sum.Vector[1] != 2 {
		t.Fatalf("decrypted %v, %v", sum, err)
	}
}
