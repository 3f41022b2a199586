package coordinator

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/round"
)

// Rate limits per member.
//
// Every Hello makes the coordinator check the member's evidence (with
// attestation), record it (node-admitted, attestation-ok or node-refused)
// and, when the evidence is new, relay it to every live member (KindPeer,
// up to round.MaxEvidence each) and send the member a Welcome with everyone
// else's. Every refused message makes it record a node-refused record. So
// a member that says Hello in a loop, or sends messages the engine refuses
// in a loop, would make the coordinator write and relay without bound. The
// rates bound both, per member: over its Hello rate a Hello is dropped
// before attestation and the engine; past its refusal rate a member's
// refusals are no longer recorded one by one, and its messages other than
// Hello are dropped before the engine until the rate lets one through. What
// was dropped or not recorded in a minute is recorded once, in one
// node-refused record for that member and minute with the counts. A member
// is not disconnected for it: it would reconnect and say Hello, which costs
// the coordinator more than a dropped message.

// Default rates: far above what an honest member does. An honest node says
// Hello when its stream opens, after Idle (60 s) without hearing from the
// coordinator and at every re-attestation (1 h), and sends a handful of
// messages per round that are refused only when they cross a deadline or
// a restart.
const (
	DefaultHellosPerMinute  = 30
	DefaultRefusedPerMinute = 60
)

// Rates limit what one member can make the coordinator do per minute.
type Rates struct {
	// Hellos is how many Hellos per minute (and in a burst) of one member
	// are taken to attestation and the engine; the rest are dropped. 0
	// means DefaultHellosPerMinute; negative means no limit.
	Hellos int
	// Refused is how many refused messages per minute (and in a burst) of
	// one member are recorded one by one in the audit log; past it, the
	// member's messages other than Hello are dropped before the engine
	// until the rate allows one again. 0 means DefaultRefusedPerMinute;
	// negative means no limit.
	Refused int
}

func (r Rates) orDefault() Rates {
	if r.Hellos == 0 {
		r.Hellos = DefaultHellosPerMinute
	}
	if r.Refused == 0 {
		r.Refused = DefaultRefusedPerMinute
	}
	return r
}

// bucket is a token bucket: it holds up to burst tokens and gains
// perMinute tokens a minute. It is pure: time is passed in.
type bucket struct {
	perMinute int // ≤ 0: no limit
	tokens    float64
	last      time.Time
}

func newBucket(perMinute int, now time.Time) bucket {
	return bucket{perMinute: perMinute, tokens: float64(perMinute), last: now}
}

func (b *bucket) refill(now time.Time) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(float64(b.perMinute), b.tokens+d.Minutes()*float64(b.perMinute))
		b.last = now
	}
}

// take takes a token if there is one.
func (b *bucket) take(now time.Time) bool {
	if b.perMinute <= 0 {
		return true
	}
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// empty reports whether the bucket holds no token now.
func (b *bucket) empty(now time.Time) bool {
	if b.perMinute <= 0 {
		return false
	}
	b.refill(now)
	return b.tokens < 1
}

// limitWindow is what a member had dropped or not recorded in the minute
// that started at start.
type limitWindow struct {
	start      time.Time
	hellos     int // Hellos dropped
	messages   int // other messages dropped
	unrecorded int // refusals not recorded one by one
}

func (w *limitWindow) total() int { return w.hellos + w.messages + w.unrecorded }

// limiter applies the Rates to each member and keeps, per member, the
// window of what it dropped. It is pure (time is passed in) and owned by
// the loop goroutine.
type limiter struct {
	rates   Rates
	hellos  map[fl.NodeID]*bucket
	refused map[fl.NodeID]*bucket
	windows map[fl.NodeID]*limitWindow
}

// limitWindowLength is how long a window of drops lasts: one summary
// record and one warning per member per window.
const limitWindowLength = time.Minute

func newLimiter(r Rates) *limiter {
	return &limiter{rates: r.orDefault(), hellos: map[fl.NodeID]*bucket{}, refused: map[fl.NodeID]*bucket{},
		windows: map[fl.NodeID]*limitWindow{}}
}

func (l *limiter) bucketOf(m map[fl.NodeID]*bucket, perMinute int, id fl.NodeID, now time.Time) *bucket {
	b := m[id]
	if b == nil {
		nb := newBucket(perMinute, now)
		b = &nb
		m[id] = b
	}
	return b
}

// window returns id's open window, opening one at now if it has none; new
// reports that it was opened now (the caller warns once per window).
func (l *limiter) window(id fl.NodeID, now time.Time) (w *limitWindow, opened bool) {
	if w = l.windows[id]; w != nil {
		return w, false
	}
	w = &limitWindow{start: now}
	l.windows[id] = w
	return w, true
}

// hello reports whether a Hello of id may go on; a Hello that may not is
// counted in id's window. opened reports that the drop opened a window.
func (l *limiter) hello(id fl.NodeID, now time.Time) (ok, opened bool) {
	if l.bucketOf(l.hellos, l.rates.Hellos, id, now).take(now) {
		return true, false
	}
	w, opened := l.window(id, now)
	w.hellos++
	return false, opened
}

// message reports whether a message of id other than a Hello may go on:
// not while id's refusal budget is spent. A message that may not is
// counted in id's window.
func (l *limiter) message(id fl.NodeID, now time.Time) (ok, opened bool) {
	if !l.bucketOf(l.refused, l.rates.Refused, id, now).empty(now) {
		return true, false
	}
	w, opened := l.window(id, now)
	w.messages++
	return false, opened
}

// refusal reports whether a refusal of id is recorded one by one; one that
// is not is counted in id's window.
func (l *limiter) refusal(id fl.NodeID, now time.Time) (ok, opened bool) {
	if l.bucketOf(l.refused, l.rates.Refused, id, now).take(now) {
		return true, false
	}
	w, opened := l.window(id, now)
	w.unrecorded++
	return false, opened
}

// limitSummary is one member's window, ended.
type limitSummary struct {
	node fl.NodeID
	limitWindow
}

// reason is the summary's audit reason (well under audit.MaxReason).
func (s limitSummary) reason(r Rates) string {
	return fmt.Sprintf("rate limit (%d Hellos, %d refusals a minute): in the minute from %s, %d Hellos and %d messages dropped, %d refusals not recorded",
		r.Hellos, r.Refused, s.start.UTC().Format(time.RFC3339), s.hellos, s.messages, s.unrecorded)
}

// due ends the windows that are a minute old at now and returns them, in
// member order.
func (l *limiter) due(now time.Time) []limitSummary {
	var out []limitSummary
	for _, id := range slices.Sorted(maps.Keys(l.windows)) {
		w := l.windows[id]
		if now.Sub(w.start) < limitWindowLength {
			continue
		}
		delete(l.windows, id)
		if w.total() > 0 {
			out = append(out, limitSummary{node: id, limitWindow: *w})
		}
	}
	return out
}

// allow applies id's rates to message m before anything else sees it: a
// Hello over the Hello rate, or another message while id's refusal budget
// is spent, is dropped (counted, warned once per window).
func (c *Coordinator) allow(id fl.NodeID, m round.Message) bool {
	now := c.cfg.Now()
	what := "message"
	ok, opened := false, false
	if m.Kind == round.KindHello {
		what = "hello"
		ok, opened = c.lim.hello(id, now)
	} else {
		ok, opened = c.lim.message(id, now)
	}
	if ok {
		return true
	}
	c.met.limited.WithLabelValues(what).Inc()
	c.warnLimited(id, opened, "dropped a "+what+" over the member's rate limit", "kind", m.Kind.String(), "round", m.Round)
	return false
}

// recordRefusal reports whether a refusal of id is recorded (audited and
// logged) one by one; one that is not is counted in the window's summary.
func (c *Coordinator) recordRefusal(id fl.NodeID) bool {
	ok, opened := c.lim.refusal(id, c.cfg.Now())
	if !ok {
		c.met.limited.WithLabelValues("unrecorded").Inc()
		c.warnLimited(id, opened, "a refusal over the member's rate limit is not recorded one by one")
	}
	return ok
}

func (c *Coordinator) warnLimited(id fl.NodeID, opened bool, msg string, args ...any) {
	if !opened {
		return
	}
	r := c.lim.rates
	c.log.Warn(msg+"; what is dropped or not recorded this minute is recorded as one summary at its end",
		append([]any{"member", id, "hellos_per_minute", r.Hellos, "refused_per_minute", r.Refused}, args...)...)
}

// recordLimits records one node-refused summary for each member whose
// window of drops ended by now.
func (c *Coordinator) recordLimits(now time.Time) error {
	for _, s := range c.lim.due(now) {
		c.log.Warn("rate limit summary", "member", s.node, "from", s.start, "hellos_dropped", s.hellos,
			"messages_dropped", s.messages, "refusals_unrecorded", s.unrecorded)
		e := auditEntry{kind: audit.NodeRefused, data: audit.Data{Node: nodeOrEmpty(s.node), Reason: audit.Reason(s.reason(c.lim.rates))}}
		if err := audit.ValidateData(e.kind, e.data); err != nil {
			c.log.Error("cannot record an audit event", "kind", e.kind, "err", err)
			continue
		}
		if err := c.appendAudit(e); err != nil {
			return fmt.Errorf("coordinator: audit log: %w", err)
		}
	}
	return nil
}
