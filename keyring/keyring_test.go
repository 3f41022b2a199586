package keyring

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/fl"
)

// teeRing is a keyring of node-1 that requires sim evidence of m.
func teeRing(t testing.TB, m [48]byte, maxAge time.Duration, now func() time.Time) (*Ring, map[fl.NodeID]ed25519.PrivateKey) {
	pub1, priv1, _ := ed25519.GenerateKey(nil)
	pub2, priv2, _ := ed25519.GenerateKey(nil)
	own, _ := NewKeys(nil)
	kr := New([]byte("s"), "node-1", own, map[fl.NodeID]ed25519.PublicKey{"node-1": pub1, "node-2": pub2})
	v, err := attest.NewVerifier(attest.Policy{Formats: []string{attest.FormatSim}, AllowSim: true, MaxAge: attest.Duration(maxAge),
		Measurements: map[string][]string{attest.FormatSim: {hex.EncodeToString(m[:])}}}, attest.Roots{})
	if err != nil {
		t.Fatal(err)
	}
	kr.RequireTEE(v, now)
	return kr, map[fl.NodeID]ed25519.PrivateKey{"node-1": priv1, "node-2": priv2}
}

// helloOf makes node-2's Hello evidence for keys on a TEE, as a node does
// on a connection with nonce and keying material ekm.
func helloOf(t testing.TB, tee attest.Attester, keys *Keys, audit ed25519.PrivateKey, issued, at time.Time) []byte {
	nonce, _ := attest.NewNonce(rand.Reader, at)
	ev, err := attest.Attest(tee, keys.Binding(nonce, []byte("ekm of node-2's connection")), at)
	if err != nil {
		t.Fatal(err)
	}
	return keys.Evidence([]byte("s"), "node-2", audit, issued, ev)
}

// A keyring that requires a TEE accepts a peer's keys only with evidence
// that binds them, from an allowed TEE; it reports evidence that grew too
// old; and after rotating its own keys it still opens payloads sealed to
// the previous ones.
func TestRingTEE(t *testing.T) {
	var m, other [48]byte
	rand.Read(m[:])
	rand.Read(other[:])
	now := time.Now()
	clock := now
	kr, audit := teeRing(t, m, time.Minute, func() time.Time { return clock })
	good := attest.NewSimTEE(m, "")
	k2, _ := NewKeys(nil)
	if err := kr.VerifyPeer("node-2", k2.Evidence([]byte("s"), "node-2", audit["node-2"], now, nil)); !errors.Is(err, ErrNoTEE) {
		t.Errorf("no TEE evidence: %v, want ErrNoTEE", err)
	}
	if err := kr.VerifyPeer("node-2", helloOf(t, attest.NewSimTEE(other, ""), k2, audit["node-2"], now, now)); !errors.Is(err, attest.ErrMeasurement) {
		t.Errorf("another measurement: %v, want ErrMeasurement", err)
	}
	// Evidence for other keys than the envelope announces.
	k3, _ := NewKeys(nil)
	nonce, _ := attest.NewNonce(rand.Reader, now)
	ev, _ := attest.Attest(good, k3.Binding(nonce, []byte("ekm")), now)
	if err := kr.VerifyPeer("node-2", k2.Evidence([]byte("s"), "node-2", audit["node-2"], now, ev)); !errors.Is(err, attest.ErrKeyBinding) {
		t.Errorf("evidence of other keys: %v, want ErrKeyBinding", err)
	}
	if err := kr.VerifyPeer("node-2", helloOf(t, good, k2, audit["node-2"], now, now)); err != nil {
		t.Fatalf("good evidence: %v", err)
	}
	if c, ok := kr.PeerClaims("node-2"); !ok || c.Measurement != hex.EncodeToString(m[:]) {
		t.Errorf("claims %+v", c)
	}
	if exp := kr.Expired(now.Add(30 * time.Second)); len(exp) != 0 {
		t.Errorf("expired after 30s of a minute: %v", exp)
	}
	if exp := kr.Expired(now.Add(2 * time.Minute)); !errors.Is(exp["node-2"], attest.ErrTooOld) {
		t.Errorf("after 2 minutes: %v, want node-2 ErrTooOld", exp)
	}
	// Re-attested keys, checked later: accepted, and no longer expired.
	clock = now.Add(2 * time.Minute)
	k2b, _ := NewKeys(nil)
	if err := kr.VerifyPeer("node-2", helloOf(t, good, k2b, audit["node-2"], clock, clock)); err != nil {
		t.Fatal(err)
	}
	if exp := kr.Expired(clock.Add(time.Second)); len(exp) != 0 {
		t.Errorf("fresh evidence reported expired: %v", exp)
	}

	// Rotation: a payload sealed to node-1's previous keys still opens.
	kr2 := New([]byte("s"), "node-2", k2b, kr.audit)
	if err := kr2.VerifyPeer("node-1", kr.Own().Evidence([]byte("s"), "node-1", audit["node-1"], clock, nil)); err != nil {
		t.Fatal(err)
	}
	inFlight, err := kr2.Seal("node-1", []byte("a share"))
	if err != nil {
		t.Fatal(err)
	}
	next, _ := NewKeys(nil)
	kr.Rotate(next)
	if pt, err := kr.Open("node-2", inFlight); err != nil || string(pt) != "a share" {
		t.Errorf("a payload sealed to the previous keys: %q, %v", pt, err)
	}
	kr.Rotate(func() *Keys { k, _ := NewKeys(nil); return k }())
	if _, err := kr.Open("node-2", inFlight); err == nil {
		t.Error("a payload sealed two rotations ago still opens")
	}
}

// A failed re-attestation cannot be undone by relaying the evidence it
// superseded: evidence issued before signed evidence whose TEE check failed
// is refused; newer valid evidence is taken.
func TestRingFailedReattestation(t *testing.T) {
	var m, other [48]byte
	rand.Read(m[:])
	rand.Read(other[:])
	now := time.Now()
	kr, audit := teeRing(t, m, time.Hour, func() time.Time { return now.Add(2 * time.Second) })
	good := attest.NewSimTEE(m, "")
	k1, _ := NewKeys(nil)
	first := helloOf(t, good, k1, audit["node-2"], now, now)
	if err := kr.VerifyPeer("node-2", first); err != nil {
		t.Fatal(err)
	}
	k2, _ := NewKeys(nil)
	later := now.Add(time.Second)
	if err := kr.VerifyPeer("node-2", helloOf(t, attest.NewSimTEE(other, ""), k2, audit["node-2"], later, later)); !errors.Is(err, attest.ErrMeasurement) {
		t.Fatalf("re-attestation on another binary: %v, want ErrMeasurement", err)
	}
	if err := kr.VerifyPeer("node-2", first); !errors.Is(err, ErrStaleEvidence) {
		t.Fatalf("the superseded evidence relayed again: %v, want ErrStaleEvidence", err)
	}
	k3, _ := NewKeys(nil)
	latest := now.Add(2 * time.Second)
	if err := kr.VerifyPeer("node-2", helloOf(t, good, k3, audit["node-2"], latest, latest)); err != nil {
		t.Fatalf("a valid attestation after the failed one: %v", err)
	}
}

// The sim TEE reads its platform state at every attestation.
// BenchmarkReattest measures what a re-attestation costs a node (new
// process keys, a sim report over their binding, the signed envelope) and
// each peer (checking the envelope and the TEE evidence).
func BenchmarkReattest(b *testing.B) {
	var m [48]byte
	kr, audit := teeRing(b, m, time.Hour, nil)
	tee := attest.NewSimTEE(m, "")
	b.Run("produce", func(b *testing.B) {
		var size int
		for b.Loop() {
			k, _ := NewKeys(nil)
			size = len(helloOf(b, tee, k, audit["node-2"], time.Now(), time.Now()))
		}
		b.ReportMetric(float64(size), "bytes")
	})
	b.Run("verify", func(b *testing.B) {
		k, _ := NewKeys(nil)
		ev := helloOf(b, tee, k, audit["node-2"], time.Now(), time.Now())
		for b.Loop() {
			if err := kr.VerifyPeer("node-2", ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A payload a member sealed before it re-attested still opens after its new
// keys arrived (its signature is by the signing key before its last
// rotation), also the node's own dealing to itself; one signed two
// rotations ago does not.
func TestRingOpenAfterSenderRotation(t *testing.T) {
	session := []byte("s")
	pub, priv, _ := ed25519.GenerateKey(nil)
	pubs := map[fl.NodeID]ed25519.PublicKey{"node-1": pub, "node-2": pub}
	k1, _ := NewKeys(nil)
	k2, _ := NewKeys(nil)
	kr1 := New(session, "node-1", k1, pubs)
	kr2 := New(session, "node-2", k2, pubs)
	t0 := time.Now()
	if err := kr1.VerifyPeer("node-2", k2.Evidence(session, "node-2", priv, t0, nil)); err != nil {
		t.Fatal(err)
	}
	if err := kr2.VerifyPeer("node-1", k1.Evidence(session, "node-1", priv, t0, nil)); err != nil {
		t.Fatal(err)
	}
	seal := func(kr *Ring, to fl.NodeID, pt string) []byte {
		t.Helper()
		ct, err := kr.Seal(to, []byte(pt))
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	// node-2 seals to node-1 and to itself, then re-attests.
	toPeer, toSelf := seal(kr2, "node-1", "a share"), seal(kr2, "node-2", "own share")
	rotate := func(issued time.Time) {
		t.Helper()
		k, _ := NewKeys(nil)
		kr2.Rotate(k)
		if err := kr1.VerifyPeer("node-2", k.Evidence(session, "node-2", priv, issued, nil)); err != nil {
			t.Fatal(err)
		}
	}
	rotate(t0.Add(time.Second))
	if pt, err := kr1.Open("node-2", toPeer); err != nil || string(pt) != "a share" {
		t.Errorf("a payload node-2 sealed before it re-attested: %q, %v", pt, err)
	}
	if pt, err := kr2.Open("node-2", toSelf); err != nil || string(pt) != "own share" {
		t.Errorf("node-2's own dealing, sealed before it re-attested: %q, %v", pt, err)
	}
	// The same evidence relayed again keeps the previous key.
	if err := kr1.VerifyPeer("node-2", kr2.Own().Evidence(session, "node-2", priv, t0.Add(time.Second), nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := kr1.Open("node-2", toPeer); err != nil {
		t.Errorf("after the same evidence again: %v", err)
	}
	rotate(t0.Add(2 * time.Second))
	if _, err := kr1.Open("node-2", toPeer); err == nil {
		t.Error("a payload node-2 signed two rotations ago still verifies")
	}
}
