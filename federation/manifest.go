package federation

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/cloisterfl/cloister/internal/strictjson"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/model"
	"github.com/cloisterfl/cloister/strategy"
)

// Manifest errors.
var (
	// ErrBadSignature: a signed manifest whose signature does not verify
	// under the given CA: signed by another CA, or altered after signing.
	ErrBadSignature = errors.New("federation: manifest signature does not verify")
	// ErrBadManifest: bytes that are not a well-formed signed manifest
	// (bad JSON, unknown fields, not in canonical form, too large).
	ErrBadManifest = errors.New("federation: malformed manifest")
	// ErrInvalidManifest: a well-formed manifest whose content breaks a
	// rule (threshold above the member count, duplicate members, …).
	ErrInvalidManifest = errors.New("federation: invalid manifest")
)

// ManifestVersion is the manifest format version this package reads and
// writes.
const ManifestVersion = 1

// MaxSize bounds a signed manifest, in bytes.
const MaxSize = 1 << 20

// Aggregation modes a manifest may name (see the package documentation).
const (
	ModeMHE      = "mhe"      // threshold multiparty CKKS (the default)
	ModeSecAgg   = "secagg"   // SecAgg+ masking
	ModePaillier = "paillier" // threshold Paillier
	ModeTEE      = "tee"      // attested aggregator enclave
	ModePlain    = "plain"    // no protection: baselines and research only
)

var modes = []string{ModeMHE, ModeSecAgg, ModePaillier, ModeTEE, ModePlain}

// Manifest is the federation's constitution, signed by the federation CA:
// who the members are, how updates are protected, and the privacy budget.
// Nodes refuse anything that doesn't match it; the coordinator cannot add
// members because it cannot sign a manifest.
//
// A Manifest is plain data. [Sign] validates and signs it;
// [Verify] checks a signed one and returns it. Its JSON encoding
// (encoding/json, fields in declaration order, no insignificant
// whitespace) is canonical: it is what is signed and hashed.
type Manifest struct {
	// Version is the format version, ManifestVersion.
	Version int `json:"version"`
	// Federation identifies the federation (and its session): 1 to 128
	// characters from [A-Za-z0-9._-].
	Federation string `json:"federation"`
	// Serial increases with every re-signed manifest of the federation, so a
	// party can refuse to go back to an older one ([UpdateManifest]).
	Serial uint64 `json:"serial"`
	// Coordinator is the coordinator's name, certificate and audit key.
	Coordinator Principal `json:"coordinator"`
	// Members are the nodes, in a fixed order. Names are NodeIDs.
	Members []Principal `json:"members"`
	// Threshold t: any t members can reveal an aggregate, t−1 cannot.
	Threshold int `json:"threshold"`
	// MinCohort is the fewest updates a round may aggregate. It lies in
	// [Threshold, len(Members)]: a round the coordinator may close must also
	// be one whose own members can reveal it (t of them) and, under secagg,
	// unmask it.
	MinCohort int `json:"min_cohort"`
	// Mode is the aggregation mode: ModeMHE, ModeSecAgg, ModePaillier,
	// ModeTEE or ModePlain.
	Mode string `json:"mode"`
	// Preset names the HE parameter preset (required for ModeMHE). The mode's
	// package checks that it knows the name.
	Preset string `json:"he_preset,omitempty"`
	// DP is the differential-privacy configuration.
	DP DP `json:"dp"`
	// Model is the model every node trains.
	Model ModelSpec `json:"model"`
	// Training holds the training schedule.
	Training Training `json:"training"`
	// Attestation is the TEE evidence policy (package attest), default
	// deny. A policy without formats (the zero value) turns attestation
	// off: nodes then join on their certificate and audit key alone; see
	// [Manifest.AttestationRequired].
	Attestation attest.Policy `json:"attestation"`
}

// Principal is a federation member or the coordinator: a name, its
// certificate's fingerprint and its audit key.
type Principal struct {
	// Name is a NodeID for a member, the coordinator's name otherwise.
	Name string `json:"name"`
	// Fingerprint is the [Fingerprint] of the party's certificate.
	Fingerprint string `json:"fingerprint"`
	// AuditKey is the Ed25519 public key the party signs its audit log
	// with. It is separate from the TLS key.
	AuditKey ed25519.PublicKey `json:"audit_key"`
}

// DP is the distributed differential-privacy configuration. NoiseMultiplier
// 0 turns DP noise off; then Epsilon and Delta must be 0 too.
type DP struct {
	NoiseMultiplier float64 `json:"noise_multiplier"` // σ/C of the summed noise
	Clip            float64 `json:"clip"`             // L2 bound C on each update; 0: no clipping
	Epsilon         float64 `json:"epsilon"`          // total privacy budget ε
	Delta           float64 `json:"delta"`            // δ
}

// ModelSpec is the model every node trains: with the input and class
// counts, it fixes the number of parameters d, hence the size of every
// update and sealed model ([MessageSizes] derives the transport limits from
// it). A node refuses local data of other dimensions.
type ModelSpec struct {
	Kind    string `json:"kind"`             // package model's kind: "softmax" or "mlp"
	Inputs  int    `json:"inputs"`           // features per example
	Classes int    `json:"classes"`          // number of classes, at least 2
	Hidden  []int  `json:"hidden,omitempty"` // hidden layer sizes (mlp)
}

// Spec returns the model's architecture as package model describes it.
func (s ModelSpec) Spec() model.Spec {
	return model.Spec{Kind: s.Kind, Inputs: s.Inputs, Classes: s.Classes, Hidden: slices.Clone(s.Hidden)}
}

// Training is the training schedule, the same for every site: the local
// SGD settings and the server optimizer are in the signed manifest so that
// sites cannot disagree on them.
type Training struct {
	Rounds       int     `json:"rounds"`
	LocalEpochs  int     `json:"local_epochs"`
	Batch        int     `json:"batch"`
	LearningRate float64 `json:"learning_rate"`
	// Momentum is the local SGD momentum, in [0, 1); 0 turns it off.
	Momentum float64 `json:"momentum,omitempty"`
	// ProxMu is FedProx's proximal coefficient μ ≥ 0; 0 is FedAvg's local
	// step.
	ProxMu float64 `json:"prox_mu,omitempty"`
	// Strategy is the server optimizer the round's leader applies, as the
	// canonical spec of package strategy (what its String method returns):
	// "fedavg:lr=1", "fedadam:lr=0.1,b1=0.9,b2=0.99,tau=0.001",
	// "fedyogi:…", "fedadagrad:lr=0.1,b1=0,tau=0.001" or
	// "scaffold:lr=1,frac=1" (frac: the share of the members in a cohort;
	// the runtime's cohort is every live member). Its state travels sealed
	// with the model. Empty means FedAvg with server learning rate 1,
	// "fedavg:lr=1".
	Strategy string `json:"strategy,omitempty"`
}

// DefaultStrategy is the server optimizer of a Training whose Strategy is
// empty: FedAvg with server learning rate 1.
const DefaultStrategy = "fedavg:lr=1"

// Strategies are the server optimizers a manifest may name. With
// "scaffold" (SCAFFOLD, package strategy/scaffold) the global vector the
// engine protects, sums and seals is Join(model, server control), twice the
// model's length, and each node keeps its own control variate.
var Strategies = []string{"fedavg", "fedadam", "fedyogi", "fedadagrad", "scaffold"}

// Scaffold reports whether the strategy is SCAFFOLD, whose vectors join
// the model and the control variates.
func (t Training) Scaffold() bool { return strings.HasPrefix(t.Strategy, "scaffold:") }

// Optimizer returns a new server optimizer as Strategy describes it.
func (t Training) Optimizer() (strategy.Strategy, error) {
	spec := t.Strategy
	if spec == "" {
		spec = DefaultStrategy
	}
	s, err := strategy.New(spec)
	if err != nil {
		return nil, invalid("training.strategy %q: %v", truncate(spec), err)
	}
	if name, _, _ := strings.Cut(spec, ":"); !slices.Contains(Strategies, name) {
		return nil, invalid("training.strategy %q: the runtime runs %s", truncate(spec), strings.Join(Strategies, ", "))
	}
	if s.String() != spec {
		return nil, invalid("training.strategy %q is not in canonical form: write %q", truncate(spec), s.String())
	}
	return s, nil
}

// CanonicalStrategy returns the canonical form of a strategy spec of
// package strategy ("fedadam" → "fedadam:lr=0.1,b1=0.9,b2=0.99,tau=0.001"),
// checking that the runtime runs it. "" gives DefaultStrategy.
func CanonicalStrategy(spec string) (string, error) {
	if strings.TrimSpace(spec) == "" {
		return DefaultStrategy, nil
	}
	s, err := strategy.New(spec)
	if err != nil {
		return "", err
	}
	if _, err := (Training{Strategy: s.String()}).Optimizer(); err != nil {
		return "", err
	}
	return s.String(), nil
}

// AttestationRequired reports whether the manifest requires TEE evidence:
// whether its attestation policy lists any format. A manifest without
// formats runs without attestation (development and tests); the daemons
// say so loudly.
func (m *Manifest) AttestationRequired() bool { return len(m.Attestation.Formats) > 0 }

// Nodes returns the members' NodeIDs in manifest order.
func (m *Manifest) Nodes() []fl.NodeID {
	ids := make([]fl.NodeID, len(m.Members))
	for i, p := range m.Members {
		ids[i] = fl.NodeID(p.Name)
	}
	return ids
}

// Member returns the member named id.
func (m *Manifest) Member(id fl.NodeID) (Principal, bool) {
	for _, p := range m.Members {
		if p.Name == string(id) {
			return p, true
		}
	}
	return Principal{}, false
}

// AuditKeys returns every party's audit public key by name (members and the
// coordinator), the form package audit verifies logs with:
// audit.Keys(m.AuditKeys()).
func (m *Manifest) AuditKeys() map[string]ed25519.PublicKey {
	keys := make(map[string]ed25519.PublicKey, len(m.Members)+1)
	keys[m.Coordinator.Name] = m.Coordinator.AuditKey
	for _, p := range m.Members {
		keys[p.Name] = p.AuditKey
	}
	return keys
}

// Canonical returns the manifest's canonical JSON encoding: the bytes that
// are signed and hashed.
func (m *Manifest) Canonical() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding: %w", ErrInvalidManifest, err)
	}
	return b, nil
}

// Hash returns the SHA-256 of the canonical encoding. Bind to it wherever
// an action must be tied to this exact manifest (attestation report data,
// the protect session ID, the audit log's session-started record).
func (m *Manifest) Hash() ([sha256.Size]byte, error) {
	b, err := m.Canonical()
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(b), nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidManifest, fmt.Sprintf(format, args...))
}

// Validate checks the manifest's content. Errors wrap [ErrInvalidManifest]
// and name the field.
func (m *Manifest) Validate() error {
	if m.Version != ManifestVersion {
		return invalid("version %d, this build reads version %d", m.Version, ManifestVersion)
	}
	if err := ValidateID(m.Federation); err != nil {
		return err
	}
	if err := validatePrincipal("coordinator", m.Coordinator); err != nil {
		return err
	}
	n := len(m.Members)
	if n == 0 {
		return invalid("no members")
	}
	names := map[string]bool{m.Coordinator.Name: true}
	fps := map[string]string{m.Coordinator.Fingerprint: "the coordinator"}
	keys := map[string]string{string(m.Coordinator.AuditKey): "the coordinator"}
	for i, p := range m.Members {
		what := fmt.Sprintf("member %d (%q)", i+1, truncate(p.Name))
		if err := fl.ValidateNodeID(fl.NodeID(p.Name)); err != nil {
			return invalid("%s: %v", what, err)
		}
		if err := validatePrincipal(what, p); err != nil {
			return err
		}
		if names[p.Name] {
			return invalid("%s: name listed twice (or equal to the coordinator's)", what)
		}
		names[p.Name] = true
		if other, dup := fps[p.Fingerprint]; dup {
			return invalid("%s: certificate fingerprint %s is also %s's", what, p.Fingerprint, other)
		}
		fps[p.Fingerprint] = p.Name
		if other, dup := keys[string(p.AuditKey)]; dup {
			return invalid("%s: audit key is also %s's", what, other)
		}
		keys[string(p.AuditKey)] = p.Name
	}
	if m.Threshold < 1 || m.Threshold > n {
		return invalid("threshold %d outside 1..%d (the member count)", m.Threshold, n)
	}
	if m.MinCohort < m.Threshold || m.MinCohort > n {
		return invalid("min_cohort %d outside %d..%d (threshold..member count): a minimal round must be revealable by its own members", m.MinCohort, m.Threshold, n)
	}
	if !slices.Contains(modes, m.Mode) {
		return invalid("mode %q, want one of %v", truncate(m.Mode), modes)
	}
	if m.Preset != "" {
		if err := validateLabel(m.Preset); err != nil {
			return invalid("he_preset %q: %v", truncate(m.Preset), err)
		}
	} else if m.Mode == ModeMHE {
		return invalid("mode %s needs an he_preset", m.Mode)
	}
	if err := m.DP.validate(); err != nil {
		return err
	}
	if err := m.Model.validate(); err != nil {
		return err
	}
	if err := m.Training.validate(); err != nil {
		return err
	}
	return validateAttestation(m.Attestation)
}

// ValidateID checks a federation ID: 1 to 128 characters from
// [A-Za-z0-9._-]. Errors wrap [ErrInvalidManifest].
func ValidateID(id string) error {
	if id == "" || len(id) > 128 {
		return invalid("federation ID %q must have 1 to 128 characters", truncate(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return invalid("federation ID %q has character %q; use A-Z, a-z, 0-9, '.', '_', '-'", truncate(id), rune(c))
		}
	}
	return nil
}

func validatePrincipal(what string, p Principal) error {
	if err := fl.ValidateName(p.Name); err != nil {
		return invalid("%s: %v", what, err)
	}
	if !validFingerprint(p.Fingerprint) {
		return invalid("%s: fingerprint %q is not 64 lowercase hex digits", what, truncate(p.Fingerprint))
	}
	if len(p.AuditKey) != ed25519.PublicKeySize {
		return invalid("%s: audit key has %d bytes, want %d", what, len(p.AuditKey), ed25519.PublicKeySize)
	}
	return nil
}

// validateLabel checks a short machine-readable label: 1 to 64 characters
// from [A-Za-z0-9._-].
func validateLabel(s string) error {
	if s == "" || len(s) > 64 {
		return errors.New("must have 1 to 64 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("has character %q", rune(c))
		}
	}
	return nil
}

func finiteNonNeg(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) && x >= 0 }

func (d DP) validate() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"noise_multiplier", d.NoiseMultiplier}, {"clip", d.Clip}, {"epsilon", d.Epsilon}, {"delta", d.Delta}} {
		if !finiteNonNeg(f.v) {
			return invalid("dp.%s %v must be finite and non-negative", f.name, f.v)
		}
	}
	if d.NoiseMultiplier == 0 {
		if d.Epsilon != 0 || d.Delta != 0 {
			return invalid("dp: epsilon %v and delta %v are set but noise_multiplier is 0 (DP off)", d.Epsilon, d.Delta)
		}
		return nil
	}
	if d.Clip == 0 {
		return invalid("dp: noise_multiplier %v needs a clip > 0", d.NoiseMultiplier)
	}
	if d.Epsilon == 0 {
		return invalid("dp: noise_multiplier %v needs an epsilon budget > 0", d.NoiseMultiplier)
	}
	if d.Delta <= 0 || d.Delta >= 1 {
		return invalid("dp: delta %v outside (0, 1)", d.Delta)
	}
	return nil
}

func (s ModelSpec) validate() error {
	if err := validateLabel(s.Kind); err != nil {
		return invalid("model.kind %q: %v", truncate(s.Kind), err)
	}
	if len(s.Hidden) > 64 {
		return invalid("model.hidden has %d layers, at most 64", len(s.Hidden))
	}
	for i, h := range s.Hidden {
		if h < 1 || h > 1<<20 {
			return invalid("model.hidden[%d] = %d outside 1..%d", i, h, 1<<20)
		}
	}
	if s.Inputs < 1 || s.Inputs > model.MaxParams {
		return invalid("model.inputs %d outside 1..%d", s.Inputs, model.MaxParams)
	}
	if s.Classes < 2 || s.Classes > model.MaxParams {
		return invalid("model.classes %d outside 2..%d", s.Classes, model.MaxParams)
	}
	if err := s.Spec().Validate(); err != nil {
		return invalid("model (kind %q, %d inputs, %d classes, hidden %v): %v", s.Kind, s.Inputs, s.Classes, s.Hidden, err)
	}
	return nil
}

func (t Training) validate() error {
	if t.Rounds < 1 {
		return invalid("training.rounds %d < 1", t.Rounds)
	}
	if t.LocalEpochs < 1 {
		return invalid("training.local_epochs %d < 1", t.LocalEpochs)
	}
	if t.Batch < 1 {
		return invalid("training.batch %d < 1", t.Batch)
	}
	if !finiteNonNeg(t.LearningRate) || t.LearningRate == 0 {
		return invalid("training.learning_rate %v must be finite and > 0", t.LearningRate)
	}
	if !finiteNonNeg(t.Momentum) || t.Momentum >= 1 {
		return invalid("training.momentum %v outside [0, 1)", t.Momentum)
	}
	if !finiteNonNeg(t.ProxMu) {
		return invalid("training.prox_mu %v must be finite and ≥ 0", t.ProxMu)
	}
	if t.Strategy == "" {
		return nil
	}
	_, err := t.Optimizer()
	return err
}

func validateAttestation(p attest.Policy) error {
	if len(p.Formats) == 0 {
		if len(p.Measurements) > 0 || len(p.MinTCB) > 0 || p.MaxAge != 0 || p.AllowSim || p.AllowDebug {
			return invalid("attestation lists no formats (attestation off) but sets other fields: list the formats to require attestation")
		}
		return nil
	}
	if err := p.Validate(); err != nil {
		return invalid("attestation: %v", err)
	}
	return nil
}

// The signed-manifest file: the canonical manifest and a signature over it.
type signedManifest struct {
	Manifest  json.RawMessage `json:"manifest"`
	Signature signature       `json:"signature"`
}

type signature struct {
	Alg   string `json:"alg"`   // sigAlg
	CA    string `json:"ca"`    // fingerprint of the signing CA's certificate
	Value []byte `json:"value"` // ASN.1 ECDSA signature, base64
}

const (
	sigAlg = "ecdsa-p256-sha256"
	// sigContext separates manifest signatures from anything else the CA
	// key might sign.
	sigContext = "cloister manifest v1\x00"
)

func manifestDigest(canonical []byte) []byte {
	h := sha256.New()
	h.Write([]byte(sigContext))
	h.Write(canonical)
	return h.Sum(nil)
}

// Signer is the federation CA as [Sign] needs it: its certificate and an
// ECDSA P-256 signer for its key. Package pki's *CA is one.
type Signer interface {
	crypto.Signer
	Certificate() *x509.Certificate
}

// Sign validates m and signs its canonical encoding with the CA key. The
// result is the manifest.json of every kit; [Verify] reads it. The output is indented for people; the signature covers the
// compact canonical form, so whitespace does not matter.
//
// rand is accepted for the house style; since Go 1.26 ECDSA signing always
// uses the system's secure random source.
func Sign(m *Manifest, ca Signer, random io.Reader) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	canonical, err := m.Canonical()
	if err != nil {
		return nil, err
	}
	if random == nil {
		random = rand.Reader
	}
	cert := ca.Certificate()
	if _, ok := ca.Public().(*ecdsa.PublicKey); !ok || cert == nil {
		return nil, fmt.Errorf("federation: signing manifest: the CA %s has no ECDSA key", describe(cert))
	}
	sig, err := ca.Sign(random, manifestDigest(canonical), crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("federation: signing manifest: %w", err)
	}
	out, err := json.MarshalIndent(signedManifest{
		Manifest:  canonical,
		Signature: signature{Alg: sigAlg, CA: fingerprint(cert), Value: sig},
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("federation: encoding signed manifest: %w", err)
	}
	return append(out, '\n'), nil
}

// Verify checks a manifest signed by [Sign] against the federation CA
// certificate ca and returns it.
//
// It verifies the signature before it parses the content, and refuses:
// a signature by any other key, or over other bytes ([ErrBadSignature]);
// malformed input, unknown fields, duplicate keys or a non-canonical
// encoding ([ErrBadManifest]); and content that fails
// [Manifest.Validate] ([ErrInvalidManifest]).
func Verify(data []byte, ca *x509.Certificate) (*Manifest, error) {
	if ca == nil {
		return nil, errors.New("federation: no CA certificate to verify the manifest with")
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadManifest, len(data), MaxSize)
	}
	var env signedManifest
	if err := strictjson.Decode(data, &env); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	if env.Signature.Alg != sigAlg {
		return nil, fmt.Errorf("%w: signature algorithm %q, want %q", ErrBadSignature, truncate(env.Signature.Alg), sigAlg)
	}
	if want := fingerprint(ca); env.Signature.CA != want {
		return nil, fmt.Errorf("%w: signed by CA sha256 %s, not the federation CA %s (sha256 %s)",
			ErrBadSignature, truncate(env.Signature.CA), describe(ca), want)
	}
	pub, ok := ca.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: CA %s does not have an ECDSA key", ErrBadSignature, describe(ca))
	}
	var canonical bytes.Buffer
	if err := json.Compact(&canonical, env.Manifest); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	if !ecdsa.VerifyASN1(pub, manifestDigest(canonical.Bytes()), env.Signature.Value) {
		return nil, fmt.Errorf("%w: signature by CA %s does not match the manifest's content", ErrBadSignature, describe(ca))
	}
	var m Manifest
	if err := strictjson.Decode(canonical.Bytes(), &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	again, err := m.Canonical()
	if err != nil || !bytes.Equal(again, canonical.Bytes()) {
		return nil, fmt.Errorf("%w: manifest is not in canonical form", ErrBadManifest)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// fingerprint is package pki's Fingerprint: the lowercase hex SHA-256 of
// the certificate's DER encoding, the form the manifest lists parties by.
func fingerprint(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

func validFingerprint(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// describe names a certificate in error messages: its CN and the start of
// its fingerprint.
func describe(cert *x509.Certificate) string {
	if cert == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%q (sha256 %s…)", truncate(cert.Subject.CommonName), fingerprint(cert)[:16])
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
