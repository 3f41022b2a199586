package coordinator

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/fl"
)

// TestDashboardRounds: a long history lists its last dashboardRounds rounds,
// newest first, and points to /rounds for the rest; an aborted round shows
// its reason, escaped, and no ε; a committed one its ε.
func TestDashboardRounds(t *testing.T) {
	const n = dashboardRounds + 7
	h := &History{Rounds: n, Privacy: &Privacy{Budget: 8, Delta: 1e-5, MaxRound: n}}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for r := fl.Round(1); r <= n; r++ {
		acc, loss := 0.5+float64(r)/1000, 1/float64(r)
		ri := RoundInfo{Round: r, Outcome: "committed", Leader: "node-1", Included: []fl.NodeID{"node-1", "node-2"},
			Started: t0, Ended: t0.Add(time.Second), Seconds: 1, Phases: map[string]float64{PhaseCollect: 0.5, PhaseReveal: 0.25},
			BytesUp: 3 << 20, BytesDown: 1536, Accuracy: &acc, Loss: &loss, Epsilon: 0.1, EpsilonTotal: 0.1 * float64(r)}
		if r == n-1 {
			ri = RoundInfo{Round: r, Outcome: "aborted", Reason: `node-2 is excluded (<i>x</i>)`, Started: t0, Ended: t0.Add(time.Second)}
		}
		h.History = append(h.History, ri)
	}
	d := newDashboard(statusDoc{Members: []fl.NodeID{"node-1", "node-2"}}, h, t0)
	if len(d.Rounds) != dashboardRounds || d.Older != n-dashboardRounds {
		t.Fatalf("%d rounds listed, %d older, want %d and %d", len(d.Rounds), d.Older, dashboardRounds, n-dashboardRounds)
	}
	if d.Rounds[0].Round != n || d.Rounds[dashboardRounds-1].Round != n-dashboardRounds+1 {
		t.Errorf("rounds %d … %d listed, want %d … %d", d.Rounds[0].Round, d.Rounds[dashboardRounds-1].Round, n, n-dashboardRounds+1)
	}
	last := d.Rounds[0]
	want := roundRow{Round: n, Outcome: "committed", Leader: "node-1", Included: 2, Accuracy: fmt.Sprintf("%.4f", 0.5+float64(n)/1000),
		Loss: fmt.Sprintf("%.4f", 1/float64(n)), Collect: "0.50", Reveal: "0.25", Commit: "–", Evaluate: "–", Seconds: "1.00",
		Up: "3.0 MiB", Down: "1.5 KiB", Epsilon: "0.1", EpsilonTotal: fmt.Sprintf("%.4g", 0.1*float64(n))}
	if last != want {
		t.Errorf("round %d: %+v, want %+v", n, last, want)
	}
	if ab := d.Rounds[1]; ab.Outcome != "aborted" || ab.Epsilon != "" || ab.Accuracy != "–" {
		t.Errorf("aborted round: %+v", ab)
	}
	if !strings.Contains(d.Privacy, fmt.Sprintf("ε spent %.4g of 8", 0.1*float64(n))) {
		t.Errorf("privacy %q", d.Privacy)
	}

	p := render(t, d)
	for _, s := range []string{`<span class="aborted">aborted</span>: <span class="err">node-2 is excluded (&lt;i&gt;x&lt;/i&gt;)</span>`,
		fmt.Sprintf(`%d earlier rounds not listed: see <a href="/rounds">/rounds</a>`, n-dashboardRounds)} {
		if !strings.Contains(p, s) {
			t.Errorf("the page lacks %q", s)
		}
	}
	if strings.Contains(p, "<i>") {
		t.Error("an abort reason reached the page unescaped")
	}
	// The charts draw every committed round, not only the rounds listed.
	checkCharts(t, p, map[string]int{"accuracy": n - 1, "loss": n - 1, "epsilon": n - 1})
	if !strings.Contains(p, fmt.Sprintf("ε %.4g of the budget 8 after round %d", 0.1*float64(n), n)) {
		t.Error("the ε chart's caption does not give the total against the budget")
	}
}

// checkCharts checks that the page has exactly the charts want names, each
// an inline SVG with want's number of points, and no script.
func checkCharts(t *testing.T, page string, want map[string]int) {
	t.Helper()
	if n := strings.Count(page, "<svg"); n != len(want) {
		t.Errorf("%d SVG charts on the page, want %d", n, len(want))
	}
	if strings.Contains(strings.ToLower(page), "<script") {
		t.Error("the page holds a script element")
	}
	for id, points := range want {
		i := strings.Index(page, `<figure id="chart-`+id+`">`)
		if i < 0 {
			t.Errorf("no %s chart", id)
			continue
		}
		fig := page[i : i+strings.Index(page[i:], "</figure>")]
		if !strings.Contains(fig, "<svg") {
			t.Errorf("the %s chart has no SVG:\n%s", id, fig)
		}
		if n := strings.Count(fig, "<circle"); n != points {
			t.Errorf("the %s chart has %d points, want %d", id, n, points)
		}
		if !strings.Contains(fig, ">round</text>") || (id != "epsilon" && !strings.Contains(fig, "<figcaption>min ")) {
			t.Errorf("the %s chart has no round axis or no min/max caption:\n%s", id, fig)
		}
	}
}

// render executes the dashboard template on d.
func render(t *testing.T, d *dashboard) string {
	t.Helper()
	tm, err := dashboardTemplate()
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	if err := tm.Execute(&page, d); err != nil {
		t.Fatal(err)
	}
	return page.String()
}

// TestDashboardCharts: the charts of a history with no round, with only an
// aborted round, with one committed round (with and without DP, with and
// without metrics yet).
func TestDashboardCharts(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	acc, loss := 0.75, 0.5
	one := RoundInfo{Round: 1, Outcome: "committed", Leader: "node-1", Started: t0, Ended: t0.Add(time.Second), Seconds: 1,
		Accuracy: &acc, Loss: &loss, Epsilon: 1.5, EpsilonTotal: 1.5}
	noMetrics := one
	noMetrics.Accuracy, noMetrics.Loss = nil, nil
	aborted := RoundInfo{Round: 1, Outcome: "aborted", Reason: "quorum not reached", Started: t0, Ended: t0.Add(time.Second)}
	dp := &Privacy{Budget: 8, Delta: 1e-5, MaxRound: 5}
	for _, tc := range []struct {
		name   string
		h      History
		want   map[string]int
		phrase string
	}{
		{"no round", History{History: []RoundInfo{}}, map[string]int{}, "No committed round yet: the charts of accuracy, loss per round"},
		{"no round, DP", History{Privacy: dp}, map[string]int{}, "No committed round yet: the charts of accuracy, loss and ε per round"},
		{"aborted", History{History: []RoundInfo{aborted}, Privacy: dp}, map[string]int{}, "No committed round yet"},
		{"one round", History{History: []RoundInfo{one}}, map[string]int{"accuracy": 1, "loss": 1},
			"No ε chart: no differential privacy in the manifest"},
		{"one round, DP", History{History: []RoundInfo{aborted, {Round: 2, Outcome: "committed", Accuracy: &acc, Loss: &loss, EpsilonTotal: 2.25}}, Privacy: dp},
			map[string]int{"accuracy": 1, "loss": 1, "epsilon": 1}, "ε 2.25 of the budget 8 after round 2, at δ = 1e-05"},
		{"no metrics yet", History{History: []RoundInfo{noMetrics}, Privacy: dp}, map[string]int{"epsilon": 1},
			"no node has reported metrics for a committed model yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDashboard(statusDoc{Members: []fl.NodeID{"node-1"}}, &tc.h, t0)
			p := render(t, d)
			checkCharts(t, p, tc.want)
			if !strings.Contains(p, tc.phrase) {
				t.Errorf("the page does not say %q", tc.phrase)
			}
			if tc.name == "one round" && !strings.Contains(p, "min 0.7500 (round 1) · max 0.7500 (round 1) · last 0.7500 (round 1) · 1 round") {
				t.Error("no min/max caption for the accuracy chart")
			}
		})
	}
}
