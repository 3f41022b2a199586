package federation

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

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
	// Session is empty in a session's first manifest, and the hex
	// [Manifest.SessionID] of that first manifest in every amendment of it
	// ([Amend]): a session keeps its ID across amendments.
	Session string `json:"session,omitempty"`
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
	// Preset names the mode's parameter preset: the HE preset (required for
	// ModeMHE), or the masking preset of ModeSecAgg (empty: secagg64). The
	// mode's package checks that it knows the name.
	Preset string `json:"he_preset,omitempty"`
	// Rule is the aggregation rule: empty (or "mean") for the weighted
	// mean, else a robust rule of package robust in canonical form with f,
	// the number of Byzantine updates it withstands, written out
	// ("median:f=2", "trimmed:beta=0.2,f=1", "krum:f=1",
	// "multikrum:m=4,f=1", "bulyan:f=1", "cclip:tau=0,iters=3,f=2"). It
	// must be feasible for a cohort of MinCohort updates, the smallest a
	// round can aggregate ([CanonicalRule]). Only modes plain and tee apply
	// a robust rule ([RuleModes]): under mhe, secagg and paillier nobody
	// sees an individual update and only the clip (DP.Clip) bounds a
	// malicious member.
	Rule string `json:"rule,omitempty"`
	// Compress is how members compress their updates before they leave,
	// in canonical form (package compress): empty for none, "topk:F" (the
	// fraction F of coordinates of largest magnitude, the rest kept for
	// later rounds) or "q8" / "q8:B" (8-bit stochastic quantization in
	// buckets of B values). Only modes plain and tee carry compressed
	// updates ([CompressModes]); secagg's quantization width is its preset.
	Compress string `json:"compress,omitempty"`
	// InsecureAttacks lets members run as Byzantine attackers (cloister node
	// --insecure-attack): for tests and research on robust rules only. A
	// node refuses an attack switch unless it is set, and every daemon
	// warns of it.
	InsecureAttacks bool `json:"insecure_attacks,omitempty"`
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
	// Aggregator is mode tee's attested aggregator (cloister aggregator):
	// its name, certificate and audit key. It is not a member: it is in no
	// cohort, never a revealer or a leader. Required in mode tee, absent
	// otherwise.
	Aggregator *Principal `json:"aggregator,omitempty"`
	// AggregatorAttestation is the policy the aggregator's evidence must
	// meet, which may differ from the members' (another image, so other
	// measurements). Mode tee requires one with formats: every node
	// verifies the aggregator's evidence against it before sealing
	// anything to it.
	AggregatorAttestation attest.Policy `json:"aggregator_attestation,omitzero"`
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
//
// Kind [ModelExternal] is a model trained by an external trainer process
// through the trainer API (package trainer): the manifest then pins its
// parameter layout by digest (Layout) and count (Params), and Inputs,
// Classes and Hidden are 0 and empty (the data is the trainer's).
type ModelSpec struct {
	Kind    string `json:"kind"`             // package model's kind ("softmax" or "mlp"), or "external"
	Inputs  int    `json:"inputs"`           // features per example
	Classes int    `json:"classes"`          // number of classes, at least 2
	Hidden  []int  `json:"hidden,omitempty"` // hidden layer sizes (mlp)
	// Params is an external model's parameter count: its layout's values.
	Params int `json:"params,omitempty"`
	// Layout is the SHA-256 (lowercase hex) of an external model's layout
	// (trainer.Layout.Digest): a node refuses a trainer that describes
	// another.
	Layout string `json:"layout,omitempty"`
}

// ModelExternal is the model kind of an external trainer.
const ModelExternal = "external"

// External reports whether the model is an external trainer's.
func (s ModelSpec) External() bool { return s.Kind == ModelExternal }

// NumParams returns the model's parameter count d: Params for an external
// model, the built-in architecture's count otherwise (0 if invalid).
func (s ModelSpec) NumParams() int {
	if s.External() {
		return s.Params
	}
	return s.Spec().NumParams()
}

// String describes the model: "mlp 784-128-10", or "external (11274
// parameters, layout 3f2a…)".
func (s ModelSpec) String() string {
	if s.External() {
		d := s.Layout
		if len(d) > 12 {
			d = d[:12] + "…"
		}
		return fmt.Sprintf("external (%d parameters, layout %s)", s.Params, d)
	}
	return s.Spec().String()
}

// Spec returns the model's architecture as package model describes it
// (for an external model, a Spec of kind "external" that package model
// cannot build).
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

// LogKeys returns the audit keys of every party that writes an audit log,
// by name: AuditKeys' and, in mode tee, the aggregator's (which writes a
// log of its own and cosigns nothing).
func (m *Manifest) LogKeys() map[string]ed25519.PublicKey {
	keys := m.AuditKeys()
	if a := m.Aggregator; a != nil {
		keys[a.Name] = a.AuditKey
	}
	return keys
}

// AggregatorName returns mode tee's aggregator's name, or "".
func (m *Manifest) AggregatorName() string {
	if m.Aggregator == nil {
		return ""
	}
	return m.Aggregator.Name
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
