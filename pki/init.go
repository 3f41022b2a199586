package pki

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
)

// InitOptions describe a new federation for [InitFederation]. Only Nodes
// and Threshold are required.
type InitOptions struct {
	Nodes     int // members, named node-1 … node-N
	Threshold int // t
	MinCohort int // 0 means Threshold

	Federation  string   // "" means "fed-" and 16 random hex digits
	CAName      string   // "" means DefaultCAName
	Coordinator string   // "" means DefaultCoordinator
	Address     string   // coordinator host:port; "" means DefaultAddress
	Hosts       []string // coordinator certificate hosts; nil means localhost, 127.0.0.1 and Address's host

	Mode        string               // "" means federation.ModeMHE
	Preset      string               // "" means DefaultPreset under federation.ModeMHE
	DP          *federation.DP       // nil means DefaultDP; &federation.DP{} turns DP off
	Model       federation.ModelSpec // zero Kind means "softmax"; zero Inputs and Classes mean DefaultInputs and DefaultClasses (not for kind "external")
	Training    federation.Training  // see DefaultTraining; Strategy may be any spec package strategy reads ("fedadam")
	Attestation *attest.Policy       // nil means no attestation (development); see federation.Manifest.AttestationRequired
}

// manifest fills the defaults and returns the manifest template, without
// parties.
func (o InitOptions) manifest(random io.Reader) (*federation.Manifest, error) {
	if o.Nodes < 1 || o.Nodes > MaxNodes {
		return nil, fmt.Errorf("pki: --nodes %d outside 1..%d", o.Nodes, MaxNodes)
	}
	if o.Threshold < 1 || o.Threshold > o.Nodes {
		return nil, fmt.Errorf("pki: --threshold %d outside 1..%d (the node count)", o.Threshold, o.Nodes)
	}
	m := &federation.Manifest{
		Version:    federation.ManifestVersion,
		Federation: o.Federation,
		Serial:     1,
		Threshold:  o.Threshold,
		MinCohort:  o.MinCohort,
		Mode:       o.Mode,
		Preset:     o.Preset,
		Model:      o.Model,
		Training:   o.Training,
	}
	if m.Federation == "" {
		var b [8]byte
		if _, err := io.ReadFull(random, b[:]); err != nil {
			return nil, fmt.Errorf("pki: reading random federation ID: %w", err)
		}
		m.Federation = "fed-" + hex.EncodeToString(b[:])
	}
	if m.MinCohort == 0 {
		m.MinCohort = m.Threshold
	}
	if m.Mode == "" {
		m.Mode = federation.ModeMHE
	}
	if m.Preset == "" && m.Mode == federation.ModeMHE {
		m.Preset = DefaultPreset
	}
	m.DP = DefaultDP
	if o.DP != nil {
		m.DP = *o.DP
	}
	if m.Model.Kind == "" {
		m.Model.Kind = "softmax"
	}
	if m.Model.Inputs == 0 && !m.Model.External() {
		m.Model.Inputs = DefaultInputs
	}
	if m.Model.Classes == 0 && !m.Model.External() {
		m.Model.Classes = DefaultClasses
	}
	m.Model.Hidden = slices.Clone(m.Model.Hidden)
	t := &m.Training
	if t.Rounds == 0 {
		t.Rounds = DefaultTraining.Rounds
	}
	if t.LocalEpochs == 0 {
		t.LocalEpochs = DefaultTraining.LocalEpochs
	}
	if t.Batch == 0 {
		t.Batch = DefaultTraining.Batch
	}
	if t.LearningRate == 0 {
		t.LearningRate = DefaultTraining.LearningRate
	}
	var err error
	if t.Strategy, err = federation.CanonicalStrategy(t.Strategy); err != nil {
		return nil, fmt.Errorf("pki: strategy %q: %w", o.Training.Strategy, err)
	}
	if o.Attestation != nil {
		m.Attestation = clonePolicy(*o.Attestation)
	}
	return m, nil
}

// InitFederation creates a complete federation in the new directory dir,
// the work of `cloister init`:
//
//	dir/ca/            ca.pem, ca-key.pem (0600): keep offline
//	dir/coordinator/   the coordinator's kit (whatever its name)
//	dir/node-1/ …      one kit per node, named after it (see Kit)
//
// Every kit holds the same manifest, signed by the new CA, listing every
// party's certificate fingerprint and audit key. The whole tree is built
// in a temporary sibling directory and renamed to dir at the end, so dir
// either appears complete or not at all. dir must not exist; its parent
// must.
func InitFederation(dir string, opts InitOptions, now time.Time, random io.Reader) error {
	random = orCryptoRand(random)
	m, err := opts.manifest(random)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("pki: refusing to overwrite %s: %w", dir, fs.ErrExist)
	}
	caName := opts.CAName
	if caName == "" {
		caName = DefaultCAName
	}
	coordName := opts.Coordinator
	if coordName == "" {
		coordName = DefaultCoordinator
	}
	addr := opts.Address
	if addr == "" {
		addr = DefaultAddress
	}
	hosts := opts.Hosts
	if hosts == nil {
		hosts = []string{"localhost", "127.0.0.1"}
		if h, _, err := net.SplitHostPort(addr); err == nil && h != "" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	ca, err := NewCA(caName, now, random)
	if err != nil {
		return err
	}
	newKit := func(role Role, name string, hosts []string) (*Kit, error) {
		cred, err := ca.Issue(Request{Role: role, Name: name, Hosts: hosts}, now, random)
		if err != nil {
			return nil, err
		}
		_, auditKey, err := ed25519.GenerateKey(random)
		if err != nil {
			return nil, fmt.Errorf("pki: generating audit key for %s %s: %w", role, name, err)
		}
		return &Kit{
			Config: KitConfig{
				Version: KitConfigVersion, Role: role, Name: name,
				Federation: m.Federation, CoordinatorAddress: addr,
			},
			CA: ca.Certificate(), Credential: cred, AuditKey: auditKey,
		}, nil
	}
	coord, err := newKit(RoleCoordinator, coordName, hosts)
	if err != nil {
		return err
	}
	m.Coordinator = coord.Party()
	kits := []*Kit{coord}
	for i := 1; i <= opts.Nodes; i++ {
		k, err := newKit(RoleNode, "node-"+strconv.Itoa(i), nil)
		if err != nil {
			return err
		}
		kits = append(kits, k)
		m.Members = append(m.Members, k.Party())
	}
	signed, err := federation.Sign(m, ca, random)
	if err != nil {
		return err
	}
	for _, k := range kits {
		k.SignedManifest = signed
		if err := k.check(); err != nil {
			return fmt.Errorf("pki: kit for %s: %w", k.Identity(), err)
		}
	}
	return createDir(dir, func(tmp string) error {
		if err := ca.saveInto(filepath.Join(tmp, CADir)); err != nil {
			return err
		}
		for _, k := range kits {
			sub := filepath.Join(tmp, k.Config.Name)
			if k.Config.Role == RoleCoordinator {
				sub = filepath.Join(tmp, CoordinatorDir)
			}
			if err := os.Mkdir(sub, dirPerm); err != nil {
				return fmt.Errorf("pki: %w", err)
			}
			if err := writeKitFiles(sub, k); err != nil {
				return err
			}
		}
		return nil
	})
}

// saveInto writes the CA files into a new plain directory (no temporary
// directory of its own: the caller's is atomic).
func (ca *CA) saveInto(dir string) error {
	keyPEM, err := encodeKey(ca.key)
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, dirPerm); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := createFile(filepath.Join(dir, CACertFile), encodeCert(ca.cert), publicPerm); err != nil {
		return err
	}
	return createFile(filepath.Join(dir, CAKeyFile), keyPEM, secretPerm)
}

// AddNode adds member id to the federation that [InitFederation] created in
// dir, the work of `cloister ca issue --name <id>`: it issues a certificate
// and audit key for id, signs a manifest with id appended to the members
// and Serial one higher, writes the new kit to dir/<id>, and updates the
// manifest of every existing kit in dir (the coordinator's and the
// members').
//
// Threshold and MinCohort are unchanged. If updating an existing kit fails,
// AddNode goes on with the others and reports every failure; rerun
// [UpdateManifest] on those with the new kit's manifest.json.
func AddNode(dir string, id fl.NodeID, now time.Time, random io.Reader) (*Kit, error) {
	if err := ValidateNodeID(id); err != nil {
		return nil, err
	}
	random = orCryptoRand(random)
	ca, err := LoadCA(filepath.Join(dir, CADir))
	if err != nil {
		return nil, err
	}
	coord, err := LoadKit(filepath.Join(dir, CoordinatorDir))
	if err != nil {
		return nil, err
	}
	old := coord.Manifest
	if _, dup := old.Member(id); dup {
		return nil, fmt.Errorf("pki: %s is already a member of federation %s", id, old.Federation)
	}
	cred, err := ca.IssueNode(id, now, random)
	if err != nil {
		return nil, err
	}
	_, auditKey, err := ed25519.GenerateKey(random)
	if err != nil {
		return nil, fmt.Errorf("pki: generating audit key for %s: %w", id, err)
	}
	k := &Kit{
		Config: KitConfig{
			Version: KitConfigVersion, Role: RoleNode, Name: string(id),
			Federation: old.Federation, CoordinatorAddress: coord.Config.CoordinatorAddress,
		},
		CA: ca.Certificate(), Credential: cred, AuditKey: auditKey,
	}
	m := *old
	m.Members = append(slices.Clone(old.Members), k.Party())
	m.Serial++
	if k.SignedManifest, err = federation.Sign(&m, ca, random); err != nil {
		return nil, err
	}
	if err := WriteKit(filepath.Join(dir, string(id)), k); err != nil {
		return nil, err
	}
	var errs []error
	for _, name := range append([]string{CoordinatorDir}, partyNames(old.Members)...) {
		if err := UpdateManifest(filepath.Join(dir, name), k.SignedManifest); err != nil {
			errs = append(errs, err)
		}
	}
	return k, errors.Join(errs...)
}
