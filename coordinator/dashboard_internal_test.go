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

	tm, err := dashboardTemplate()
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	if err := tm.Execute(&page, d); err != nil {
		t.Fatal(err)
	}
	p := page.String()
	for _, s := range []string{`<span class="aborted">aborted</span>: <span class="err">node-2 is excluded (&lt;i&gt;x&lt;/i&gt;)</span>`,
		fmt.Sprintf(`%d earlier rounds not listed: see <a href="/rounds">/rounds</a>`, n-dashboardRounds)} {
		if !strings.Contains(p, s) {
			t.Errorf("the page lacks %q", s)
		}
	}
	if strings.Contains(p, "<i>") {
		t.Error("an abort reason reached the page unescaped")
	}
}
