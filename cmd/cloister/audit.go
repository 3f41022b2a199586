package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/pki"
)

func runAudit(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprint(stdout, `Usage:
  cloister audit verify [--kit KIT] DIR
      verify every audit log (*.log) under DIR: the hash chain, every signature
      (audit keys from the signed manifest of KIT, or of the first kit found
      under DIR), no round committed twice, no node revealing twice, that
      every round the coordinator committed carries its leader's
      cosignature, and that all logs agree on every committed model
`)
		if len(args) == 0 || isHelp(args[0]) {
			if len(args) == 0 {
				return errors.New("no audit subcommand")
			}
			return nil
		}
		return withHint(fmt.Errorf("unknown audit subcommand %q", args[0]), "cloister audit verify DIR")
	}
	fs := newFlags("audit verify", stderr)
	kitDir := fs.String("kit", "", "a kit whose signed manifest gives the audit keys (default: the first kit under DIR)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return withHint(errors.New("want one directory"), "cloister audit verify [--kit KIT] DIR")
	}
	dir := fs.Arg(0)
	if *kitDir == "" {
		k, err := findKit(dir)
		if err != nil {
			return withHint(err, "pass --kit with a kit of the federation")
		}
		*kitDir = k
	}
	kit, err := pki.LoadKit(*kitDir)
	if err != nil {
		return fmt.Errorf("loading the manifest: %w", err)
	}
	man := kit.Manifest
	keys, err := federationKeys(dir, kit)
	if err != nil {
		return err
	}
	res, err := audit.VerifyDir(dir, audit.Federation{Keys: keys, Coordinator: man.Coordinator.Name, Aggregator: man.AggregatorName()})
	bad := 0
	for _, r := range res {
		if r.Err != nil {
			bad++
			fmt.Fprintf(stdout, "FAIL %s: %v\n", r.Path, r.Err)
			continue
		}
		eps := ""
		if m := r.Summary.State.MicroEpsilon; m > 0 {
			eps = fmt.Sprintf(", ε spent %.6g", dp.EpsilonFromMicro(m))
		}
		cosigned := ""
		if r.Summary.State.Actor == man.Coordinator.Name {
			cosigned = " (each cosigned by its leader)"
		}
		fmt.Fprintf(stdout, "ok   %s: %d records, %d rounds committed%s, %d reveals%s, head %s\n", r.Path, r.Summary.Records,
			r.Summary.Rounds, cosigned, r.Summary.Kinds[audit.Revealed], eps, r.Summary.Last.String()[:16])
	}
	if err != nil {
		if bad == 0 {
			return err // no logs, or the logs disagree
		}
		var ve *audit.VerifyError
		if errors.As(err, &ve) {
			return fmt.Errorf("%d of %d logs failed; first: %s line %d (seq %d): %s", bad, len(res), ve.Path, ve.Line, ve.Seq, ve.Reason)
		}
		return fmt.Errorf("%d of %d logs failed: %w", bad, len(res), err)
	}
	fmt.Fprintf(stdout, "%d logs verified with the audit keys of federation %s (manifest serial %d)\n", len(res), man.Federation, man.Serial)
	return nil
}

// federationKeys returns the audit keys of every party of kit's
// federation: those of kit's manifest and of every other manifest.json
// under dir that the federation CA signed for the same session (earlier
// or later amendments: a removed member's log still verifies, a new
// member's too). A party whose audit key differs between manifests is an
// error.
func federationKeys(dir string, kit *pki.Kit) (audit.Keys, error) {
	sid, err := kit.Manifest.SessionID()
	if err != nil {
		return nil, err
	}
	keys := audit.Keys(kit.Manifest.LogKeys())
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != pki.ManifestFile {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		m, err := federation.Verify(b, kit.CA)
		if err != nil {
			return nil // another federation's, or not a manifest
		}
		if s, err := m.SessionID(); err != nil || !bytes.Equal(s, sid) {
			return nil
		}
		for name, k := range m.LogKeys() {
			if old, ok := keys[name]; ok && !bytes.Equal(old, k) {
				return fmt.Errorf("%s lists another audit key for %s than the other manifests of the session", path, name)
			}
			keys[name] = k
		}
		return nil
	})
	return keys, err
}

// findKit returns the first directory under dir (in lexical order) that
// holds a kit: manifest.json and ca.pem, preferring the coordinator's.
func findKit(dir string) (string, error) {
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if _, err := os.Stat(filepath.Join(path, pki.ManifestFile)); err == nil {
				if _, err := os.Stat(filepath.Join(path, pki.CACertFile)); err == nil {
					found = append(found, path)
				}
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if len(found) == 0 {
		return "", fmt.Errorf("no kit (%s and %s) under %s", pki.ManifestFile, pki.CACertFile, dir)
	}
	sort.SliceStable(found, func(i, j int) bool {
		return strings.HasSuffix(found[i], pki.CoordinatorDir) && !strings.HasSuffix(found[j], pki.CoordinatorDir)
	})
	return found[0], nil
}
