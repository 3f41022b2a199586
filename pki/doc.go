// Package pki is the federation's identity layer: the federation CA, the
// node and coordinator certificates it issues, the mutual-TLS
// configurations that check them, and the per-party kits that `cloister
// init` writes. The signed manifest they carry is package federation's.
//
// # Identities
//
// Every party holds a certificate issued by the federation CA (ECDSA
// P-256). Its identity is a URI SAN, cloister:node/<id> for a node and
// cloister:coordinator/<name> for the coordinator, repeated as the subject
// common name. [Identify] and [NodeID] read it. A node's identity always
// comes from its peer certificate, never from a message:
//
//	id, err := pki.NodeID(conn.ConnectionState().PeerCertificates[0])
//
// Names are 1 to 64 characters from [a-z0-9-] ([ValidateName]); nodes may
// not be called "coordinator" ([ValidateNodeID]).
//
// Observers and admins (cloister:observer/<name>, cloister:admin/<name>)
// hold client-auth-only certificates that read the coordinator's metrics
// listener ([ObserverServerConfig], [VerifyObserver]) and nothing else: the
// members' configurations refuse them, and the listener refuses members.
//
// # Mutual TLS
//
// [ServerConfig] (the coordinator) and [ClientConfig] (a node) return
// TLS 1.3-only configurations in which both sides present certificates and
// each checks the other with [VerifyPeer]: issued directly by the
// federation CA, valid at the injected time [Options.Now], of the expected
// role (a node must present a node certificate, the coordinator a
// coordinator certificate), not revoked ([Options.Revoked]) and, if
// [Options.Authorize] is set, admitted by it. Use [Admit] there to
// accept only the exact certificates the signed manifest lists;
// [Kit.TLSConfig] does so.
//
// The checks run in tls.Config.VerifyConnection, which crypto/tls calls on
// every handshake, resumed or not. Session resumption is off anyway (no
// session tickets on the server, no session cache on the client), so every
// connection re-checks validity and revocation. Refusals come back from
// the handshake as errors that name the certificate and wrap a sentinel:
// [ErrNoCertificate], [ErrUntrusted] (another CA), [ErrExpired] or
// [ErrNotYetValid] (a [*ValidityError] with the dates), [ErrWrongRole] (a
// [*RoleError]), [ErrWrongPeer], [ErrRevoked], [ErrNotMember].
//
// # The manifest
//
// The manifest (package federation) lists the members by certificate
// [Fingerprint]; the [CA] signs it (it is a federation.Signer), and
// [LoadKit] verifies it with federation.Verify. [Admit] accepts only the
// exact certificates the manifest lists. The Serial field grows with every
// re-signing so that [UpdateManifest] never rolls a kit back.
//
// # Kits and files
//
// [InitFederation] creates a federation directory:
//
//	fed/ca/           ca.pem, ca-key.pem (0600): the admin keeps these offline
//	fed/coordinator/  ca.pem, cert.pem, key.pem, audit-key.pem, manifest.json, config.json
//	fed/node-1/ …     the same, for each node
//
// [LoadKit] reads one party's directory and checks it end to end;
// [AddNode] issues a new member and re-signs the manifest (`cloister ca
// issue`); [NewCA], [CA.Save], [LoadCA] and [CA.Issue] are the pieces of
// `cloister ca init`.
//
// Files are written atomically (temporary file, fsync, then link or
// rename, then fsync of the directory) and never overwrite an existing
// file or directory. Private keys are PKCS #8 PEM with mode 0600, and
// loading refuses a key file that others can read ([ErrInsecureKey]).
//
// # Time and randomness
//
// Functions that need the time take it (now time.Time, or [Options.Now]),
// and functions that need randomness take an io.Reader (nil means
// crypto/rand). Since Go 1.26, ECDSA key generation and signing ignore the
// reader and always use the system's secure source; the reader still
// supplies serial numbers, audit keys and federation IDs. Tests that need
// fully deterministic keys use testing/cryptotest.SetGlobalRandom.
package pki
