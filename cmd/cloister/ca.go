package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
      add member node-7 to the running federation in fed/: issue its kit (fed/node-7),
      sign an amended manifest that lists it, and update the manifest of every kit in
      fed/ (the same as cloister ca amend --add node-7)
  cloister ca amend --dir fed/ [--add node-6,...] [--remove node-3,...] [--renew node-1,...]
                    [--threshold T] [--min-cohort K] [--add-rounds N] [--epsilon E]
      amend the running federation: sign a manifest of the same session, serial one
      higher, write it into every kit it lists (new members get kits); the coordinator
      picks it up from its kit and puts it in force at the next round boundary, by a
      re-key that carries the current model over when members or t change. Mode, preset,
      model, training, DP noise and clip and the attestation policy are fixed for a
      session; every member checks the amendment itself
  cloister ca renew --dir fed/ node-2
      renew node-2's certificate before it expires, in its kit, by an amendment: the
      running node takes it from its kit when the amendment takes effect
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
	case "amend":
		return runCAAmend(args[1:], stdout, stderr)
	case "renew":
		return runCARenew(args[1:], stdout, stderr)
	}
	return withHint(fmt.Errorf("unknown ca subcommand %q", args[0]), "cloister ca init, issue, amend, renew, crl or revoke")
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
	res, err := pki.Amend(*dir, *caDir, pki.Amendment{Add: []fl.NodeID{id}}, time.Now(), nil)
	if res != nil && len(res.Added) > 0 {
		fmt.Fprintf(stdout, "issued %s's kit in %s\n", id, filepath.Join(*dir, *name))
		printAmended(stdout, res)
	}
	return err
}

// printAmended says what an amendment changed and how it takes effect.
func printAmended(stdout io.Writer, res *pki.Amended) {
	m := res.Manifest
	fmt.Fprintf(stdout, "signed manifest serial %d of federation %s: %s; %d members, t = %d, %d rounds\n",
		m.Serial, m.Federation, res.Change, len(m.Members), m.Threshold, m.Training.Rounds)
	fmt.Fprintf(stdout, "the running coordinator takes it from its kit within seconds and puts it in force at the next round boundary")
	if res.Change.Rekey() {
		fmt.Fprintf(stdout, " (a re-key that carries the current model over)")
	}
	fmt.Fprintln(stdout)
	for _, k := range res.Added {
		fmt.Fprintf(stdout, "  start %s with its kit: cloister node --kit %s ...\n", k.Config.Name, k.Config.Name)
	}
}

func runCAAmend(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ca amend", stderr)
	dir := fs.String("dir", "", "the federation directory: ca/, coordinator/ and the members' kits (required)")
	caDir := fs.String("ca", "", "the federation CA directory (default: DIR/ca)")
	add := fs.String("add", "", "comma-separated new members, each issued a kit DIR/NAME")
	remove := fs.String("remove", "", "comma-separated members to remove")
	renew := fs.String("renew", "", "comma-separated members whose certificates to renew (same audit key)")
	threshold := fs.Int("threshold", 0, "the new threshold t (0: unchanged)")
	minCohort := fs.Int("min-cohort", 0, "the new minimum cohort (0: unchanged; fixed under DP)")
	addRounds := fs.Int("add-rounds", 0, "rounds to add to the session")
	epsilon := fs.Float64("epsilon", 0, "the new ε budget (0: unchanged)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 {
		return withHint(errors.New("want --dir and no arguments"), "cloister ca amend --dir fed/ --add node-6")
	}
	names := func(s string) []fl.NodeID {
		var ids []fl.NodeID
		for _, n := range strings.Split(s, ",") {
			if n = strings.TrimSpace(n); n != "" {
				ids = append(ids, fl.NodeID(n))
			}
		}
		return ids
	}
	a := pki.Amendment{Add: names(*add), Remove: names(*remove), Renew: names(*renew)}
	a.Threshold, a.MinCohort, a.AddRounds, a.Epsilon = *threshold, *minCohort, *addRounds, *epsilon
	res, err := pki.Amend(*dir, *caDir, a, time.Now(), nil)
	if res != nil {
		printAmended(stdout, res)
	}
	return err
}

func runCARenew(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ca renew", stderr)
	dir := fs.String("dir", "", "the federation directory (required)")
	caDir := fs.String("ca", "", "the federation CA directory (default: DIR/ca)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() != 1 {
		return withHint(errors.New("want --dir and one member"), "cloister ca renew --dir fed/ node-2")
	}
	id := fl.NodeID(fs.Arg(0))
	res, err := pki.Amend(*dir, *caDir, pki.Amendment{Renew: []fl.NodeID{id}}, time.Now(), nil)
	if res != nil {
		for _, k := range res.Renewed {
			fmt.Fprintf(stdout, "renewed %s's certificate in %s: sha256 %s, valid until %s\n", id, filepath.Join(*dir, string(id)),
				pki.Fingerprint(k.Credential.Cert), k.Credential.Cert.NotAfter.UTC().Format(time.RFC3339))
		}
		printAmended(stdout, res)
	}
	return err
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
