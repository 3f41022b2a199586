package coordinator

import (
	"bytes"
	"cmp"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/store"
)

// The dashboard.
//
// GET / on the metrics server is one server-rendered HTML page for a person
// to read: the session, the policy's warnings, charts of accuracy, loss and
// ε per round (inline SVG, chart.go), the members with their attestation,
// the rounds and the privacy budget. It renders the /status document
// (statusDoc) and the /rounds document (History), the values the JSON
// endpoints encode, so that the page and the JSON cannot disagree.
// Everything on it goes through html/template's contextual escaping (node
// names, evidence errors and abort reasons can hold what a member sent),
// except the charts' SVG, which package plot draws from numbers and our
// own labels, escaping its text itself.

// statusDoc is the /status document.
type statusDoc struct {
	Federation string      `json:"federation"`
	Session    string      `json:"session"`
	Mode       string      `json:"mode"`
	Preset     string      `json:"preset,omitempty"`
	Warnings   []string    `json:"warnings,omitempty"` // the mode's (plain); attestation has its own
	Members    []fl.NodeID `json:"members"`            // in manifest order

	Phase         string      `json:"phase"`
	Epoch         uint64      `json:"epoch"`
	Round         fl.Round    `json:"round"`
	Commits       int         `json:"commits"`
	LastCommitted fl.Round    `json:"last_committed"`
	Live          []fl.NodeID `json:"live"`
	Cohort        []fl.NodeID `json:"cohort"`
	Leader        fl.NodeID   `json:"leader"`
	Connected     []fl.NodeID `json:"connected"`
	// Keyed are the live members that hold a party of the current key
	// epoch; Excluded the members excluded (attestation failed or expired),
	// with the reason.
	Keyed    []fl.NodeID          `json:"keyed"`
	Excluded map[fl.NodeID]string `json:"excluded,omitempty"`

	Attestation attestationDoc `json:"attestation"`
	Messages    messageDoc     `json:"messages"`
}

// attestationDoc is the attestation part of /status: whether it is
// required, what operators must see about the policy, and each member's
// status.
type attestationDoc struct {
	Required bool                            `json:"required"`
	Formats  []string                        `json:"formats,omitempty"`
	MaxAge   string                          `json:"max_age,omitempty"`
	Warnings []string                        `json:"warnings"`
	Nodes    map[fl.NodeID]AttestationStatus `json:"nodes,omitempty"`
}

// messageDoc is the message limit (computed from the manifest) and the
// largest messages received and sent.
type messageDoc struct {
	MaxMessage uint64 `json:"max_message"`
	LargestIn  uint64 `json:"largest_in"`
	LargestOut uint64 `json:"largest_out"`
}

// warnAttestationOff is the attestation warning of a manifest without a policy.
const warnAttestationOff = "INSECURE: attestation is off: nothing proves what code the members run"

// statusDoc returns the /status document.
func (c *Coordinator) statusDoc() statusDoc {
	st := c.Status()
	d := statusDoc{Federation: c.manifest().Federation, Session: c.sessionName(), Mode: c.scheme.Name(), Preset: c.manifest().Preset,
		Members: c.manifest().Nodes(), Phase: st.Phase.String(), Epoch: st.Epoch, Round: st.Round, Commits: st.Commits,
		LastCommitted: st.LastCommitted, Live: st.Live, Cohort: st.Cohort, Leader: st.Leader, Connected: c.srv.Connected(),
		Keyed: st.Keyed, Excluded: st.Exclusions,
		Messages: messageDoc{MaxMessage: uint64(c.cfg.Limits.MaxMessage), LargestIn: c.tm.LargestIn.Load(), LargestOut: c.tm.LargestOut.Load()}}
	if d.Mode == plain.Name {
		d.Warnings = []string{plain.Warning}
	}
	if c.manifest().InsecureAttacks {
		d.Warnings = append(d.Warnings, federation.WarnInsecureAttacks)
	}
	if !c.manifest().AttestationRequired() {
		d.Attestation = attestationDoc{Warnings: []string{warnAttestationOff}}
	} else {
		p := c.manifest().Attestation
		d.Attestation = attestationDoc{Required: true, Formats: p.Formats, MaxAge: p.MaxAge.String(), Warnings: p.Warnings(),
			Nodes: c.Attestation()}
	}
	return d
}

// dashboardRounds is how many rounds the page lists, newest first (/rounds
// has them all).
const dashboardRounds = 50

// dashboardCSP is the page's Content-Security-Policy: no script, no
// framing, nothing loaded from elsewhere. The page is its HTML, its inline
// style sheet and its inline SVG charts, which use presentation attributes.
const dashboardCSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// dashboard is what the page renders: the two documents, arranged.
type dashboard struct {
	S        statusDoc
	H        *History
	Banners  []string
	Nodes    []nodeRow
	Rounds   []roundRow
	Older    int     // rounds not listed
	DP       bool    // the rounds have an ε column
	Charts   []chart // none before the first commit
	Privacy  string
	Messages string
	Now      string
}

type nodeRow struct {
	Name                                  fl.NodeID
	Connected, Live, Keyed, Cohort, Lead  bool
	Attest                                string // ok, failed, pending, or "" when attestation is off
	Format, Measurement, Short, TCB, Age  string
	Evidence, Verified, Failed, LastError string
	Count                                 int
	Excluded                              string // the reason; "" if not excluded
}

type roundRow struct {
	Round                             fl.Round
	Outcome, Reason, Leader           string
	Included, Nodes                   int
	Accuracy, Loss                    string
	Collect, Reveal, Commit, Evaluate string
	Seconds, Up, Down                 string
	Epsilon, EpsilonTotal             string
}

// newDashboard arranges the /status and /rounds documents for the page.
func newDashboard(s statusDoc, h *History, now time.Time) *dashboard {
	d := &dashboard{S: s, H: h, Now: now.UTC().Format(time.RFC3339), DP: h.Privacy != nil}
	d.Banners = append(slices.Clone(s.Warnings), s.Attestation.Warnings...)
	for _, id := range s.Members {
		r := nodeRow{Name: id, Connected: slices.Contains(s.Connected, id), Live: slices.Contains(s.Live, id),
			Keyed: slices.Contains(s.Keyed, id), Cohort: slices.Contains(s.Cohort, id), Lead: s.Leader == id}
		if why, ok := s.Excluded[id]; ok {
			r.Excluded = cmp.Or(why, "excluded")
		}
		if s.Attestation.Required {
			a, ok := s.Attestation.Nodes[id]
			switch {
			case ok && a.OK:
				r.Attest = "ok"
			case ok && a.LastError != "":
				r.Attest = "failed"
			default:
				r.Attest = "pending"
			}
			r.Format, r.Measurement, r.Count, r.LastError = a.Format, a.Measurement, a.Count, a.LastError
			r.Short = shorten(a.Measurement, 16)
			if len(a.TCB) > 0 {
				r.TCB = strings.Trim(fmt.Sprint(a.TCB), "[]")
			}
			if !a.Time.IsZero() {
				r.Evidence = a.Time.UTC().Format(time.RFC3339)
				r.Age = (time.Duration(a.AgeSeconds * float64(time.Second))).Round(time.Second).String()
			}
			if !a.Verified.IsZero() {
				r.Verified = a.Verified.UTC().Format(time.RFC3339)
			}
			if !a.Failed.IsZero() {
				r.Failed = a.Failed.UTC().Format(time.RFC3339)
			}
		}
		d.Nodes = append(d.Nodes, r)
	}
	rs := h.History
	if n := len(rs); n > dashboardRounds {
		d.Older, rs = n-dashboardRounds, rs[n-dashboardRounds:]
	}
	for i := len(rs) - 1; i >= 0; i-- {
		d.Rounds = append(d.Rounds, newRoundRow(rs[i], d.DP))
	}
	if p := h.Privacy; p != nil {
		spent := 0.0
		for _, r := range h.History {
			if r.Outcome == store.Committed.String() && r.EpsilonTotal > spent {
				spent = r.EpsilonTotal
			}
		}
		d.Privacy = fmt.Sprintf("ε spent %.4g of %g at δ = %g (noise multiplier σ = %g, clip C = %g); the budget lets rounds up to %d start",
			spent, p.Budget, p.Delta, p.NoiseMultiplier, p.Clip, p.MaxRound)
		if p.Exhausted {
			d.Privacy += "; exhausted: the session stopped at the cap"
		}
	}
	d.Messages = fmt.Sprintf("limit %s (computed from the manifest); largest received %s, largest sent %s",
		size(s.Messages.MaxMessage), size(s.Messages.LargestIn), size(s.Messages.LargestOut))
	d.Charts = charts(h)
	return d
}

func newRoundRow(r RoundInfo, dp bool) roundRow {
	secs := func(v float64, ok bool) string {
		if !ok {
			return "–"
		}
		return fmt.Sprintf("%.2f", v)
	}
	phase := func(p string) string { v, ok := r.Phases[p]; return secs(v, ok) }
	row := roundRow{Round: r.Round, Outcome: r.Outcome, Reason: r.Reason, Leader: string(r.Leader), Included: len(r.Included),
		Nodes: r.Nodes, Accuracy: "–", Loss: "–", Collect: phase(PhaseCollect), Reveal: phase(PhaseReveal),
		Commit: phase(PhaseCommit), Evaluate: phase(PhaseEvaluate), Seconds: secs(r.Seconds, !r.Ended.IsZero()),
		Up: size(r.BytesUp), Down: size(r.BytesDown)}
	if r.Accuracy != nil {
		row.Accuracy = fmt.Sprintf("%.4f", *r.Accuracy)
	}
	if r.Loss != nil {
		row.Loss = fmt.Sprintf("%.4f", *r.Loss)
	}
	if dp && r.Outcome == store.Committed.String() {
		row.Epsilon, row.EpsilonTotal = fmt.Sprintf("%.4g", r.Epsilon), fmt.Sprintf("%.4g", r.EpsilonTotal)
	}
	return row
}

// shorten returns s cut to n characters and an ellipsis.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// size formats a byte count.
func size(b uint64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

//go:embed dashboard.html
var dashboardHTML string

var dashboardTemplate = sync.OnceValues(func() (*template.Template, error) {
	return template.New("dashboard").Parse(dashboardHTML)
})

// serveDashboard renders the page. It renders into a buffer first, so that
// a failure is a clean 500 rather than half a page.
func (c *Coordinator) serveDashboard(w http.ResponseWriter, r *http.Request) {
	h, err := c.History(r.Context())
	if err != nil {
		http.Error(w, "coordinator: reading the round history: "+err.Error(), http.StatusInternalServerError)
		return
	}
	t, err := dashboardTemplate()
	if err != nil {
		http.Error(w, "coordinator: the dashboard template: "+err.Error(), http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, newDashboard(c.statusDoc(), h, c.cfg.Now())); err != nil {
		http.Error(w, "coordinator: rendering the dashboard: "+err.Error(), http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", dashboardCSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}
