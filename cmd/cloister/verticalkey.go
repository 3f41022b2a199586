package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/atomicfile"
	"github.com/cloisterfl/cloister/paillier"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/vertical"
)

// verticalKeyFile is the file in a member's kit that holds its share of
// the vertical federation's threshold Paillier key.
const verticalKeyFile = "vertical-key.json"

// verticalKey is that file: the share, and what it is for.
type verticalKey struct {
	Version    int      `json:"version"`
	Federation string   `json:"federation"`
	Parties    []string `json:"parties"`
	Index      int      `json:"index"` // this party's position in Parties, from 1
	KeyBits    int      `json:"key_bits"`
	Share      []byte   `json:"share"` // paillier.KeyShare.MarshalBinary
}

// parseParties reads --parties: distinct node names, the label party (or
// PSI's hub) first.
func parseParties(s string) ([]string, error) {
	if s == "" {
		return nil, withHint(errors.New("vertical: no --parties"), "list the parties' node names, the label party first: --parties node-1,node-2")
	}
	ps := strings.Split(s, ",")
	if len(ps) < 2 || len(ps) > vertical.MaxHosts+1 {
		return nil, fmt.Errorf("vertical: --parties %q: want 2 to %d parties", s, vertical.MaxHosts+1)
	}
	seen := map[string]bool{}
	for _, p := range ps {
		if err := pki.ValidateNodeID(fl.NodeID(p)); err != nil {
			return nil, fmt.Errorf("vertical: --parties %q: %w", s, err)
		}
		if seen[p] {
			return nil, fmt.Errorf("vertical: --parties %q names %s twice", s, p)
		}
		seen[p] = true
	}
	return ps, nil
}

// verticalDeal is `cloister vertical deal`: the admin, who holds the kits
// `cloister init` wrote, deals an all-of-l threshold Paillier key into
// each party's kit and erases it.
func verticalDeal(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("vertical deal", stderr)
	dir := fs.String("dir", "", "the federation directory 'cloister init' wrote (its node kits get the shares)")
	partiesFlag := fs.String("parties", "", "the vertical parties' node names, the label party first")
	keyBits := fs.Int("key-bits", 2048, "Paillier modulus bits (below 2048 is NOT SECURE: for quick trials only)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return withHint(errors.New("vertical deal: no --dir"), "pass the directory cloister init --dir wrote")
	}
	parties, err := parseParties(*partiesFlag)
	if err != nil {
		return err
	}
	if *keyBits < 256 || *keyBits%16 != 0 {
		return fmt.Errorf("vertical deal: --key-bits %d: want a multiple of 16, at least 256 (2048 for real data)", *keyBits)
	}
	var kits []*pki.Kit
	for _, p := range parties {
		k, err := loadKit(filepath.Join(*dir, p), pki.RoleNode)
		if err != nil {
			return err
		}
		if len(kits) > 0 && k.Config.Federation != kits[0].Config.Federation {
			return fmt.Errorf("vertical deal: %s is of federation %s, %s of %s", p, k.Config.Federation, parties[0], kits[0].Config.Federation)
		}
		path := filepath.Join(*dir, p, verticalKeyFile)
		if _, err := os.Stat(path); err == nil {
			return withHint(fmt.Errorf("vertical deal: %s exists: %s already holds a vertical key", path, p), "remove the parties' "+verticalKeyFile+" files to deal a new key")
		}
		kits = append(kits, k)
	}
	if *keyBits < 2048 {
		fmt.Fprintf(stdout, "WARNING: a %d-bit Paillier key is NOT SECURE; use 2048 bits for real data\n", *keyBits)
	}
	start := time.Now()
	sk, err := paillier.GenerateKey(*keyBits, rand.Reader)
	if err != nil {
		return err
	}
	tk, shares, err := paillier.Deal(sk, len(parties), len(parties), rand.Reader)
	sk.Erase()
	if err != nil {
		return err
	}
	// All the shares together are the private key: overwritten when
	// written (best effort in Go's memory), on every path.
	defer func() {
		for _, sh := range shares {
			clear(sh.S.Bits())
		}
	}()
	var written []string
	for i, p := range parties {
		sb, err := shares[i].MarshalBinary()
		if err == nil {
			var b []byte
			b, err = json.MarshalIndent(verticalKey{Version: 1, Federation: kits[i].Config.Federation, Parties: parties, Index: i + 1, KeyBits: *keyBits, Share: sb}, "", "  ")
			path := filepath.Join(*dir, p, verticalKeyFile)
			if err == nil {
				b = append(b, '\n')
				err = atomicfile.Create(path, b, 0o600)
			}
			if err == nil {
				written = append(written, path)
			}
			clear(b)
			clear(sb)
		}
		if err != nil {
			for _, w := range written {
				os.Remove(w)
			}
			return fmt.Errorf("vertical deal: %s: %w (no share written)", p, err)
		}
	}
	fp := tk.Fingerprint()
	fmt.Fprintf(stdout, "dealt a %d-bit all-of-%d threshold Paillier key (%.1fs, key %s) into the kits of %s; this process's copies of the key are overwritten (best effort in Go's memory)\n",
		*keyBits, len(parties), time.Since(start).Seconds(), hex.EncodeToString(fp[:8]), strings.Join(parties, ", "))
	return nil
}

// loadVerticalKey reads this party's share from its kit and checks that
// it is for these parties, in this order.
func loadVerticalKey(kitDir string, kit *pki.Kit, parties []string) (*paillier.KeyShare, error) {
	path := filepath.Join(kitDir, verticalKeyFile)
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, withHint(fmt.Errorf("vertical: %s has mode %04o: others can read this party's key share", path, st.Mode().Perm()), "chmod 600 "+path)
	}
	b, err := os.ReadFile(path)
	defer clear(b)
	if errors.Is(err, os.ErrNotExist) {
		return nil, withHint(fmt.Errorf("vertical: %s has no %s", kitDir, verticalKeyFile), "the admin deals the key first: cloister vertical deal --dir FED --parties "+strings.Join(parties, ","))
	}
	if err != nil {
		return nil, err
	}
	var vk verticalKey
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&vk); err != nil {
		return nil, fmt.Errorf("vertical: %s: %w", path, err)
	}
	self := slices.Index(parties, kit.Config.Name)
	switch {
	case vk.Version != 1:
		return nil, fmt.Errorf("vertical: %s: version %d, this build reads 1", path, vk.Version)
	case vk.Federation != kit.Config.Federation:
		return nil, fmt.Errorf("vertical: %s is for federation %s, the kit for %s", path, vk.Federation, kit.Config.Federation)
	case !slices.Equal(vk.Parties, parties):
		return nil, withHint(fmt.Errorf("vertical: %s was dealt to parties %q, --parties says %q", path, vk.Parties, parties), "give --parties as the key was dealt, in the same order")
	case vk.Index != self+1:
		return nil, fmt.Errorf("vertical: %s holds share %d, but %s is party %d", path, vk.Index, kit.Config.Name, self+1)
	}
	ks, err := paillier.ParseKeyShare(vk.Share)
	if err != nil {
		return nil, fmt.Errorf("vertical: %s: %w", path, err)
	}
	if ks.Index != vk.Index || ks.Key.T != len(parties) || ks.Key.L != len(parties) {
		return nil, fmt.Errorf("vertical: %s: share %d of a %d-of-%d key, want share %d of all %d", path, ks.Index, ks.Key.T, ks.Key.L, vk.Index, len(parties))
	}
	return ks, nil
}
