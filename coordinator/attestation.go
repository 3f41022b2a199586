package coordinator

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport"
)

// Admission with attestation.
//
// When the manifest requires TEE evidence, the transport issues a timed
// nonce (attest.NewNonce) with every stream and at every re-attestation a
// node asks for. A member's Hello carries its Hello evidence (pki.Hello):
// its process keys, signed with its audit key, and TEE evidence whose report
// data is attest.ReportData(that nonce, the stream's TLS keying material,
// the process keys). The coordinator checks all of it, on its own end of
// the connection (attest's Verify), before the Hello reaches the engine. A
// member whose evidence fails is refused (audit node-refused, naming the
// check) and kept out of the session; a member whose verified evidence gets
// older than the policy's MaxAge without a fresh attestation is excluded
// the same way. Fresh valid evidence readmits it.

// attestation is what the coordinator knows of one member's attestation.
type attestation struct {
	gen      uint64 // counts the nonces issued to the member (streams and challenges)
	okGen    uint64 // gen when evidence last verified
	stream   uint64 // counts the member's streams
	okStream uint64 // stream when evidence last verified: other messages are taken only on that stream
	nonce    []byte // the newest nonce issued on the member's current stream
	ekm      []byte // the current stream's TLS keying material
	evidence []byte // the last Hello evidence verified
	claims   *attest.Claims
	verified time.Time // when evidence last verified
	lastErr  string    // why the last evidence failed, or it expired
	failed   time.Time
	refused  []byte // the last refused Hello evidence, relayed to the members
	excluded bool   // refused or expired since its last valid evidence
	count    int    // evidence verified
}

// AttestationStatus is one member's attestation, for /status.
type AttestationStatus struct {
	Format      string    `json:"format,omitempty"`
	Measurement string    `json:"measurement,omitempty"`
	TCB         []uint32  `json:"tcb,omitempty"`
	Debug       bool      `json:"debug,omitempty"`
	Time        time.Time `json:"evidence_time,omitzero"`
	AgeSeconds  float64   `json:"age_seconds,omitempty"`
	Verified    time.Time `json:"verified,omitzero"`
	Count       int       `json:"attestations"`
	OK          bool      `json:"ok"`
	LastError   string    `json:"last_error,omitempty"`
	Failed      time.Time `json:"failed,omitzero"`
}

// issueNonce is the transport's ServerConfig.Nonce.
func (c *Coordinator) issueNonce() ([]byte, error) {
	return attest.NewNonce(rand.Reader, c.cfg.Now())
}

// connected records the nonce and keying material of a member's new stream.
func (c *Coordinator) connected(ev transport.Event) {
	if c.tee == nil && !c.isAggregator(ev.Node) {
		return
	}
	a := c.att[ev.Node]
	if a == nil {
		a = &attestation{}
		c.att[ev.Node] = a
	}
	a.nonce, a.ekm = ev.Nonce, nil
	a.gen++
	a.stream++
	if ev.TLS != nil {
		ekm, err := attest.SessionEKM(*ev.TLS)
		if err != nil {
			c.log.Error("cannot export the keying material of a node's stream: its evidence will be refused", "member", ev.Node, "err", err)
		}
		a.ekm = ekm
	}
}

// challenged records a nonce issued at a member's request.
func (c *Coordinator) challenged(ev transport.Event) {
	if a := c.att[ev.Node]; a != nil && (c.tee != nil || c.isAggregator(ev.Node)) {
		a.nonce = ev.Nonce
		a.gen++
	}
}

// admit checks a member's Hello before the engine sees it. It returns false
// if the Hello must not reach the engine.
func (c *Coordinator) admit(id fl.NodeID, m round.Message) bool {
	if c.isAggregator(id) {
		return c.admitAggregator(id, m)
	}
	if c.tee == nil {
		return true
	}
	a := c.att[id]
	if a == nil {
		a = &attestation{}
		c.att[id] = a
	}
	now := c.cfg.Now()
	if a.claims != nil && !a.excluded && a.okGen == a.gen && bytes.Equal(m.Evidence, a.evidence) &&
		now.Sub(a.claims.Time) <= time.Duration(c.tee.Policy().MaxAge) {
		return true // the same evidence again, on the same stream and nonce (a Hello after a quiet spell)
	}
	start := time.Now()
	claims, err := c.verifyHello(id, a, m.Evidence, now)
	secs := time.Since(start).Seconds()
	if err != nil {
		c.refuseEvidence(id, a, m.Evidence, err, now)
		return false
	}
	c.met.attestations.WithLabelValues("ok").Inc()
	c.met.attestVerify.Observe(secs)
	c.met.attestBytes.Observe(float64(len(m.Evidence)))
	c.log.Info("attestation verified", "member", id, "format", claims.Format, "measurement", claims.Measurement,
		"tcb", claims.TCB, "evidence_bytes", len(m.Evidence), "verify_s", secs, "attestations", a.count+1)
	a.evidence, a.claims, a.verified, a.excluded, a.lastErr, a.refused = bytes.Clone(m.Evidence), claims, now, false, "", nil
	a.okGen, a.okStream = a.gen, a.stream
	a.count++
	c.rc.Attested(id, m.Evidence, claims.Format)
	// Fresh valid evidence ends an exclusion (also one the engine's state
	// kept across a restart of the coordinator); a no-op otherwise. A
	// member joining hears from the engine of the members refused so far.
	c.rc.Readmit(id)
	c.setAttestStatus()
	return true
}

// attested reports whether a member's current stream carried evidence that
// verified: with attestation, the engine takes no message but a Hello from
// a stream on which the member has not attested (its evidence binds the
// TLS session, so a process outside the TEE that holds the member's
// certificate cannot speak for it on a stream of its own).
func (c *Coordinator) attested(id fl.NodeID) bool {
	if c.tee == nil && !c.isAggregator(id) {
		return true
	}
	a := c.att[id]
	return a != nil && a.claims != nil && a.okStream == a.stream
}

// verifyHello checks a Hello's evidence: the envelope and its audit-key
// signature, then the TEE evidence on this connection.
func (c *Coordinator) verifyHello(id fl.NodeID, a *attestation, b []byte, now time.Time) (*attest.Claims, error) {
	p, ok := c.member(id)
	if !ok {
		return nil, fmt.Errorf("%s is not a member", id)
	}
	e, err := pki.VerifyHello(b, id, c.session, p.AuditKey)
	if err != nil {
		return nil, err
	}
	if len(e.TEE) == 0 {
		return nil, fmt.Errorf("the Hello evidence carries no TEE evidence, and the manifest requires it (formats %v)", c.tee.Policy().Formats)
	}
	if a.nonce == nil {
		return nil, errors.New("no nonce was issued on this stream")
	}
	want := attest.Binding{Nonce: a.nonce, EKM: a.ekm, HPKEPub: e.HPKE, SignPub: e.Sign}
	return c.tee.Verify(e.TEE, want, now)
}

// refuseEvidence refuses a member's evidence: audit, metrics, exclusion,
// and the evidence relayed to the members, so that each reaches its own
// verdict.
func (c *Coordinator) refuseEvidence(id fl.NodeID, a *attestation, evidence []byte, err error, now time.Time) {
	reason := "attestation: " + err.Error()
	c.log.Warn("refused a member's evidence", "member", id, "check", attestResult(err), "err", err)
	repeat := a.lastErr == reason && bytes.Equal(a.refused, evidence)
	a.lastErr, a.failed, a.refused = reason, now, bytes.Clone(evidence)
	if !repeat {
		// Recorded, and relayed to the members so that each reaches its
		// own verdict.
		c.rc.Refuse(id, reason, evidence)
	}
	c.exclude(id, a, reason)
	c.setAttestStatus()
	// Counted last: whoever sees the count sees the status above.
	c.met.rejected.WithLabelValues("attestation").Inc()
	c.met.attestations.WithLabelValues(attestResult(err)).Inc()
}

// exclude keeps a member whose evidence failed or expired out of the
// session until it attests again.
func (c *Coordinator) exclude(id fl.NodeID, a *attestation, reason string) {
	if a.excluded {
		return
	}
	a.excluded = true
	c.rc.Exclude(id, reason)
}

// checkExpiry excludes the members whose verified evidence is older than
// the policy's MaxAge: they did not re-attest in time.
func (c *Coordinator) checkExpiry(now time.Time) {
	if c.tee == nil || c.rc.Status().Phase == round.PhaseDone {
		return
	}
	maxAge := time.Duration(c.tee.Policy().MaxAge)
	for _, id := range c.manifest().Nodes() {
		a := c.att[id]
		if a == nil || a.claims == nil || a.excluded || now.Sub(a.claims.Time) <= maxAge {
			continue
		}
		err := &attest.AgeError{Time: a.claims.Time, Now: now, MaxAge: maxAge}
		reason := "attestation expired: " + err.Error()
		c.met.attestations.WithLabelValues("expired").Inc()
		c.log.Warn("a member's evidence expired", "member", id, "err", err)
		a.lastErr, a.failed, a.claims, a.evidence = reason, now, nil, nil
		c.rc.Refuse(id, reason, nil)
		c.exclude(id, a, reason)
	}
	c.setAttestStatus()
}

// attestResult names the check a refusal failed, for metrics and logs.
func attestResult(err error) string {
	for _, s := range []struct {
		err  error
		name string
	}{
		{pki.ErrHello, "envelope"}, {attest.ErrMalformed, "malformed"}, {attest.ErrFormatNotAllowed, "format"},
		{attest.ErrSignature, "signature"}, {attest.ErrKeyBinding, "key-binding"}, {attest.ErrSessionBinding, "session-binding"},
		{attest.ErrStaleNonce, "stale-nonce"}, {attest.ErrReportData, "report-data"}, {attest.ErrDebug, "debug"},
		{attest.ErrMeasurement, "measurement"}, {attest.ErrTCB, "tcb"}, {attest.ErrTooOld, "too-old"}, {attest.ErrFuture, "future"},
	} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return "missing"
}

// setAttestStatus publishes the members' attestation status for /status
// and /metrics.
func (c *Coordinator) setAttestStatus() {
	if c.tee == nil {
		return
	}
	now := c.cfg.Now()
	out := make(map[fl.NodeID]AttestationStatus, len(c.att))
	for id, a := range c.att {
		s := AttestationStatus{Verified: a.verified, Count: a.count, LastError: a.lastErr, Failed: a.failed, OK: a.claims != nil && !a.excluded}
		if cl := a.claims; cl != nil {
			s.Format, s.Measurement, s.TCB, s.Debug, s.Time = cl.Format, cl.Measurement, slices.Clone(cl.TCB), cl.Debug, cl.Time
			s.AgeSeconds = now.Sub(cl.Time).Seconds()
			c.met.attestAge.WithLabelValues(string(id)).Set(s.AgeSeconds)
		}
		ok := 0.0
		if s.OK {
			ok = 1
		}
		c.met.attestOK.WithLabelValues(string(id)).Set(ok)
		out[id] = s
	}
	c.mu.Lock()
	c.attStatus = out
	c.mu.Unlock()
}

// Attestation returns the members' attestation status, or nil when the
// manifest requires no attestation.
func (c *Coordinator) Attestation() map[fl.NodeID]AttestationStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.attStatus == nil {
		return nil
	}
	out := make(map[fl.NodeID]AttestationStatus, len(c.attStatus))
	for id, s := range c.attStatus {
		out[id] = s
	}
	return out
}
