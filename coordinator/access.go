package coordinator

import (
	"crypto/subtle"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/cloisterfl/cloister/pki"
)

// Access decides who may read the metrics listener ([Coordinator.Handler]:
// the dashboard, /status, /rounds and /metrics). Its rule:
//
//   - a client certificate of the federation CA with the role observer or
//     admin ([pki.VerifyObserver], checked again on every request, so one
//     that expires on a kept-alive connection stops working) may read
//     every path;
//   - the bearer token (Authorization: Bearer TOKEN, compared in constant
//     time), for Prometheus scrapers, may read /metrics only;
//   - any other certificate (a member's node certificate included: members
//     are not observers) is refused with 403, a wrong token with 401;
//   - a request with neither is served only when Open is set (the
//     coordinator sets it only for a listener on a loopback address), and
//     refused with 401 otherwise.
//
// Nothing on the listener triggers anything: every path is read-only, and
// Access refuses any method but GET and HEAD (405) whoever asks. Admin
// certificates are reserved for actions to come; today an admin sees and
// does exactly what an observer does.
type Access struct {
	// CA is the federation CA that issued the observers' certificates; nil
	// accepts no certificate.
	CA *x509.Certificate
	// Token is the bearer token for /metrics; empty accepts none.
	Token []byte
	// Open serves requests that bring no credentials. Only for a listener
	// that only this machine can reach.
	Open bool
	// Now is the clock certificates are checked at; nil means time.Now.
	Now func() time.Time
}

// Wrap returns next behind the access rule.
func (a Access) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the metrics listener is read-only", http.StatusMethodNotAllowed)
			return
		}
		role, status, err := a.who(r)
		switch {
		case err != nil:
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="cloister", error="invalid_token"`)
			}
			http.Error(w, err.Error(), status)
		case role == pki.RoleNone && !a.Open:
			w.Header().Set("WWW-Authenticate", `Bearer realm="cloister"`)
			http.Error(w, "authentication required: present an observer certificate of the federation CA (cloister ca issue --role observer) or, for /metrics, the bearer token", http.StatusUnauthorized)
		case role == roleToken && r.URL.Path != "/metrics":
			http.Error(w, "the bearer token reads /metrics only; the dashboard, /status and /rounds need an observer certificate", http.StatusForbidden)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// roleToken is the pseudo-role of a request that brought the bearer token.
const roleToken pki.Role = 255

// who returns who the request is: RoleObserver or RoleAdmin for a verified
// certificate, roleToken for the right token, RoleNone for no credentials;
// or refused credentials, with the status to answer (403 for a
// certificate, 401 for a token).
func (a Access) who(r *http.Request) (pki.Role, int, error) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		if a.CA == nil {
			return pki.RoleNone, http.StatusForbidden, fmt.Errorf("this listener accepts no client certificates")
		}
		id, err := pki.VerifyObserver(a.CA, r.TLS.PeerCertificates[0], pki.Options{Now: a.Now})
		if err != nil {
			return pki.RoleNone, http.StatusForbidden, fmt.Errorf("refused: %w", err)
		}
		return id.Role, http.StatusOK, nil
	}
	if r.Header.Get("Authorization") == "" {
		return pki.RoleNone, http.StatusOK, nil
	}
	tok, ok := bearerToken(r)
	if !ok {
		return pki.RoleNone, http.StatusUnauthorized, fmt.Errorf("unsupported Authorization scheme: use Bearer")
	}
	if len(a.Token) == 0 || subtle.ConstantTimeCompare([]byte(tok), a.Token) != 1 {
		return pki.RoleNone, http.StatusUnauthorized, fmt.Errorf("invalid bearer token")
	}
	return roleToken, http.StatusOK, nil
}

func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}
