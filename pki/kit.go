package pki

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/strictjson"
)

// KitConfigVersion is the config.json format version.
const KitConfigVersion = 1

// KitConfig is a kit's config.json: who this party is and where the
// coordinator is.
type KitConfig struct {
	Version    int    `json:"version"`
	Role       Role   `json:"role"`
	Name       string `json:"name"`
	Federation string `json:"federation"`
	// CoordinatorAddress is the host:port the coordinator listens on and
	// nodes dial.
	CoordinatorAddress string `json:"coordinator_address"`
}

func (c KitConfig) validate() error {
	if c.Version != KitConfigVersion {
		return fmt.Errorf("config version %d, this build reads version %d", c.Version, KitConfigVersion)
	}
	switch c.Role {
	case RoleNode:
		if err := ValidateNodeID(fl.NodeID(c.Name)); err != nil {
			return err
		}
	case RoleCoordinator:
		if err := ValidateName(c.Name); err != nil {
			return err
		}
	default:
		return fmt.Errorf("role %s", c.Role)
	}
	if err := federation.ValidateID(c.Federation); err != nil {
		return err
	}
	if _, port, err := net.SplitHostPort(c.CoordinatorAddress); err != nil {
		return fmt.Errorf("coordinator_address %q: %w", truncate(c.CoordinatorAddress), err)
	} else if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("coordinator_address %q: bad port", truncate(c.CoordinatorAddress))
	}
	return nil
}

// Kit is everything one party needs to take part in a federation: its
// identity, its keys, the federation CA certificate and the signed
// manifest. On disk it is a directory (see [WriteKit]):
//
//	ca.pem          federation CA certificate
//	cert.pem        this party's certificate
//	key.pem         its TLS private key (0600)
//	audit-key.pem   its Ed25519 audit-log signing key (0600)
//	manifest.json   the signed federation manifest
//	config.json     KitConfig
type Kit struct {
	Config     KitConfig
	CA         *x509.Certificate
	Credential *Credential
	AuditKey   ed25519.PrivateKey
	// Manifest is SignedManifest, verified.
	Manifest       *federation.Manifest
	SignedManifest []byte
}

// Identity returns the kit's party identity.
func (k *Kit) Identity() Identity { return Identity{Role: k.Config.Role, Name: k.Config.Name} }

// Party returns the manifest entry that describes this kit's party.
func (k *Kit) Party() federation.Principal {
	return federation.Principal{
		Name:        k.Config.Name,
		Fingerprint: Fingerprint(k.Credential.Cert),
		AuditKey:    k.AuditKey.Public().(ed25519.PublicKey),
	}
}

// check verifies the kit's internal consistency. In particular the signed
// manifest must verify under the kit's CA and list this party with this
// certificate and audit key.
func (k *Kit) check() error {
	if err := k.Config.validate(); err != nil {
		return fmt.Errorf("%s: %w", ConfigFile, err)
	}
	if k.CA == nil || !k.CA.IsCA {
		return fmt.Errorf("%s: not a CA certificate", CACertFile)
	}
	if err := checkOwn(k.CA, k.Credential); err != nil {
		return err
	}
	id, err := Identify(k.Credential.Cert)
	if err != nil {
		return err
	}
	if id != k.Identity() {
		return fmt.Errorf("%s is for %s but %s says %s", CertFile, id, ConfigFile, k.Identity())
	}
	if len(k.AuditKey) != ed25519.PrivateKeySize {
		return fmt.Errorf("%w: %s: not an Ed25519 private key", ErrBadKey, AuditKeyFile)
	}
	m, err := federation.Verify(k.SignedManifest, k.CA)
	if err != nil {
		return fmt.Errorf("%s: %w", ManifestFile, err)
	}
	k.Manifest = m
	return k.listed(m)
}

// listed checks that m describes this kit's party exactly.
func (k *Kit) listed(m *federation.Manifest) error {
	if m.Federation != k.Config.Federation {
		return fmt.Errorf("%w: manifest is for federation %q, %s for %q", ErrNotMember, m.Federation, ConfigFile, k.Config.Federation)
	}
	want := k.Party()
	var got federation.Principal
	var ok bool
	if k.Config.Role == RoleCoordinator {
		got, ok = m.Coordinator, m.Coordinator.Name == want.Name
	} else if got, ok = m.Member(fl.NodeID(want.Name)); !ok && m.Aggregator != nil && m.Aggregator.Name == want.Name {
		got, ok = *m.Aggregator, true // mode tee's aggregator holds a node certificate
	}
	if !ok {
		return fmt.Errorf("%w: manifest serial %d does not list %s", ErrNotMember, m.Serial, k.Identity())
	}
	if got.Fingerprint != want.Fingerprint {
		return fmt.Errorf("%w: manifest lists %s with certificate sha256 %s, %s is sha256 %s", ErrNotMember, k.Identity(), got.Fingerprint, CertFile, want.Fingerprint)
	}
	if !got.AuditKey.Equal(want.AuditKey) {
		return fmt.Errorf("%w: manifest lists another audit key for %s than %s holds", ErrNotMember, k.Identity(), AuditKeyFile)
	}
	return nil
}

// Admit checks that cert is the certificate the manifest m lists for the
// identity it carries: a member's (or mode tee's aggregator's) for a node
// certificate, the coordinator's for a coordinator certificate. Use it as
// [Options.Authorize] (as [Kit.TLSConfig] does). It returns an error wrapping [ErrNotMember] (or an
// identity error) otherwise.
func Admit(m *federation.Manifest, cert *x509.Certificate) error {
	id, err := Identify(cert)
	if err != nil {
		return err
	}
	var p federation.Principal
	var ok bool
	switch id.Role {
	case RoleNode:
		if p, ok = m.Member(fl.NodeID(id.Name)); !ok && m.Aggregator != nil && m.Aggregator.Name == id.Name {
			p, ok = *m.Aggregator, true // mode tee's aggregator holds a node certificate
		}
	case RoleCoordinator:
		p, ok = m.Coordinator, m.Coordinator.Name == id.Name
	}
	if !ok {
		return fmt.Errorf("%w: %s is not listed in manifest %s serial %d", ErrNotMember, id, m.Federation, m.Serial)
	}
	if fp := Fingerprint(cert); fp != p.Fingerprint {
		return fmt.Errorf("%w: %s presented certificate sha256 %s, the manifest lists %s", ErrNotMember, id, fp, p.Fingerprint)
	}
	return nil
}

// TLSConfig returns the kit's mTLS configuration: [ServerConfig] for the
// coordinator, [ClientConfig] for a node (pinned to the manifest's
// coordinator name). Either admits only peers whose certificates the
// manifest lists ([Admit]), then runs opts.Authorize if set.
func (k *Kit) TLSConfig(opts Options) (*tls.Config, error) {
	m := k.Manifest
	extra := opts.Authorize
	manifests := opts.Manifests
	if manifests == nil {
		manifests = func() []*federation.Manifest { return []*federation.Manifest{m} }
	}
	opts.Authorize = func(cert *x509.Certificate) error {
		var err error
		for _, m := range manifests() {
			if err = Admit(m, cert); err == nil {
				break
			}
		}
		if err != nil {
			return err
		}
		if extra != nil {
			return extra(cert)
		}
		return nil
	}
	if k.Config.Role == RoleCoordinator {
		return ServerConfig(k.CA, k.Credential, opts)
	}
	if opts.PeerName == "" {
		opts.PeerName = m.Coordinator.Name
	}
	return ClientConfig(k.CA, k.Credential, opts)
}

// WriteKit writes k to a new directory dir (mode 0700), atomically: the
// files are written to a temporary sibling directory that is renamed to
// dir at the end. Keys are written 0600. dir must not exist.
func WriteKit(dir string, k *Kit) error {
	if err := k.check(); err != nil {
		return fmt.Errorf("pki: kit for %s: %w", dir, err)
	}
	return createDir(dir, func(tmp string) error { return writeKitFiles(tmp, k) })
}

func writeKitFiles(dir string, k *Kit) error {
	cfg, err := json.MarshalIndent(k.Config, "", "  ")
	if err != nil {
		return fmt.Errorf("pki: encoding %s: %w", ConfigFile, err)
	}
	auditPEM, err := encodeKey(k.AuditKey)
	if err != nil {
		return err
	}
	if err := createFile(filepath.Join(dir, CACertFile), encodeCert(k.CA), publicPerm); err != nil {
		return err
	}
	if err := SaveCredential(dir, k.Credential); err != nil {
		return err
	}
	if err := createFile(filepath.Join(dir, AuditKeyFile), auditPEM, secretPerm); err != nil {
		return err
	}
	if err := createFile(filepath.Join(dir, ManifestFile), k.SignedManifest, publicPerm); err != nil {
		return err
	}
	return createFile(filepath.Join(dir, ConfigFile), append(cfg, '\n'), publicPerm)
}

// LoadKit reads and checks the kit in dir: key files must be 0600, keys
// must match certificates, the certificate must be issued by the kit's CA
// for the party config.json names, and the manifest must verify under the
// CA and list this party with this certificate and audit key.
func LoadKit(dir string) (*Kit, error) {
	k := &Kit{}
	var err error
	if k.CA, err = readCertFile(filepath.Join(dir, CACertFile)); err != nil {
		return nil, err
	}
	if k.Credential, err = LoadCredential(dir); err != nil {
		return nil, err
	}
	auditPath := filepath.Join(dir, AuditKeyFile)
	key, err := readPKCS8(auditPath)
	if err != nil {
		return nil, err
	}
	var ok bool
	if k.AuditKey, ok = key.(ed25519.PrivateKey); !ok {
		return nil, fmt.Errorf("%w: %s does not hold an Ed25519 key", ErrBadKey, auditPath)
	}
	if k.SignedManifest, err = readPublic(filepath.Join(dir, ManifestFile)); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, ConfigFile)
	cfg, err := readPublic(cfgPath)
	if err != nil {
		return nil, err
	}
	if err := strictjson.Decode(cfg, &k.Config); err != nil {
		return nil, fmt.Errorf("pki: %s: %w", cfgPath, err)
	}
	if err := k.check(); err != nil {
		return nil, fmt.Errorf("pki: kit %s: %w", dir, err)
	}
	return k, nil
}

// UpdateManifest atomically replaces the manifest of the kit in dir with
// signed, after checking that it verifies under the kit's CA, is for the
// same federation, has a higher Serial than the current one (no rollback),
// and still lists this party with its certificate and audit key.
func UpdateManifest(dir string, signed []byte) error {
	k, err := LoadKit(dir)
	if err != nil {
		return err
	}
	m, err := federation.Verify(signed, k.CA)
	if err != nil {
		return fmt.Errorf("pki: new manifest for %s: %w", dir, err)
	}
	if m.Serial <= k.Manifest.Serial {
		return fmt.Errorf("pki: new manifest for %s has serial %d, not above the current %d", dir, m.Serial, k.Manifest.Serial)
	}
	if err := k.listed(m); err != nil {
		return fmt.Errorf("pki: new manifest for %s: %w", dir, err)
	}
	return replaceFile(filepath.Join(dir, ManifestFile), signed, publicPerm)
}

// Directory names inside a federation directory (see [InitFederation]).
const (
	CADir          = "ca"
	CoordinatorDir = "coordinator"
)

// Defaults of [InitOptions].
const (
	DefaultCAName      = "Cloister federation CA"
	DefaultCoordinator = "coordinator"
	// DefaultAggregator is the name (and kit directory) of mode tee's
	// aggregator.
	DefaultAggregator = "aggregator"
	DefaultAddress    = "127.0.0.1:7443"
	// DefaultPreset is the HE preset name written for mode mhe when none is
	// given: package mhe's 128-bit production preset.
	DefaultPreset = "Agg128"
	// MaxNodes bounds InitOptions.Nodes.
	MaxNodes = 1000
)

// DefaultDP is the DP configuration [InitFederation] writes when
// InitOptions.DP is nil. Its noise covers the default 20 rounds within the
// budget: ε ≈ 7.5 at δ = 1e-5 (q = 1, Balle et al. 2020 conversion).
var DefaultDP = federation.DP{NoiseMultiplier: 3.0, Clip: 1.0, Epsilon: 8, Delta: 1e-5}

// DefaultTraining holds the training settings [InitFederation] uses for
// every zero field of InitOptions.Training among Rounds, LocalEpochs, Batch
// and LearningRate. Momentum and ProxMu are taken as given (0 is a valid
// choice), and an empty Strategy becomes federation.DefaultStrategy.
var DefaultTraining = federation.Training{Rounds: 20, LocalEpochs: 1, Batch: 32, LearningRate: 0.1}

// The input and class counts [InitFederation] writes when InitOptions.Model
// leaves them 0: Fashion-MNIST's 28×28 pixels and 10 classes.
const (
	DefaultInputs  = 784
	DefaultClasses = 10
)

// clonePolicy returns a deep copy of p that keeps nil fields nil (so that
// the canonical encoding does not change).
func clonePolicy(p attest.Policy) attest.Policy {
	q := p
	q.Formats = slices.Clone(p.Formats)
	if p.Measurements != nil {
		q.Measurements = make(map[string][]string, len(p.Measurements))
		for f, l := range p.Measurements {
			q.Measurements[f] = slices.Clone(l)
		}
	}
	if p.MinTCB != nil {
		q.MinTCB = make(map[string]attest.TCB, len(p.MinTCB))
		for f, t := range p.MinTCB {
			q.MinTCB[f] = slices.Clone(t)
		}
	}
	return q
}

func partyNames(ps []federation.Principal) []string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return names
}
