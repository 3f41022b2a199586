package coordinator

import (
	"errors"
	"fmt"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
)

// Mode tee's aggregator (cloister aggregator) connects like a member, with
// a node certificate the manifest lists as its aggregator. Its Hello
// evidence must pass the manifest's aggregator policy on this end of its
// stream, bound to the stream's nonce and TLS keying material, before the
// engine sees it and relays it to the members, each of which verifies it
// again itself. A refused Hello is audited (the engine's rejected event)
// and logged; the engine then starts no key setup, so nothing is sealed to
// an aggregator whose evidence failed.
//
// The aggregator re-attests on its stream with new keys (a fresh nonce it
// asks for, then a Hello), which the coordinator checks the same way; the
// engine then re-keys the members at its next round boundary. Evidence
// the engine holds that gets older than the aggregator policy's max_age
// expires: logged, audited (node-refused, "aggregator attestation
// expired"), counted (attestations_total{result="expired"}), and the
// engine starts no round and no key setup until the aggregator's next
// Hello passes (round.Coordinator.AggregatorExpired). It is checked before
// every input the loop hands the engine, so no round starts on expired
// evidence.

// isAggregator reports whether id is the manifest's aggregator, whose
// messages the engine takes.
func (c *Coordinator) isAggregator(id fl.NodeID) bool {
	a := c.manifest().Aggregator
	return a != nil && a.Name == string(id) && c.aggTEE != nil
}

// admitAggregator checks the aggregator's Hello before the engine sees it.
func (c *Coordinator) admitAggregator(id fl.NodeID, m round.Message) bool {
	a := c.att[id]
	if a == nil {
		a = &attestation{}
		c.att[id] = a
	}
	now := c.cfg.Now()
	claims, err := c.verifyAggregatorHello(id, a, m.Evidence, now)
	if err != nil {
		reason := "aggregator attestation: " + err.Error()
		c.log.Warn("refused the aggregator's evidence", "aggregator", id, "check", attestResult(err), "err", err)
		a.lastErr, a.failed, a.claims = reason, now, nil
		c.rc.Refuse(id, reason, nil) // audited; the engine relays nothing of a non-member's
		c.met.rejected.WithLabelValues("attestation").Inc()
		c.met.attestations.WithLabelValues(attestResult(err)).Inc()
		return false
	}
	c.log.Info("the aggregator's attestation verified", "aggregator", id, "format", claims.Format, "measurement", claims.Measurement,
		"tcb", claims.TCB, "evidence_bytes", len(m.Evidence))
	c.met.attestations.WithLabelValues("ok").Inc()
	a.evidence, a.claims, a.verified, a.lastErr = m.Evidence, claims, now, ""
	a.okGen, a.okStream = a.gen, a.stream
	a.count++
	c.aggAttested = claims.Time
	return true
}

// expireAggregator tells the engine once the aggregator's evidence that
// it holds (the newest that passed) is older than the aggregator policy's
// MaxAge at now: it did not re-attest in time.
func (c *Coordinator) expireAggregator(now time.Time) {
	if c.aggTEE == nil || c.aggAttested.IsZero() {
		return
	}
	maxAge := time.Duration(c.aggTEE.Policy().MaxAge)
	if now.Sub(c.aggAttested) <= maxAge {
		return
	}
	id := fl.NodeID(c.manifest().Aggregator.Name)
	err := &attest.AgeError{Time: c.aggAttested, Now: now, MaxAge: maxAge}
	c.aggAttested = time.Time{}
	if c.rc.Status().Phase == round.PhaseDone {
		return
	}
	reason := "aggregator attestation expired: " + err.Error()
	c.log.Warn("the aggregator's evidence expired: no round or key setup starts until it re-attests", "aggregator", id, "err", err)
	if a := c.att[id]; a != nil {
		a.lastErr, a.failed = reason, now
	}
	c.rc.AggregatorExpired(reason) // audited
	c.met.attestations.WithLabelValues("expired").Inc()
}

// verifyAggregatorHello checks the aggregator's Hello evidence: its
// envelope signed by the aggregator's audit key, and TEE evidence on this
// stream that passes the aggregator's policy.
func (c *Coordinator) verifyAggregatorHello(id fl.NodeID, a *attestation, b []byte, now time.Time) (*attest.Claims, error) {
	e, err := pki.VerifyHello(b, id, c.session, c.manifest().Aggregator.AuditKey)
	if err != nil {
		return nil, err
	}
	if len(e.TEE) == 0 {
		return nil, fmt.Errorf("the aggregator's Hello evidence carries no TEE evidence; its policy requires formats %v", c.aggTEE.Policy().Formats)
	}
	if a.nonce == nil {
		return nil, errors.New("no nonce was issued on this stream")
	}
	want := attest.Binding{Nonce: a.nonce, EKM: a.ekm, HPKEPub: e.HPKE, SignPub: e.Sign}
	return c.aggTEE.Verify(e.TEE, want, now)
}
