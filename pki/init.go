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
	// Rule is the aggregation rule, any spec package robust reads ("krum",
	// "trimmed:0.1"); "" means the mean. f, unless given, is the largest the
	// rule tolerates with MinCohort updates (federation.CanonicalRule).
	Rule string
	// Compress is how members compress their updates, any spec package
	// compress reads ("topk:0.01", "q8"); "" or "none" means none. Modes
	// plain and tee only.
	Compress string
	// InsecureAttacks marks the manifest as allowing Byzantine members
	// (cloister node --insecure-attack): tests and research only.
	InsecureAttacks bool
	// AggregatorAttestation is the policy mode tee's aggregator must meet
	// (required in mode tee, with formats); InitFederation then writes the
	// aggregator's kit too, named DefaultAggregator.
	AggregatorAttestation *attest.Policy
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
	if m.Rule, err = federation.CanonicalRule(o.Rule, m.MinCohort); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if m.Compress, err = federation.CanonicalCompress(o.Compress); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	m.InsecureAttacks = o.InsecureAttacks
	switch {
	case m.Mode == federation.ModeTEE && o.AggregatorAttestation == nil:
		return nil, fmt.Errorf("pki: mode %s needs the aggregator's attestation policy (--aggregator-tee): nodes seal their updates only to an attested aggregator", federation.ModeTEE)
	case m.Mode != federation.ModeTEE && o.AggregatorAttestation != nil:
		return nil, fmt.Errorf("pki: an aggregator attestation policy is for mode %s, the mode is %s", federation.ModeTEE, m.Mode)
	case o.AggregatorAttestation != nil:
		m.AggregatorAttestation = clonePolicy(*o.AggregatorAttestation)
	}
	return m, nil
}

// InitFederation creates a complete federation in the new directory dir,
// the work of `cloister init`:
//
//	dir/ca/            ca.pem, ca-key.pem (0600): keep offline
//	dir/coordinator/   the coordinator's kit (whatever its name)
//	dir/node-1/ …      one kit per node, named after it (see Kit)
//	dir/aggregator/    in mode tee, the aggregator's kit
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
	if m.Mode == federation.ModeTEE {
		k, err := newKit(RoleNode, DefaultAggregator, nil)
		if err != nil {
			return err
		}
		kits = append(kits, k)
		p := k.Party()
		m.Aggregator = &p
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

// AddNode adds member id to the running federation that [InitFederation]
// created in dir, the work of `cloister ca issue --name <id>`: an
// [Amend] that adds one member. It returns the new member's kit.
func AddNode(dir string, id fl.NodeID, now time.Time, random io.Reader) (*Kit, error) {
	res, err := Amend(dir, "", Amendment{Add: []fl.NodeID{id}}, now, random)
	if res == nil || len(res.Added) == 0 {
		return nil, err
	}
	return res.Added[0], err
}

// Amendment is what [Amend] changes in a running federation. Add and Renew
// name members; the rest is federation.Amendment's.
type Amendment struct {
	Add    []fl.NodeID // new members: each gets a certificate, an audit key and a kit
	Remove []fl.NodeID
	Renew  []fl.NodeID // members whose certificates are renewed (same audit key)
	federation.Amendment
}

// Amended is what [Amend] did: the new signed manifest, the kits it
// wrote for new members and the kits it renewed.
type Amended struct {
	Manifest       *federation.Manifest
	SignedManifest []byte
	Added          []*Kit
	Renewed        []*Kit
	Change         federation.Change
}

// Amend amends the running federation that [InitFederation] created in
// dir, with the CA in caDir ("": dir/ca), the work of `cloister ca amend`:
// it signs the coordinator's
// manifest amended by a (federation.Amend: the same session, Serial one
// higher), issues a certificate, an audit key and a kit (dir/<id>) to each
// new member, renews the certificates of a.Renew in their kits, and writes
// the new manifest into every kit that it still lists (the coordinator's
// and the members'). The running coordinator takes it from its kit at the
// next poll and puts it in force at the next round boundary.
//
// Nothing is written if the amendment is refused. If updating an existing
// kit fails, Amend goes on with the others and reports every failure;
// rerun [UpdateManifest] on those with the coordinator kit's manifest.json.
func Amend(dir, caDir string, a Amendment, now time.Time, random io.Reader) (*Amended, error) {
	random = orCryptoRand(random)
	if caDir == "" {
		caDir = filepath.Join(dir, CADir)
	}
	ca, err := LoadCA(caDir)
	if err != nil {
		return nil, err
	}
	coord, err := LoadKit(filepath.Join(dir, CoordinatorDir))
	if err != nil {
		return nil, err
	}
	old := coord.Manifest
	fa := a.Amendment
	fa.Add, fa.Remove, fa.Renew = nil, nil, nil
	var added []*Kit
	for _, id := range a.Add {
		if err := ValidateNodeID(id); err != nil {
			return nil, err
		}
		if _, dup := old.Member(id); dup {
			return nil, fmt.Errorf("pki: %s is already a member of federation %s", id, old.Federation)
		}
		if _, err := os.Stat(filepath.Join(dir, string(id))); err == nil {
			return nil, fmt.Errorf("pki: %s already exists: a kit of an earlier member? Remove it or choose another name", filepath.Join(dir, string(id)))
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
		added = append(added, k)
		fa.Add = append(fa.Add, k.Party())
	}
	for _, id := range a.Remove {
		fa.Remove = append(fa.Remove, string(id))
	}
	renewed := map[fl.NodeID]*Credential{}
	for _, id := range a.Renew {
		p, ok := old.Member(id)
		if !ok {
			return nil, fmt.Errorf("pki: cannot renew the certificate of %s: not a member of federation %s serial %d", id, old.Federation, old.Serial)
		}
		cred, err := ca.IssueNode(id, now, random)
		if err != nil {
			return nil, err
		}
		renewed[id] = cred
		fa.Renew = append(fa.Renew, federation.Principal{Name: p.Name, Fingerprint: Fingerprint(cred.Cert), AuditKey: p.AuditKey})
	}
	m, err := federation.Amend(old, fa)
	if err != nil {
		return nil, err
	}
	ch, err := federation.CheckAmendment(old, m)
	if err != nil {
		return nil, err
	}
	signed, err := federation.Sign(m, ca, random)
	if err != nil {
		return nil, err
	}
	res := &Amended{Manifest: m, SignedManifest: signed, Change: ch}
	for _, k := range added {
		k.SignedManifest, k.Manifest = signed, m
		if err := WriteKit(filepath.Join(dir, k.Config.Name), k); err != nil {
			return res, err
		}
		res.Added = append(res.Added, k)
	}
	var errs []error
	for _, id := range a.Renew {
		kd := filepath.Join(dir, string(id))
		if err := renewKit(kd, renewed[id], signed); err != nil {
			errs = append(errs, err)
			continue
		}
		k, err := LoadKit(kd)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		res.Renewed = append(res.Renewed, k)
	}
	for _, name := range append([]string{CoordinatorDir}, partyNames(old.Members)...) {
		if _, still := m.Member(fl.NodeID(name)); !still && name != CoordinatorDir {
			continue // removed: its kit keeps the manifest it ran under
		}
		if _, renew := renewed[fl.NodeID(name)]; renew {
			continue
		}
		if err := UpdateManifest(filepath.Join(dir, name), signed); err != nil {
			errs = append(errs, err)
		}
	}
	return res, errors.Join(errs...)
}

// renewKit replaces the credential and the manifest of the kit in dir:
// the key first, then the certificate, then the manifest that lists it.
func renewKit(dir string, cred *Credential, signed []byte) error {
	keyPEM, err := encodeKey(cred.Key)
	if err != nil {
		return err
	}
	if err := replaceFile(filepath.Join(dir, KeyFile), keyPEM, secretPerm); err != nil {
		return err
	}
	if err := replaceFile(filepath.Join(dir, CertFile), encodeCert(cred.Cert), publicPerm); err != nil {
		return err
	}
	return replaceFile(filepath.Join(dir, ManifestFile), signed, publicPerm)
}
