package coordinator_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/pki"
)

type accessFixture struct {
	ca                      *pki.CA
	coord, node, obs, admin *pki.Credential
}

func newAccessFixture(t *testing.T) accessFixture {
	t.Helper()
	now := time.Now()
	ca, err := pki.NewCA("Test CA", now, nil)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(role pki.Role, name string, hosts ...string) *pki.Credential {
		c, err := ca.Issue(pki.Request{Role: role, Name: name, Hosts: hosts}, now, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return accessFixture{ca: ca, coord: issue(pki.RoleCoordinator, "coordinator", "127.0.0.1"),
		node: issue(pki.RoleNode, "node-1"), obs: issue(pki.RoleObserver, "alice"), admin: issue(pki.RoleAdmin, "root")}
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok "+r.URL.Path) })

// TestAccessRule drives the middleware with hand-made requests: what the
// rule decides for each kind of credential, independent of TLS.
func TestAccessRule(t *testing.T) {
	f := newAccessFixture(t)
	token := []byte("0123456789abcdef0123456789abcdef")
	withCert := func(c *pki.Credential) func(*http.Request) {
		return func(r *http.Request) {
			r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true, PeerCertificates: []*x509.Certificate{c.Cert}}
		}
	}
	withAuth := func(v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set("Authorization", v) } }
	none := func(*http.Request) {}
	closed := coordinator.Access{CA: f.ca.Certificate(), Token: token}
	open := coordinator.Access{CA: f.ca.Certificate(), Open: true}
	for _, tc := range []struct {
		name   string
		access coordinator.Access
		method string
		path   string
		req    func(*http.Request)
		want   int
	}{
		{"nothing, closed", closed, "GET", "/", none, 401},
		{"nothing, closed, metrics", closed, "GET", "/metrics", none, 401},
		{"nothing, open (loopback)", open, "GET", "/", none, 200},
		{"observer dashboard", closed, "GET", "/", withCert(f.obs), 200},
		{"observer status", closed, "GET", "/status", withCert(f.obs), 200},
		{"observer rounds", closed, "GET", "/rounds", withCert(f.obs), 200},
		{"observer metrics", closed, "GET", "/metrics", withCert(f.obs), 200},
		{"observer HEAD", closed, "HEAD", "/", withCert(f.obs), 200},
		{"observer cannot trigger", closed, "POST", "/", withCert(f.obs), 405},
		{"admin dashboard", closed, "GET", "/", withCert(f.admin), 200},
		{"admin cannot trigger either (none yet)", closed, "DELETE", "/rounds", withCert(f.admin), 405},
		{"member node certificate", closed, "GET", "/", withCert(f.node), 403},
		{"member node certificate, open", open, "GET", "/status", withCert(f.node), 403},
		{"coordinator certificate", closed, "GET", "/", withCert(f.coord), 403},
		{"token metrics", closed, "GET", "/metrics", withAuth("Bearer " + string(token)), 200},
		{"token dashboard", closed, "GET", "/", withAuth("Bearer " + string(token)), 403},
		{"token status", closed, "GET", "/status", withAuth("Bearer " + string(token)), 403},
		{"wrong token", closed, "GET", "/metrics", withAuth("Bearer " + strings.Repeat("x", len(token))), 401},
		{"wrong token, open", open, "GET", "/metrics", withAuth("Bearer nope"), 401},
		{"token prefix", closed, "GET", "/metrics", withAuth("Bearer " + string(token[:8])), 401},
		{"basic auth", closed, "GET", "/metrics", withAuth("Basic YTpi"), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, nil)
			tc.req(r)
			rec := httptest.NewRecorder()
			tc.access.Wrap(okHandler).ServeHTTP(rec, r)
			if rec.Code != tc.want {
				t.Fatalf("%s %s: %d %q, want %d", tc.method, tc.path, rec.Code, rec.Body, tc.want)
			}
			if tc.want == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if tc.want == 200 && tc.method == "GET" && rec.Body.String() != "ok "+tc.path {
				t.Errorf("body %q", rec.Body)
			}
		})
	}
}

// TestAccessOverTLS serves the rule over real TLS on 127.0.0.1 with the
// metrics listener's configuration (the coordinator's own Handler over TLS
// is cmd/cloister's TestDashboardAccess: fedtest's bubble has no sockets).
func TestAccessOverTLS(t *testing.T) {
	f := newAccessFixture(t)
	cfg, err := pki.ObserverServerConfig(f.ca.Certificate(), f.coord, pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(coordinator.Access{CA: f.ca.Certificate()}.Wrap(okHandler))
	srv.TLS = cfg
	srv.StartTLS()
	defer srv.Close()
	client := func(c *pki.Credential) *http.Client {
		roots := x509.NewCertPool()
		roots.AddCert(f.ca.Certificate())
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots}
		if c != nil {
			cfg.Certificates = []tls.Certificate{c.TLSCertificate()}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	}
	get := func(c *http.Client) (int, string, error) {
		resp, err := c.Get(srv.URL + "/")
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	if code, body, err := get(client(nil)); err != nil || code != 401 {
		t.Fatalf("no certificate: %d %q %v; want 401", code, body, err)
	}
	if code, _, err := get(client(f.node)); err == nil {
		t.Fatalf("member node certificate: %d, want the handshake refused", code)
	} else {
		t.Logf("member node certificate: %v", err)
	}
	if code, body, err := get(client(f.obs)); err != nil || code != 200 || body != "ok /" {
		t.Fatalf("observer: %d %q %v", code, body, err)
	}
}
