package pki

import (
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/federation"
)

func initFed(t *testing.T, nodes, threshold int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fed")
	if err := InitFederation(dir, InitOptions{Nodes: nodes, Threshold: threshold}, t0, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestInitFederationLayout(t *testing.T) {
	dir := initFed(t, 5, 3)
	want := map[string]fs.FileMode{
		"ca/ca.pem":                 0o644,
		"ca/ca-key.pem":             0o600,
		"coordinator/ca.pem":        0o644,
		"coordinator/cert.pem":      0o644,
		"coordinator/key.pem":       0o600,
		"coordinator/audit-key.pem": 0o600,
		"coordinator/manifest.json": 0o644,
		"coordinator/config.json":   0o644,
		"node-5/key.pem":            0o600,
		"node-5/audit-key.pem":      0o600,
		"node-1/manifest.json":      0o644,
	}
	for name, perm := range want {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if st.Mode().Perm() != perm {
			t.Errorf("%s has mode %04o, want %04o", name, st.Mode().Perm(), perm)
		}
	}
	for _, sub := range []string{".", "ca", "coordinator", "node-3"} {
		st, err := os.Stat(filepath.Join(dir, sub))
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("directory %s: %v, mode %04o, want 0700", sub, err, st.Mode().Perm())
		}
	}
	// Nothing else: no temporary files or directories left behind.
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "ca coordinator node-1 node-2 node-3 node-4 node-5" {
		t.Errorf("federation directory holds %s", got)
	}
	parent, _ := os.ReadDir(filepath.Dir(dir))
	if len(parent) != 1 {
		t.Errorf("parent directory holds %d entries, want only fed", len(parent))
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "node-2")); len(entries) != 6 {
		t.Errorf("node kit holds %d files, want 6", len(entries))
	}
}

func TestKitRoundTrip(t *testing.T) {
	dir := initFed(t, 5, 3)
	coord, err := LoadKit(filepath.Join(dir, "coordinator"))
	if err != nil {
		t.Fatal(err)
	}
	m := coord.Manifest
	if len(m.Members) != 5 || m.Threshold != 3 || m.MinCohort != 3 || m.Mode != federation.ModeMHE || m.Serial != 1 {
		t.Errorf("manifest %+v", m)
	}
	if !strings.HasPrefix(m.Federation, "fed-") {
		t.Errorf("federation ID %q", m.Federation)
	}
	var kits []*Kit
	for _, id := range m.Nodes() {
		k, err := LoadKit(filepath.Join(dir, string(id)))
		if err != nil {
			t.Fatal(err)
		}
		if k.Config.Role != RoleNode || k.Config.Name != string(id) || k.Config.CoordinatorAddress != DefaultAddress {
			t.Errorf("config %+v", k.Config)
		}
		if got, _ := NodeID(k.Credential.Cert); got != id {
			t.Errorf("kit %s holds a certificate for %s", id, got)
		}
		kits = append(kits, k)
	}
	h1, _ := coord.Manifest.Hash()
	h2, _ := kits[4].Manifest.Hash()
	if h1 != h2 {
		t.Error("kits hold different manifests")
	}
	ca, err := LoadCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	if ca.Fingerprint() != Fingerprint(coord.CA) {
		t.Error("kit CA differs from the CA directory")
	}

	// Loaded kits talk to each other, and only as the manifest lists them.
	opts := Options{Now: at(t0.Add(time.Hour))}
	server, err := coord.TLSConfig(opts)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kits[2].TLSConfig(opts)
	if err != nil {
		t.Fatal(err)
	}
	r := pipeHandshake(t, server, client)
	if r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("kit handshake: server %v, client %v", r.serverErr, r.clientErr)
	}
	if id, _ := NodeID(r.server.PeerCertificates[0]); id != "node-3" {
		t.Errorf("server sees %q", id)
	}
	// A certificate from the right CA that the manifest does not list.
	rogue, err := ca.IssueNode("node-3", t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	client.Certificates[0] = rogue.TLSCertificate()
	r = pipeHandshake(t, server, client)
	if !errors.Is(r.serverErr, ErrNotMember) {
		t.Errorf("unlisted certificate: server error %v, want ErrNotMember", r.serverErr)
	}
}

func TestInitRefusesExisting(t *testing.T) {
	dir := initFed(t, 2, 1)
	if err := InitFederation(dir, InitOptions{Nodes: 2, Threshold: 1}, t0, nil); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second init: %v, want ErrExist", err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.Mkdir(empty, 0o700)
	if err := InitFederation(empty, InitOptions{Nodes: 2, Threshold: 1}, t0, nil); !errors.Is(err, fs.ErrExist) {
		t.Errorf("init over an empty directory: %v, want ErrExist", err)
	}
	for _, o := range []InitOptions{{Nodes: 0, Threshold: 1}, {Nodes: 3, Threshold: 4}, {Nodes: 3, Threshold: 2, MinCohort: 1}, {Nodes: 2, Threshold: 1, Mode: "magic"}} {
		if err := InitFederation(filepath.Join(t.TempDir(), "x"), o, t0, nil); err == nil {
			t.Errorf("InitFederation(%+v) succeeded", o)
		}
	}
}

func TestCreateFileExclusive(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.pem")
	if err := createFile(path, []byte("one"), secretPerm); err != nil {
		t.Fatal(err)
	}
	if err := createFile(path, []byte("two"), secretPerm); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second write: %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Errorf("file holds %q after a refused overwrite", b)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o", st.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in the directory, want 1 (temporary files left behind)", len(entries))
	}
}

func TestCASaveLoad(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(t.TempDir(), "ca")
	if err := f.ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	if err := f.ca.Save(dir); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second save: %v, want ErrExist", err)
	}
	st, err := os.Stat(filepath.Join(dir, CAKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key: %v, mode %04o", err, st.Mode().Perm())
	}
	ca, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Fingerprint() != f.ca.Fingerprint() || !ca.key.Equal(f.ca.key) {
		t.Error("loaded CA differs")
	}
	// The loaded CA issues certificates the original's configurations trust.
	node, err := ca.IssueNode("node-2", t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyPeer(f.ca.Certificate(), node.Cert, x509.ExtKeyUsageClientAuth, RoleNode, Options{Now: at(t0)}); err != nil {
		t.Errorf("certificate from the loaded CA: %v", err)
	}
	// A key readable by others is refused.
	os.Chmod(filepath.Join(dir, CAKeyFile), 0o644)
	if _, err := LoadCA(dir); !errors.Is(err, ErrInsecureKey) {
		t.Errorf("world-readable CA key: %v, want ErrInsecureKey", err)
	}
}

func TestLoadKitRefuses(t *testing.T) {
	dir := initFed(t, 2, 1)
	node := filepath.Join(dir, "node-1")
	os.Chmod(filepath.Join(node, KeyFile), 0o640)
	if _, err := LoadKit(node); !errors.Is(err, ErrInsecureKey) {
		t.Errorf("group-readable key: %v, want ErrInsecureKey", err)
	}
	os.Chmod(filepath.Join(node, KeyFile), 0o600)
	if _, err := LoadKit(node); err != nil {
		t.Fatal(err)
	}

	// Kits swapped: node-2's manifest entry does not match node-1's files.
	other := filepath.Join(dir, "node-2")
	swap := func(name string) {
		a, b := filepath.Join(node, name), filepath.Join(other, name)
		ab, _ := os.ReadFile(a)
		bb, _ := os.ReadFile(b)
		os.WriteFile(a, bb, 0o600)
		os.WriteFile(b, ab, 0o600)
	}
	swap(AuditKeyFile)
	if _, err := LoadKit(node); !errors.Is(err, ErrNotMember) {
		t.Errorf("foreign audit key: %v, want ErrNotMember", err)
	}
	swap(AuditKeyFile)
	swap(KeyFile)
	if _, err := LoadKit(node); !errors.Is(err, ErrBadKey) {
		t.Errorf("foreign TLS key: %v, want ErrBadKey", err)
	}
	swap(KeyFile)

	// A manifest from another federation.
	dir2 := initFed(t, 2, 1)
	m2, _ := os.ReadFile(filepath.Join(dir2, "node-1", ManifestFile))
	os.WriteFile(filepath.Join(node, ManifestFile), m2, 0o644)
	if _, err := LoadKit(node); !errors.Is(err, federation.ErrBadSignature) {
		t.Errorf("manifest of another federation: %v, want ErrBadSignature", err)
	}
}

func TestAddNodeAndUpdateManifest(t *testing.T) {
	dir := initFed(t, 3, 2)
	old, _ := os.ReadFile(filepath.Join(dir, "node-1", ManifestFile))
	k, err := AddNode(dir, "node-7", t0.Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	if k.Manifest.Serial != 2 || len(k.Manifest.Members) != 4 {
		t.Errorf("new manifest serial %d with %d members", k.Manifest.Serial, len(k.Manifest.Members))
	}
	for _, name := range []string{"coordinator", "node-1", "node-3", "node-7"} {
		kit, err := LoadKit(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := kit.Manifest.Member("node-7"); !ok || kit.Manifest.Serial != 2 {
			t.Errorf("%s: manifest serial %d lacks node-7", name, kit.Manifest.Serial)
		}
	}
	if _, err := AddNode(dir, "node-7", t0, nil); err == nil {
		t.Error("adding node-7 twice succeeded")
	}
	// No rollback to the older manifest.
	if err := UpdateManifest(filepath.Join(dir, "node-1"), old); err == nil || !strings.Contains(err.Error(), "serial") {
		t.Errorf("rollback: %v", err)
	}
	// The new node cannot take a manifest that does not list it.
	if err := UpdateManifest(filepath.Join(dir, "node-7"), old); err == nil {
		t.Error("node-7 accepted a manifest without it")
	}
}
