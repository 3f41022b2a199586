package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloisterfl/cloister/internal/atomicfile"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/store"
)

const kitUsage = `Usage:
  cloister kit install --from SRC --to DST
      copy the kit in SRC into the new directory DST (0700, keys 0600, owned by
      whoever runs this) and check it as the daemons load it. SRC may be a
      read-only mount whose key files the group can read: a Kubernetes Secret
      mounted with the pod's fsGroup, which the daemons refuse to load as it
      is (keys must be private to their owner). A node's kit must bring its
      at-rest key, store.key. If DST already holds the same files, nothing is
      done (a restarted pod); if it holds others, nothing is written.
`

// kitFiles are the files of a kit directory (pki.WriteKit's, and a
// node's at-rest key) and whether each is secret.
var kitFiles = []struct {
	name   string
	secret bool
}{
	{pki.CACertFile, false},
	{pki.CertFile, false},
	{pki.KeyFile, true},
	{pki.AuditKeyFile, true},
	{pki.ManifestFile, false},
	{pki.ConfigFile, false},
	{store.KeyFile, true},
	{verticalKeyFile, true}, // a vertical party's key share, when dealt
}

// maxKitFile bounds each file read from a kit: a manifest of many members
// is the largest, far below this.
const maxKitFile = 4 << 20

func runKit(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprint(stdout, kitUsage)
		if len(args) == 0 {
			return withHint(errors.New("kit needs a subcommand"), "cloister kit install --from SRC --to DST")
		}
		return nil
	}
	if args[0] != "install" {
		return withHint(fmt.Errorf("unknown kit subcommand %q", args[0]), "cloister kit install --from SRC --to DST")
	}
	flags := newFlags("kit install", stderr)
	from := flags.String("from", "", "the kit to copy, e.g. a Secret's mount (required)")
	to := flags.String("to", "", "the new directory to copy it to, e.g. on a memory-backed emptyDir (required)")
	if err := parse(flags, args[1:]); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		return withHint(errors.New("--from and --to are required"), "cloister kit install --from /etc/cloister/secret --to /run/cloister/kit")
	}
	files, err := readKitFiles(*from)
	if err != nil {
		return err
	}
	if same, err := sameKitFiles(*to, files); err != nil {
		return err
	} else if same {
		fmt.Fprintf(stdout, "%s already holds the kit in %s\n", *to, *from)
		return nil
	}
	var kit *pki.Kit
	err = atomicfile.CreateDir(*to, 0o700, func(tmp string) error {
		for _, f := range files {
			perm := kitPublicPerm
			if f.secret {
				perm = atomicfile.SecretPerm
			}
			if err := atomicfile.Create(filepath.Join(tmp, f.name), f.data, perm); err != nil {
				return err
			}
		}
		// The files are byte copies: name the originals in errors.
		inFrom := func(err error) error {
			return errors.New(strings.ReplaceAll(err.Error(), filepath.Clean(tmp), filepath.Clean(*from)))
		}
		var err error
		if kit, err = pki.LoadKit(tmp); err != nil {
			return fmt.Errorf("%s does not hold a valid kit: %w", *from, inFrom(err))
		}
		if kit.Config.Role == pki.RoleNode {
			if _, err := os.Stat(filepath.Join(tmp, store.KeyFile)); err != nil {
				return withHint(fmt.Errorf("%s has no %s: a node's at-rest key must come with its kit, or the node cannot open its state after a restart", *from, store.KeyFile),
					fmt.Sprintf("create it once where the kit is kept, before the Secret: (umask 077; head -c %d /dev/urandom > KIT/%s)", store.KeySize, store.KeyFile))
			}
			if _, err := store.LoadOrCreateKey(tmp); err != nil {
				return inFrom(err)
			}
		}
		return nil
	})
	if errors.Is(err, fs.ErrExist) {
		return withHint(fmt.Errorf("%s exists and does not hold the kit in %s: %w", *to, *from, err), "--to names a new directory")
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "installed %s's kit of federation %s in %s\n", kit.Identity(), kit.Manifest.Federation, *to)
	return nil
}

// kitPublicPerm is the mode of a kit's certificates, manifest and config.
const kitPublicPerm fs.FileMode = 0o644

type kitFile struct {
	name   string
	secret bool
	data   []byte
}

// readKitFiles reads the kit files present in dir, following symbolic
// links (a Secret's files are links into a hidden directory). The daemons'
// files must all be there; store.key is optional here. A secret file that
// others can read is refused: a group-readable one (a Secret mounted with
// fsGroup) is what this command is for.
func readKitFiles(dir string) ([]kitFile, error) {
	var out []kitFile
	for _, f := range kitFiles {
		path := filepath.Join(dir, f.name)
		st, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) && (f.name == store.KeyFile || f.name == verticalKeyFile) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("--from: %w", err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("--from: %s is not a regular file", path)
		}
		if st.Size() > maxKitFile {
			return nil, fmt.Errorf("--from: %s has %d bytes: not a kit file (at most %d)", path, st.Size(), maxKitFile)
		}
		if p := st.Mode().Perm(); f.secret && p&0o007 != 0 {
			return nil, withHint(fmt.Errorf("--from: %s has mode %04o: anyone can read the key", path, p),
				"mount the Secret with defaultMode 0440 (and the pod's fsGroup), or chmod o-rwx the kit's keys")
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--from: %w", err)
		}
		out = append(out, kitFile{name: f.name, secret: f.secret, data: data})
	}
	return out, nil
}

// sameKitFiles reports whether dir exists and holds exactly files, with
// private keys; false if dir does not exist.
func sameKitFiles(dir string, files []kitFile) (bool, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("--to: %w", err)
	}
	if len(ents) != len(files) {
		return false, nil
	}
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		st, err := os.Lstat(path)
		if err != nil || !st.Mode().IsRegular() || f.secret && st.Mode().Perm()&0o077 != 0 {
			return false, nil
		}
		data, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(data, f.data) {
			return false, nil
		}
	}
	return true, nil
}
