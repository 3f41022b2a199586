package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
)

func runCA(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprint(stdout, `Usage:
  cloister ca init --dir ca/ [--name NAME]
      create a federation CA (keep it offline); use it with 'cloister init --ca ca/'
  cloister ca issue --name node-7 --dir fed/ [--ca fed/ca]
      add member node-7 to the federation in fed/: issue its kit (fed/node-7), sign a
      manifest that lists it, and update the manifest of every kit in fed/
  cloister ca issue --role observer [--dir fed/ | --ca ca/] [--out DIR] [--validity D] NAME
      issue a certificate that may read the coordinator's dashboard, /status, /rounds
      and /metrics (coordinator --metrics-tls) and do nothing else; --role admin is
      reserved for future actions and today reads what an observer reads. Writes
      DIR (default fed/observer-NAME): ca.pem, cert.pem, key.pem (0600)
  cloister ca crl [--ca fed/ca | --dir fed/]
      the CA's revocation list in force, fed/ca/crl.der (an empty one, made now, if
      nothing is revoked yet): the file the daemons start with (--crl)
  cloister ca revoke [--ca fed/ca] [--dir fed/] node-2
      revoke node-2's certificate: write a new CRL, signed by the CA, to fed/ca/crl.der;
      copy it to the file every daemon's --crl names: they load it within seconds
`)
		if len(args) == 0 {
			return errors.New("no ca subcommand")
		}
		return nil
	}
	switch args[0] {
	case "init":
		return runCAInit(args[1:], stdout, stderr)
	case "issue":
		return runCAIssue(args[1:], stdout, stderr)
	case "revoke":
		return runCARevoke(args[1:], stdout, stderr)
	case "crl":
		return runCACRL(args[1:], stdout, stderr)
	}
	return withHint(fmt.Errorf("unknown ca subcommand %q", args[0]), "cloister ca init, cloister ca issue, cloister ca crl or cloister ca revoke")
}

func runCAInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ca init", stderr)
	dir := fs.String("dir", "", "new directory for the CA (required)")
	name := fs.String("name", pki.DefaultCAName, "the CA's name")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return withHint(errors.New("no --dir"), "cloister ca init --dir ca/")
	}
	ca, err := pki.NewCA(*name, time.Now(), nil)
	if err != nil {
		return err
	}
	if err := ca.Save(*dir); err != nil {
		if errors.Is(err, os.ErrExist) {
			return withHint(err, "a CA is never overwritten: pick a new --dir")
		}
		return err
	}
	fmt.Fprintf(stdout, "CA %q in %s (fingerprint %s): keep %s offline\n", *name, *dir, ca.Fingerprint(), filepath.Join(*dir, pki.CAKeyFile))
	return nil
}

func runCAIssue(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ca issue", stderr)
	caDir := fs.String("ca", "", "the federation CA directory (default: DIR/ca)")
	name := fs.String("name", "", "the new member's name, e.g. node-7 (required; or the last argument)")
	dir := fs.String("dir", "", "the federation directory: coordinator/ and the members' kits (required for a node)")
	role := fs.String("role", "node", "node (a new member), observer (may read the coordinator's dashboard and metrics) or admin (reserved; reads what an observer reads)")
	out := fs.String("out", "", "observer or admin: the new directory for the credential (default: DIR/ROLE-NAME)")
	validity := fs.Duration("validity", 0, "observer or admin: how long the certificate is valid (default: a year)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 1 && *name == "" {
		*name = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return withHint(fmt.Errorf("unexpected argument %q", fs.Arg(0)), "cloister ca issue --role observer --dir fed/ NAME")
	}
	switch *role {
	case "node":
	case "observer", "admin":
		return issueObserver(*role, *name, *dir, *caDir, *out, *validity, stdout)
	default:
		return withHint(fmt.Errorf("--role %q", *role), "use node, observer or admin")
	}
	if *name == "" || *dir == "" {
		return withHint(errors.New("--name and --dir are required"), "cloister ca issue --name node-7 --dir fed/")
	}
	id := fl.NodeID(*name)
	if err := pki.ValidateNodeID(id); err != nil {
		return withHint(err, "names are 1 to 64 characters from a-z, 0-9 and '-'")
	}
	if *caDir == "" {
		*caDir = filepath.Join(*dir, pki.CADir)
	}
	k, err := addNode(*dir, *caDir, id, time.Now())
	if k != nil {
		fmt.Fprintf(stdout, "issued %s's kit in %s; federation %s now has %d members (manifest serial %d)\n",
			id, filepath.Join(*dir, *name), k.Manifest.Federation, len(k.Manifest.Members), k.Manifest.Serial)
		fmt.Fprintf(stdout, "the manifest changed: the next session sets up new keys with every member\n")
	}
	return err
}

// addNode is pki.AddNode with the CA in its own directory: it issues a kit
// for id, signs a manifest listing it, writes the kit to dir/id and updates
// the manifest of every kit in dir.
func addNode(dir, caDir string, id fl.NodeID, now time.Time) (*pki.Kit, error) {
	ca, err := pki.LoadCA(caDir)
	if err != nil {
		return nil, err
	}
	coord, err := pki.LoadKit(filepath.Join(dir, pki.CoordinatorDir))
	if err != nil {
		return nil, err
	}
	old := coord.Manifest
	if _, dup := old.Member(id); dup {
		return nil, fmt.Errorf("%s is already a member of federation %s", id, old.Federation)
	}
	cred, err := ca.IssueNode(id, now, nil)
	if err != nil {
		return nil, err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	k := &pki.Kit{Config: pki.KitConfig{Version: pki.KitConfigVersion, Role: pki.RoleNode, Name: string(id),
		Federation: old.Federation, CoordinatorAddress: coord.Config.CoordinatorAddress},
		CA: ca.Certificate(), Credential: cred, AuditKey: key}
	m := *old
	m.Members = append(slices.Clone(old.Members), k.Party())
	m.Serial++
	if k.SignedManifest, err = federation.Sign(&m, ca, nil); err != nil {
		return nil, err
	}
	if k.Manifest, err = federation.Verify(k.SignedManifest, ca.Certificate()); err != nil {
		return nil, err
	}
	if err := pki.WriteKit(filepath.Join(dir, string(id)), k); err != nil {
		return nil, err
	}
	var errs []error
	for _, p := range append([]federation.Principal{{Name: pki.CoordinatorDir}}, old.Members...) {
		if err := pki.UpdateManifest(filepath.Join(dir, p.Name), k.SignedManifest); err != nil {
			errs = append(errs, err)
		}
	}
	return k, errors.Join(errs...)
}

// issueObserver writes an observer's or admin's credential (ca.pem,
// cert.pem, key.pem) to a new directory.
func issueObserver(role, name, dir, caDir, out string, validity time.Duration, stdout io.Writer) error {
	if name == "" {
		return withHint(errors.New("no name"), "cloister ca issue --role "+role+" --dir fed/ alice")
	}
	if err := pki.ValidateName(name); err != nil {
		return withHint(err, "names are 1 to 64 characters from a-z, 0-9 and '-'")
	}
	if caDir == "" {
		if dir == "" {
			return withHint(errors.New("no --ca and no --dir"), "cloister ca issue --role "+role+" --dir fed/ "+name)
		}
		caDir = filepath.Join(dir, pki.CADir)
	}
	if out == "" {
		if dir == "" {
			return withHint(errors.New("no --out and no --dir"), "cloister ca issue --role "+role+" --ca ca/ --out "+role+"-"+name+" "+name)
		}
		out = filepath.Join(dir, role+"-"+name)
	}
	var r pki.Role
	if err := r.UnmarshalText([]byte(role)); err != nil {
		return err
	}
	ca, err := pki.LoadCA(caDir)
	if err != nil {
		return err
	}
	cred, err := ca.Issue(pki.Request{Role: r, Name: name, Validity: validity}, time.Now(), nil)
	if err != nil {
		return err
	}
	if err := pki.WriteCredential(out, ca.Certificate(), cred); err != nil {
		if errors.Is(err, os.ErrExist) {
			return withHint(err, "a credential is never overwritten: pick another --out")
		}
		return err
	}
	fmt.Fprintf(stdout, "issued %s %s's certificate in %s (valid until %s): it may read the coordinator's dashboard, /status, /rounds and /metrics, and do nothing else\n",
		role, name, out, cred.Cert.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "  curl --cacert %s --cert %s --key %s https://COORDINATOR:PORT/status\n",
		filepath.Join(out, pki.CACertFile), filepath.Join(out, pki.CertFile), filepath.Join(out, pki.KeyFile))
	return nil
}
func runCACRL(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ca crl", stderr)
	caDir := fs.String("ca", "", "the federation CA directory (default: DIR/ca)")
	dir := fs.String("dir", "", "the federation directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *caDir == "" {
		if *dir == "" {
			return withHint(errors.New("neither --ca nor --dir"), "cloister ca crl --ca fed/ca")
		}
		*caDir = filepath.Join(*dir, pki.CADir)
	}
	ca, err := pki.LoadCA(*caDir)
	if err != nil {
		return err
	}
	l, err := ca.CRL(*caDir, time.Now())
	if err != nil {
		return err
	}
	path := filepath.Join(*caDir, pki.CRLFile)
	fmt.Fprintf(stdout, "%s: %s\n", path, l)
	fmt.Fprintf(stdout, "start every daemon with --crl pointing to a copy of it; replace the copies after each 'cloister ca revoke'\n")
	return nil
}

func runCARevoke(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ca revoke", stderr)
	caDir := fs.String("ca", "", "the federation CA directory (default: DIR/ca)")
	dir := fs.String("dir", "", "the federation directory: coordinator/ and the members' kits (default: the parent of --ca)")
	var names []string // flags may come before and after the names
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		names, args = append(names, fs.Arg(0)), fs.Args()[1:]
	}
	if len(names) == 0 || *caDir == "" && *dir == "" {
		return withHint(errors.New("no member to revoke, or neither --ca nor --dir"), "cloister ca revoke --ca fed/ca node-2")
	}
	if *caDir == "" {
		*caDir = filepath.Join(*dir, pki.CADir)
	}
	if *dir == "" {
		*dir = filepath.Dir(filepath.Clean(*caDir))
	}
	l, err := revoke(*dir, *caDir, names, time.Now())
	if err != nil {
		return err
	}
	path := filepath.Join(*caDir, pki.CRLFile)
	fmt.Fprintf(stdout, "revoked %s: %s in %s\n", strings.Join(names, ", "), l, path)
	fmt.Fprintf(stdout, "copy %s to the file every daemon's --crl names (coordinator and nodes): they load it within %s, exclude the revoked, re-key without them and refuse their connections\n",
		path, coordinator.CRLPoll)
	return nil
}

// revoke revokes the certificates of the named parties of the federation in
// dir (members or the coordinator, as the manifest lists them): it reads
// each one's certificate from its kit, checks it against the manifest's
// fingerprint, and writes a CRL listing them and every certificate revoked
// before to caDir/crl.der. Nothing is written unless every name is known.
func revoke(dir, caDir string, names []string, now time.Time) (*pki.RevocationList, error) {
	ca, err := pki.LoadCA(caDir)
	if err != nil {
		return nil, err
	}
	coord, err := pki.LoadKit(filepath.Join(dir, pki.CoordinatorDir))
	if err != nil {
		return nil, withHint(err, "--dir (or the parent of --ca) must be the federation directory that cloister init wrote")
	}
	m := coord.Manifest
	var certs []*x509.Certificate
	for _, name := range names {
		p, ok := m.Member(fl.NodeID(name))
		sub := filepath.Join(dir, name)
		if name == m.Coordinator.Name {
			p, ok, sub = m.Coordinator, true, filepath.Join(dir, pki.CoordinatorDir)
		}
		if !ok {
			return nil, withHint(fmt.Errorf("%q is not a member of federation %s (members: %s)", name, m.Federation, strings.Join(memberNames(m), ", ")),
				"name a member the manifest lists")
		}
		cert, err := pki.ReadCertificate(filepath.Join(sub, pki.CertFile))
		if err != nil {
			return nil, withHint(err, fmt.Sprintf("revoking %s needs its certificate, from its kit %s", name, sub))
		}
		if pki.Fingerprint(cert) != p.Fingerprint {
			return nil, fmt.Errorf("%s: the certificate of %s is not the one the manifest lists (fingerprint %s, manifest %s)",
				filepath.Join(sub, pki.CertFile), name, pki.Fingerprint(cert)[:16], p.Fingerprint[:min(16, len(p.Fingerprint))])
		}
		certs = append(certs, cert)
	}
	prev, err := pki.ReadCRL(filepath.Join(caDir, pki.CRLFile), ca.Certificate())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	l, err := ca.Revoke(prev, certs, now)
	if err != nil {
		return nil, err
	}
	if err := ca.SaveCRL(caDir, l); err != nil {
		return nil, err
	}
	return l, nil
}

func memberNames(m *federation.Manifest) []string {
	var s []string
	for _, p := range m.Members {
		s = append(s, p.Name)
	}
	return s
}
