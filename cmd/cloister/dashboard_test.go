package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/pki"
)

// TestMetricsRefusesOpenNonLoopback: without --metrics-tls or
// --metrics-token the coordinator serves its dashboard only on a loopback
// address; a token file others can read, or a short one, is refused.
func TestMetricsRefusesOpenNonLoopback(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fed")
	if err := pki.InitFederation(dir, pki.InitOptions{Nodes: 2, Threshold: 2, Federation: "test", Mode: federation.ModePlain, DP: &federation.DP{},
		Model: federation.ModelSpec{Kind: "softmax", Inputs: 4, Classes: 2}, Training: federation.Training{Rounds: 1, LocalEpochs: 1, Batch: 8, LearningRate: 0.1}},
		time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	listen, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	coord := func(extra ...string) string {
		var out, errw bytes.Buffer
		args := append([]string{"coordinator", "--kit", filepath.Join(dir, pki.CoordinatorDir), "--listen", listen,
			"--state", filepath.Join(t.TempDir(), "state")}, extra...)
		err := run(args, nil, &out, &errw)
		if err == nil {
			t.Fatalf("coordinator %q started", extra)
		}
		var b bytes.Buffer
		report(&b, err)
		return b.String()
	}
	msg := coord("--metrics", "0.0.0.0:0")
	t.Logf("--metrics 0.0.0.0:0:\n%s", msg)
	if !strings.Contains(msg, "only a loopback address") || !strings.Contains(msg, "--metrics-tls") {
		t.Errorf("no clear refusal:\n%s", msg)
	}
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("0123456789abcdef0123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	msg = coord("--metrics", "127.0.0.1:0", "--metrics-token", tok)
	t.Logf("world-readable token:\n%s", msg)
	if !strings.Contains(msg, "others can read the token") || !strings.Contains(msg, "chmod 600") {
		t.Errorf("world-readable token file not refused clearly:\n%s", msg)
	}
	if err := os.WriteFile(tok+"2", []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if msg := coord("--metrics", "127.0.0.1:0", "--metrics-token", tok+"2"); !strings.Contains(msg, "at least 16 characters") {
		t.Errorf("short token not refused:\n%s", msg)
	}
	for addr, want := range map[string]bool{"127.0.0.1:9": true, "localhost:9": true, "[::1]:9": true, ":9": false, "0.0.0.0:9": false, "10.0.0.1:9": false, "example.org:9": false} {
		if got := loopbackAddr(addr); got != want {
			t.Errorf("loopbackAddr(%q) = %v", addr, got)
		}
	}
}

// tlsClient returns an HTTPS client that trusts the federation CA in fed
// and presents the certificate in certDir (cert.pem, key.pem), if any.
func tlsClient(t *testing.T, fed, certDir string) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(fed, pki.CoordinatorDir, pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate")
	}
	// The coordinator's certificate names localhost and 127.0.0.1; the
	// tests also reach it at this machine's other addresses.
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "127.0.0.1"}
	if certDir != "" {
		pair, err := tls.LoadX509KeyPair(filepath.Join(certDir, pki.CertFile), filepath.Join(certDir, pki.KeyFile))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}, Timeout: 10 * time.Second}
}

type fetched struct {
	code int
	body string
	err  error
}

func fetch(c *http.Client, method, url, token string) fetched {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return fetched{err: err}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fetched{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fetched{code: resp.StatusCode, body: string(b)}
}

// TestDashboardAccess runs a 3-node federation of real processes whose
// coordinator serves its metrics listener with --metrics-tls and
// --metrics-token on all addresses, then fetches the dashboard from
// 127.0.0.1 and (when the machine has one) another address of this
// machine: without a certificate it is refused, with a member's node
// certificate the handshake is refused, with an observer certificate
// (cloister ca issue --role observer) it renders; the token reads
// /metrics and nothing else. The browser subtest loads the page in
// headless chromium.
func TestDashboardAccess(t *testing.T) {
	f := newTestFedWith(t, 3, 2, 3, 1, func(o *pki.InitOptions) {
		o.DP = &federation.DP{NoiseMultiplier: 1, Clip: 1, Epsilon: 50, Delta: 1e-5}
	})
	fedDir := filepath.Join(f.dir, "fed")
	var out bytes.Buffer
	if err := run([]string{"ca", "issue", "--role", "observer", "--dir", fedDir, "alice"}, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	t.Logf("cloister ca issue --role observer --dir fed alice:\n%s", out.String())
	observer := filepath.Join(fedDir, "observer-alice")
	token := "s3cret-token-for-prometheus-0123"
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(f.metrics)
	f.coordArgs = append(f.coordArgs, "--metrics-tls", "--metrics-token", tokenFile)
	f.metricsClient = tlsClient(t, fedDir, observer)
	f.startAll()
	f.wait(3*time.Minute, "the session's end", func(s fedStatus) bool { return s.Phase == "done" })
	for _, n := range f.names {
		select {
		case <-f.proc(n).done:
		case <-time.After(time.Minute):
			t.Fatalf("%s still running", n)
		}
	}

	// Tests reach only loopback addresses: the rule does not depend on the
	// client's address once the listener serves TLS (a non-loopback
	// listener without TLS is refused at start: TestMetricsRefusesOpenNonLoopback).
	hosts := []string{"127.0.0.1"}
	none, member, obs := tlsClient(t, fedDir, ""), tlsClient(t, fedDir, filepath.Join(fedDir, "node-1")), tlsClient(t, fedDir, observer)
	var page string
	for _, h := range hosts {
		base := "https://" + net.JoinHostPort(h, port)
		if r := fetch(none, "GET", base+"/", ""); r.err != nil || r.code != http.StatusUnauthorized {
			t.Errorf("%s/ without a certificate: %d %v, want 401", base, r.code, r.err)
		} else {
			t.Logf("%s/ without a certificate: %d %s", base, r.code, strings.TrimSpace(r.body))
		}
		if r := fetch(none, "GET", "http://"+net.JoinHostPort(h, port)+"/", ""); r.err == nil && r.code == http.StatusOK {
			t.Errorf("plain HTTP served the dashboard")
		}
		if r := fetch(member, "GET", base+"/", ""); r.err == nil {
			t.Errorf("%s/ with node-1's member certificate: %d, want the handshake refused", base, r.code)
		} else {
			t.Logf("%s/ with node-1's member certificate: %v", base, r.err)
		}
		r := fetch(obs, "GET", base+"/", "")
		if r.err != nil || r.code != http.StatusOK {
			t.Fatalf("%s/ with the observer certificate: %d %v\n%s", base, r.code, r.err, r.body)
		}
		page = r.body
		for _, p := range []string{"/status", "/rounds", "/metrics"} {
			if r := fetch(obs, "GET", base+p, ""); r.code != http.StatusOK {
				t.Errorf("observer %s: %d %v", p, r.code, r.err)
			}
		}
		if r := fetch(obs, "POST", base+"/", ""); r.code != http.StatusMethodNotAllowed {
			t.Errorf("observer POST /: %d %v, want 405", r.code, r.err)
		}
		if r := fetch(none, "GET", base+"/metrics", token); r.code != http.StatusOK || !strings.Contains(r.body, "cloister_coordinator_rounds_total") {
			t.Errorf("token /metrics: %d %v", r.code, r.err)
		}
		if r := fetch(none, "GET", base+"/", token); r.code != http.StatusForbidden {
			t.Errorf("token /: %d %v, want 403", r.code, r.err)
		}
		if r := fetch(none, "GET", base+"/metrics", token+"x"); r.code != http.StatusUnauthorized {
			t.Errorf("wrong token /metrics: %d %v, want 401", r.code, r.err)
		}
	}
	checkDashboard(t, page, f.names)

	t.Run("browser", func(t *testing.T) {
		// Headless chromium cannot be handed a client certificate without
		// an NSS database and a policy file, so it loads the page through
		// a reverse proxy on 127.0.0.1 that fetches it over mTLS with the
		// observer certificate: the browser renders exactly what the
		// listener serves an observer.
		chromium, err := exec.LookPath("chromium")
		if err != nil {
			t.Skip("chromium is not installed (Debian: apt-get install chromium); skipping the headless-browser check")
		}
		target, _ := url.Parse("https://127.0.0.1:" + port)
		proxy := httputil.NewSingleHostReverseProxy(target)
		proxy.Transport = obs.Transport
		srv := httptest.NewServer(proxy)
		defer srv.Close()
		outDir := t.ArtifactDir()
		browse := func(args ...string) string {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
				"--user-data-dir=" + t.TempDir(), "--window-size=1400,1200"}, args...)
			cmd := exec.CommandContext(ctx, chromium, append(args, srv.URL+"/")...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
			}
			return stdout.String()
		}
		dom := browse("--dump-dom")
		checkDashboard(t, dom, f.names)
		shot := filepath.Join(outDir, "dashboard.png")
		browse("--screenshot=" + shot)
		st, err := os.Stat(shot)
		if err != nil || st.Size() < 10_000 {
			t.Fatalf("screenshot %s: %v %v", shot, st, err)
		}
		png, _ := os.ReadFile(shot)
		if !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Fatalf("%s is not a PNG", shot)
		}
		if err := os.WriteFile(filepath.Join(outDir, "dashboard.html"), []byte(dom), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("chromium rendered the dashboard: %s (%d bytes), DOM in dashboard.html (run with -artifacts to keep them)", shot, st.Size())
	})
}

// checkDashboard checks that a page (served, or the DOM chromium built)
// shows the members, the committed rounds and the three charts.
func checkDashboard(t *testing.T, page string, members []string) {
	t.Helper()
	for _, m := range members {
		if !strings.Contains(page, "<td><code>"+m+"</code>") {
			t.Errorf("no member row for %s", m)
		}
	}
	if n := strings.Count(page, `<span class="committed">committed</span>`); n != 3 {
		t.Errorf("%d committed rounds on the page, want 3", n)
	}
	for _, id := range []string{"accuracy", "loss", "epsilon"} {
		i := strings.Index(page, `<figure id="chart-`+id+`">`)
		if i < 0 {
			t.Errorf("no %s chart", id)
			continue
		}
		if !strings.Contains(page[i:], "<svg") {
			t.Errorf("the %s chart has no SVG", id)
		}
	}
	if strings.Contains(strings.ToLower(page), "<script") {
		t.Error("the page holds a script")
	}
	if t.Failed() {
		t.Logf("page:\n%s", page)
	}
}
