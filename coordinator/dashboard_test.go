package coordinator_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/keyring"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport"
)

// get serves one GET of the coordinator's metrics server.
func (f fed) get(path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.Coord.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

// dashboard renders the dashboard and checks it is a page that runs no
// script and loads nothing.
func (f fed) dashboard() string {
	f.T.Helper()
	rec := f.get("/")
	page := rec.Body.String()
	if rec.Code != http.StatusOK {
		f.T.Fatalf("GET /: %d %s", rec.Code, page)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		f.T.Errorf("GET /: Content-Type %q", ct)
	}
	// The policy the page had before its charts: inline SVG needs no more.
	const csp = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	if got := rec.Header().Get("Content-Security-Policy"); got != csp {
		f.T.Errorf("GET /: Content-Security-Policy %q, want %q", got, csp)
	}
	if strings.Contains(strings.ToLower(page), "<script") {
		f.T.Errorf("the dashboard holds a script element:\n%s", page)
	}
	return page
}

// figure returns the page's chart id (accuracy, loss, epsilon).
func figure(t *testing.T, page, id string) string {
	t.Helper()
	i := strings.Index(page, `<figure id="chart-`+id+`">`)
	if i < 0 {
		t.Fatalf("no %s chart on the page", id)
	}
	return page[i : i+strings.Index(page[i:], "</figure>")]
}

// statusJSON is the part of /status the dashboard tests compare with the page.
type statusJSON struct {
	Members     []fl.NodeID          `json:"members"`
	Keyed       []fl.NodeID          `json:"keyed"`
	Excluded    map[fl.NodeID]string `json:"excluded"`
	Attestation struct {
		Required bool     `json:"required"`
		Warnings []string `json:"warnings"`
		Nodes    map[fl.NodeID]struct {
			Format      string `json:"format"`
			Measurement string `json:"measurement"`
			OK          bool   `json:"ok"`
			LastError   string `json:"last_error"`
		} `json:"nodes"`
	} `json:"attestation"`
}

func (f fed) statusJSON() statusJSON {
	f.T.Helper()
	var s statusJSON
	if err := json.Unmarshal(f.get("/status").Body.Bytes(), &s); err != nil {
		f.T.Fatalf("/status: %v", err)
	}
	return s
}

// row returns the page's table row of member id.
func row(t *testing.T, page string, id fl.NodeID) string {
	t.Helper()
	i := strings.Index(page, "<td><code>"+string(id)+"</code>")
	if i < 0 {
		t.Fatalf("no row for %s in the dashboard:\n%s", id, page)
	}
	j := strings.Index(page[i:], "</tr>")
	if j < 0 {
		t.Fatalf("the row of %s does not end", id)
	}
	return page[i : i+j]
}

// banners checks that the page shows each warning as a banner, and nothing
// else as one.
func banners(t *testing.T, page string, warnings []string) {
	t.Helper()
	if n := strings.Count(page, `class="banner"`); n != len(warnings) {
		t.Errorf("%d banners on the page, want %d: %q", n, len(warnings), warnings)
	}
	for _, w := range warnings {
		if !strings.Contains(page, `role="alert">`+template.HTMLEscapeString(w)+"</div>") {
			t.Errorf("no banner %q on the page", w)
		}
	}
}

// TestDashboardAttestation renders the dashboard of a federation that
// requires sim evidence: node-1 runs on a good TEE; a rogue with node-3's
// certificate sends evidence that names a node whose name is HTML. The
// page flags the sim policy, shows node-1's attestation and node-3's
// exclusion with the coordinator's reason, escaped, as /status has them.
func TestDashboardAttestation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var good [48]byte
		rand.Read(good[:])
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, MinCohort: 3, Mode: federation.ModeMHE, Preset: "InsecureTest", DP: &federation.DP{},
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 2, LocalEpochs: 1, Batch: 16, LearningRate: 0.1},
			Attestation: simPolicy(good, time.Hour)})}
		f.NodeConfig = func(name string, c *node.Config) { c.TEE = attest.NewSimTEE(good, "") }
		f.StartCoordinator() // node-1 and the coordinator stop at Cleanup
		f.StartNode("node-1", fedtest.Blobs(120, 6, 3, 1), fedtest.Blobs(90, 6, 3, 99))
		f.WaitStatus("node-1 live", func(s round.Status) bool { return len(s.Live) == 1 })

		kit3 := f.Kits["node-3"]
		rogue := f.DialAs("node-3", transport.ClientConfig{})
		fedtest.Drain(rogue)
		session, _ := f.Kits["coordinator"].Manifest.Hash()
		keys, _ := keyring.NewKeys(nil)
		const evil = `<script>alert(1)</script><b onmouseover='y'>&amp;`
		hello := keys.Evidence(session[:], evil, kit3.AuditKey, time.Now(), nil)
		if err := rogue.Send(context.Background(), round.Message{Kind: round.KindHello, Session: session[:], Evidence: hello}); err != nil {
			t.Fatal(err)
		}
		f.WaitMetric(`cloister_coordinator_attestations_total{result="envelope"}`, 1)
		f.WaitStatus("node-3 excluded", func(s round.Status) bool { return len(s.Excluded) == 1 })

		page := f.dashboard()
		st := f.statusJSON()
		man := f.Kits["coordinator"].Manifest
		banners(t, page, man.Attestation.Warnings())
		if !strings.Contains(page, "SIMULATED evidence") || !st.Attestation.Required {
			t.Errorf("no sim banner, or /status says attestation is not required (%+v)", st.Attestation)
		}

		// node-3: its last error and its exclusion, both holding the rogue's
		// HTML, escaped.
		r3 := row(t, page, "node-3")
		a3, why := st.Attestation.Nodes["node-3"], st.Excluded["node-3"]
		t.Logf("node-3 excluded: %s", why)
		if a3.OK || !strings.Contains(a3.LastError, evil) || !strings.Contains(why, "<script>") {
			t.Fatalf("/status node-3: %+v, excluded %q: want a refusal quoting the rogue's name", a3, why)
		}
		for _, s := range []string{template.HTMLEscapeString(a3.LastError), `<span class="excluded">` + template.HTMLEscapeString(why) + "</span>",
			`<span class="failed">failed</span>`, "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b onmouseover=&#39;y&#39;&gt;&amp;amp;"} {
			if !strings.Contains(r3, s) {
				t.Errorf("node-3's row lacks %q:\n%s", s, r3)
			}
		}
		if strings.Contains(page, "<b ") || strings.Contains(page, evil) {
			t.Errorf("the rogue's HTML reached the page unescaped:\n%s", r3)
		}

		// node-1: its verified evidence, as /status has it.
		r1 := row(t, page, "node-1")
		a1 := st.Attestation.Nodes["node-1"]
		m := hex.EncodeToString(good[:])
		if !a1.OK || a1.Measurement != m {
			t.Fatalf("/status node-1: %+v", a1)
		}
		for _, s := range []string{`<span class="ok">ok</span>`, "<td>sim</td>", `<code title="` + m + `">` + m[:16] + "…</code>", "<td>2</td>"} {
			if !strings.Contains(r1, s) {
				t.Errorf("node-1's row lacks %q:\n%s", s, r1)
			}
		}
		if strings.Contains(r1, `class="excluded"`) {
			t.Errorf("node-1 shown excluded:\n%s", r1)
		}
		if r2 := row(t, page, "node-2"); !strings.Contains(r2, `<span class="pending">pending</span>`) {
			t.Errorf("node-2, never connected, is not pending:\n%s", r2)
		}
		if !strings.Contains(page, "No committed round yet") || strings.Contains(page, "<svg") {
			t.Error("the page of a session without a commit does not say there is nothing to chart yet")
		}
		if rec := f.get("/nothing"); rec.Code != http.StatusNotFound {
			t.Errorf("GET /nothing: %d, want 404", rec.Code)
		}
	})
}

// TestDashboardNoAttestation renders the dashboard of a plain federation
// with DP and attestation off, after two rounds: both are flagged, and the
// rounds table and the budget show what /rounds holds.
func TestDashboardNoAttestation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 2, Threshold: 2, MinCohort: 2, Mode: federation.ModePlain,
			DP:    &federation.DP{NoiseMultiplier: 3, Clip: 1, Epsilon: 8, Delta: 1e-5},
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 2, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})}
		f.StartCoordinator() // stopped at Cleanup
		f.StartNodes(2)
		f.WaitNodes(2 * time.Minute)

		page := f.dashboard()
		st := f.statusJSON()
		if st.Attestation.Required || len(st.Attestation.Warnings) != 1 || !strings.Contains(st.Attestation.Warnings[0], "attestation is off") {
			t.Errorf("/status attestation %+v", st.Attestation)
		}
		banners(t, page, []string{plain.Warning, st.Attestation.Warnings[0]})
		if strings.Contains(page, "SIMULATED") {
			t.Error("a sim banner without attestation")
		}
		for _, id := range st.Members {
			if r := row(t, page, id); !strings.Contains(r, `<span class="muted">off</span>`) {
				t.Errorf("%s's attestation is not shown off:\n%s", id, r)
			}
		}

		h, err := f.Coord.History(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(h.History) != 2 || h.Privacy == nil {
			t.Fatalf("/rounds: %d rounds, privacy %+v", len(h.History), h.Privacy)
		}
		for _, r := range h.History {
			if r.Accuracy == nil {
				t.Fatalf("round %d has no accuracy", r.Round)
			}
			want := fmt.Sprintf(`<td class="n">%d</td>
<td><span class="committed">committed</span></td>
<td>%s</td>
<td class="n">2</td>
<td class="n">%.4f</td>`, r.Round, r.Leader, *r.Accuracy)
			if !strings.Contains(page, want) {
				t.Errorf("the page has no row for round %d as /rounds has it:\n%s", r.Round, want)
			}
			if eps := fmt.Sprintf(`<td class="n">%.4g</td><td class="n">%.4g</td>`, r.Epsilon, r.EpsilonTotal); !strings.Contains(page, eps) {
				t.Errorf("round %d: no ε cells %s", r.Round, eps)
			}
		}
		spent := fmt.Sprintf("ε spent %.4g of 8 at δ = 1e-05", h.History[1].EpsilonTotal)
		if !strings.Contains(page, spent) {
			t.Errorf("the page does not say %q", spent)
		}
		// The charts: accuracy, loss and ε of both rounds, with /rounds' last values.
		last := h.History[1]
		for id, want := range map[string]string{"accuracy": fmt.Sprintf("last %.4f (round 2)", *last.Accuracy),
			"loss": fmt.Sprintf("last %.4f (round 2)", *last.Loss), "epsilon": fmt.Sprintf("ε %.4g of the budget 8 after round 2", last.EpsilonTotal)} {
			if fig := figure(t, page, id); strings.Count(fig, "<circle") != 2 || !strings.Contains(fig, want) {
				t.Errorf("the %s chart does not draw 2 rounds or lacks %q:\n%s", id, want, fig)
			}
		}
		if n := strings.Count(page, "<svg"); n != 3 {
			t.Errorf("%d charts, want 3", n)
		}
		// Newest first.
		if strings.Index(page, `<td class="n">2</td>
<td><span class="committed">`) > strings.Index(page, `<td class="n">1</td>
<td><span class="committed">`) {
			t.Error("round 1 is listed before round 2")
		}
	})
}
