package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/atomicfile"
	"github.com/cloisterfl/cloister/paillier"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/psi"
	"github.com/cloisterfl/cloister/relay"
	"github.com/cloisterfl/cloister/relay/relaynet"
	"github.com/cloisterfl/cloister/transport"
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

// relayWait is how long a party waits for the relay to come up.
const relayWait = time.Minute

// netParty is this process's party of a vertical session over the
// coordinator's relay.
type netParty struct {
	kit     *pki.Kit
	kitDir  string
	parties []string
	self    int
	share   *paillier.KeyShare // nil for PSI alone
	carrier *relaynet.Carrier
	sess    *relay.Session
}

// newNetParty loads the kit, the party list and, with needKey, the
// party's key share: everything checked before anything is sent.
func newNetParty(kitDir, partiesFlag string, needKey bool, stdout io.Writer) (*netParty, error) {
	kit, err := loadKit(kitDir, pki.RoleNode)
	if err != nil {
		return nil, err
	}
	parties, err := parseParties(partiesFlag)
	if err != nil {
		return nil, err
	}
	np := &netParty{kit: kit, kitDir: kitDir, parties: parties, self: slices.Index(parties, kit.Config.Name)}
	if np.self < 0 {
		return nil, withHint(fmt.Errorf("vertical: %s (this kit) is not one of --parties %q", kit.Config.Name, parties), "add this party's node name to --parties, in the same order on every party")
	}
	for _, p := range parties {
		if _, ok := kit.Manifest.Member(fl.NodeID(p)); !ok {
			return nil, fmt.Errorf("vertical: %s is not a member of federation %s (manifest serial %d)", p, kit.Manifest.Federation, kit.Manifest.Serial)
		}
	}
	if needKey {
		if np.share, err = loadVerticalKey(kitDir, kit, parties); err != nil {
			return nil, err
		}
		if np.share.Key.N.BitLen() < 2048 {
			fmt.Fprintf(stdout, "WARNING: a %d-bit Paillier key is NOT SECURE; use 2048 bits for real data\n", np.share.Key.N.BitLen())
		}
	}
	return np, nil
}

// open connects to the relay and opens a session bound to purpose and
// params (everything the parties must agree on).
func (np *netParty) open(ctx context.Context, purpose string, params any, stdout io.Writer) error {
	kit, parties := np.kit, np.parties
	keys := map[string]ed25519.PublicKey{}
	for _, p := range parties {
		m, _ := kit.Manifest.Member(fl.NodeID(p))
		keys[p] = m.AuditKey
	}
	h := sha256.New()
	fmt.Fprintf(h, "cloister/vertical/v1\x00%s\x00%s\x00%d\x00", purpose, kit.Manifest.Federation, len(parties))
	for _, p := range parties {
		fmt.Fprintf(h, "%s\x00", p)
	}
	pj, err := json.Marshal(params)
	if err != nil {
		return err
	}
	h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(pj))))
	h.Write(pj)
	if np.share != nil {
		fp := np.share.Key.Fingerprint()
		h.Write(fp[:])
	}
	var digest [32]byte
	h.Sum(digest[:0])
	tlsCfg, err := kit.TLSConfig(pki.Options{})
	if err != nil {
		return err
	}
	role := "a feature party"
	if np.self == 0 {
		role = "the label party"
		if purpose == "psi" {
			role = "the hub"
		}
	}
	fmt.Fprintf(stdout, "%s is %s of %s; connecting to the relay at %s\n", kit.Config.Name, role, strings.Join(parties, ", "), kit.Config.CoordinatorAddress)
	// The parties may start before the relay: wait up to a minute for it
	// (a refused certificate or a bad configuration fails at once).
	giveUp := time.Now().Add(relayWait)
	for waited := false; ; waited = true {
		np.carrier, err = relaynet.Dial(ctx, kit.Config.CoordinatorAddress, relaynet.ClientConfig{TLS: tlsCfg})
		var rej *transport.RejectError
		if err == nil || errors.Is(err, transport.ErrConfig) || errors.As(err, &rej) || ctx.Err() != nil || time.Now().After(giveUp) {
			break
		}
		if !waited {
			fmt.Fprintf(stdout, "waiting up to %s for the relay at %s (%v)\n", relayWait, kit.Config.CoordinatorAddress, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err != nil {
		return withHint(fmt.Errorf("vertical: connecting to the relay: %w", err), "start it first: cloister vertical relay --kit FED/coordinator --parties "+strings.Join(parties, ","))
	}
	// The largest message is a PSI batch (2 MiB) or the final rows (4 bytes
	// a shared ID): 32 MiB bounds both, and so what a peer can queue here.
	rc := relay.Config{Self: kit.Config.Name, Parties: parties, Digest: digest, Key: kit.AuditKey, Keys: keys, MaxBody: 32 << 20}
	if np.sess, err = relay.Open(ctx, np.carrier, rc); err != nil {
		np.carrier.Close()
		np.carrier = nil
		if errors.Is(err, relay.ErrMismatch) {
			return withHint(err, "every party must run the same command with the same --parties and settings")
		}
		return err
	}
	fmt.Fprintf(stdout, "session %s open with %s\n", hex.EncodeToString(digest[:6]), strings.Join(slices.DeleteFunc(slices.Clone(parties), func(p string) bool { return p == kit.Config.Name }), ", "))
	return nil
}

// close ends the session; after an error, it first tells the other
// parties why, so that they stop at once rather than at their timeout.
func (np *netParty) close(err error) {
	if np.sess != nil {
		if err != nil {
			// The reason stays in this party's log: the others hear only
			// that it stopped (an error may name local files).
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			np.sess.Abort(ctx, "stopped with an error; its operator has the details")
			cancel()
		}
		np.sess.Close()
	}
	if np.carrier != nil {
		np.carrier.Close()
	}
}

func (np *netParty) name() string { return np.parties[np.self] }

// align runs this party's side of PSI and returns its table's rows of
// the shared IDs, in the aligned order.
func (np *netParty) align(ctx context.Context, t *vertical.Table, stdout io.Writer) (*vertical.Table, []string, error) {
	key, err := psi.NewKey(np.sessDigest(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	me := psi.Party{Name: np.name(), IDs: t.IDs, Key: key}
	start := time.Now()
	if np.self == 0 {
		res, err := psi.Hub(ctx, np.sess, me, np.parties[1:], psi.Options{})
		if err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(stdout, "psi: %d IDs here; %d shared by all %d parties (%s sent, %.2fs)\n", t.Rows(), len(res.Shared), len(np.parties), mbytes(res.Bytes), time.Since(start).Seconds())
		return t.Select(res.Rows[0]), res.Shared, nil
	}
	res, err := psi.Member(ctx, np.sess, me, np.parties[0], psi.Options{})
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(stdout, "psi: %d IDs here; %d shared by all %d parties (%s sent, %.2fs)\n", t.Rows(), len(res.Rows), len(np.parties), mbytes(res.Bytes), time.Since(start).Seconds())
	sel := t.Select(res.Rows)
	return sel, sel.IDs, nil
}

// sessDigest is what the parties' PSI hashes bind to: the session.
func (np *netParty) sessDigest() []byte {
	return []byte("cloister-vertical-" + np.kit.Manifest.Federation)
}

// loadOwnTable reads this party's one --data. Only the label party may
// have labels; with mustLabel, it must.
func loadOwnTable(name string, specs []string, labelParty, mustLabel, idsOnly bool) (*vertical.Table, error) {
	if len(specs) != 1 {
		return nil, withHint(fmt.Errorf("vertical: %d --data given with --kit; a party gives its own table only", len(specs)), "give one --data: this party's CSV")
	}
	sp, err := vertical.ParseSpec(specs[0])
	if err != nil {
		return nil, err
	}
	switch {
	case mustLabel && sp.Label == "" && !idsOnly:
		return nil, withHint(errors.New("vertical: the label party's --data has no label=COLUMN"), "add :label=COLUMN to the label party's --data")
	case !labelParty && sp.Label != "":
		return nil, fmt.Errorf("vertical: --data %q: only the label party (the first of --parties) may have labels", specs[0])
	}
	if idsOnly {
		return vertical.LoadIDs(name, sp)
	}
	return vertical.Load(name, sp)
}

// partySetup says what a command needs before its party joins the
// session: the key share, which table columns, and what the session binds.
type partySetup struct {
	needKey, idsOnly, mustLabel bool
	purpose                     string
	params                      any
	check                       func(np *netParty) error // before the table is read
}

// startParty loads this party's kit, key and table, all checked before it
// connects, then opens the session. The caller closes it with np.close.
func startParty(ctx context.Context, kitDir, partiesFlag string, data []string, ps partySetup, stdout io.Writer) (*netParty, *vertical.Table, error) {
	np, err := newNetParty(kitDir, partiesFlag, ps.needKey, stdout)
	if err != nil {
		return nil, nil, err
	}
	if ps.check != nil {
		if err := ps.check(np); err != nil {
			return nil, nil, err
		}
	}
	label := np.self == 0
	t, err := loadOwnTable(np.name(), data, label, label && ps.mustLabel, ps.idsOnly)
	if err != nil {
		return nil, nil, err
	}
	if err := np.open(ctx, ps.purpose, ps.params, stdout); err != nil {
		return nil, nil, err
	}
	return np, t, nil
}

func signalCtx(timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return ctx, func() { cancel(); stop() }
}

// netPSI is `cloister vertical psi --kit`.
func netPSI(kitDir, partiesFlag string, data []string, out string, timeout time.Duration, stdout io.Writer) (err error) {
	ctx, cancel := signalCtx(timeout)
	defer cancel()
	np, t, err := startParty(ctx, kitDir, partiesFlag, data, partySetup{idsOnly: true, purpose: "psi"}, stdout)
	if err != nil {
		return err
	}
	defer func() { np.close(err) }()
	_, shared, err := np.align(ctx, t, stdout)
	if err != nil {
		return err
	}
	if out != "" {
		if err := atomicfile.Create(out, []byte(strings.Join(shared, "\n")+"\n"), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %d aligned IDs to %s\n", len(shared), out)
	}
	return nil
}

// netModel is one party's part of a model trained over the relay.
type netModel struct {
	Parties []string            `json:"parties"`
	Self    string              `json:"self"`
	Part    vertical.PartyModel `json:"part"`
}

// netTrain is `cloister vertical train --kit`: PSI, the seeded split,
// training, then secure scoring of the held-out rows at the label party.
func netTrain(kitDir, partiesFlag string, data []string, tf trainFlags, modelPath, jsonPath string, timeout time.Duration, stdout io.Writer) (err error) {
	ctx, cancel := signalCtx(timeout)
	defer cancel()
	c := tf.config()
	params := struct {
		Config       vertical.Config
		TestFraction float64
	}{c, tf.testFraction}
	np, t, err := startParty(ctx, kitDir, partiesFlag, data, partySetup{needKey: true, mustLabel: true, purpose: "train", params: params}, stdout)
	if err != nil {
		return err
	}
	defer func() { np.close(err) }()
	aligned, _, err := np.align(ctx, t, stdout)
	if err != nil {
		return err
	}
	// --test-fraction 0: train on every aligned row, score none.
	train, test := []*vertical.Table{aligned}, []*vertical.Table(nil)
	if tf.testFraction != 0 {
		if train, test, err = splitRows([]*vertical.Table{aligned}, tf.testFraction, tf.seed); err != nil {
			return err
		}
	}
	c.KeyBits = np.share.Key.N.BitLen()
	fmt.Fprintf(stdout, "training: %d rows, %d epochs, batch %d, lr %g, %d-bit threshold Paillier (all %d parties decrypt)\n",
		train[0].Rows(), c.Epochs, c.Batch, c.LearningRate, c.KeyBits, len(np.parties))
	pm, st, err := vertical.TrainParty(ctx, np.sess, np.parties, np.self, train[0], np.share, c, rand.Reader)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "trained: %d batches in %.1fs, %s sent\n", st.Batches, st.Time.Seconds(), mbytes(st.Bytes))
	r := comparison{Rows: train[0].Rows(), TrainSeconds: st.Time.Seconds(), TrainBytes: st.Bytes, KeyBits: c.KeyBits}
	if test == nil {
		return writeNetModel(modelPath, np, pm, jsonPath, r, stdout)
	}
	scores, pst, err := vertical.PredictParty(ctx, np.sess, np.parties, np.self, test[0], pm, np.share, rand.Reader)
	if err != nil {
		return err
	}
	r.TestRows, r.PredSeconds, r.PredBytes = test[0].Rows(), pst.Time.Seconds(), pst.Bytes
	if np.self == 0 {
		r.Vertical = vertical.Accuracy(scores, test[0].Y)
		fmt.Fprintf(stdout, "vertical (encrypted, %d processes): test accuracy %.4f on %d held-out rows (scored in %.1fs, %s sent)\n",
			len(np.parties), r.Vertical, r.TestRows, pst.Time.Seconds(), mbytes(pst.Bytes))
	} else {
		fmt.Fprintf(stdout, "scored the %d held-out rows for the label party (%.1fs, %s sent); only it reads the scores\n", r.TestRows, pst.Time.Seconds(), mbytes(pst.Bytes))
	}
	return writeNetModel(modelPath, np, pm, jsonPath, r, stdout)
}

// writeNetModel writes this party's part of the model and the figures.
func writeNetModel(modelPath string, np *netParty, pm *vertical.PartyModel, jsonPath string, r comparison, stdout io.Writer) error {
	if modelPath != "" {
		b, _ := json.MarshalIndent(netModel{Parties: np.parties, Self: np.name(), Part: *pm}, "", "  ")
		if err := atomicfile.Create(modelPath, append(b, '\n'), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s's part of the model to %s\n", np.name(), modelPath)
	}
	if jsonPath != "" {
		b, _ := json.MarshalIndent(r, "", "  ")
		return atomicfile.Create(jsonPath, append(b, '\n'), 0o644)
	}
	return nil
}

// netPredict is `cloister vertical predict --kit`.
func netPredict(kitDir, partiesFlag string, data []string, modelPath, out string, timeout time.Duration, stdout io.Writer) (err error) {
	if modelPath == "" {
		return withHint(errors.New("vertical predict: no --model"), "give the file cloister vertical train --kit --model wrote for this party")
	}
	b, err := os.ReadFile(modelPath)
	if err != nil {
		return err
	}
	var m netModel
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("vertical predict: model %s: %w", modelPath, err)
	}
	ctx, cancel := signalCtx(timeout)
	defer cancel()
	// The label party may score rows without labels.
	np, t, err := startParty(ctx, kitDir, partiesFlag, data, partySetup{needKey: true, purpose: "predict", check: func(np *netParty) error {
		if m.Self != np.name() || !slices.Equal(m.Parties, np.parties) {
			return fmt.Errorf("vertical predict: %s is %s's part of a model of %q, not %s's of %q", modelPath, m.Self, m.Parties, np.name(), np.parties)
		}
		return nil
	}}, stdout)
	if err != nil {
		return err
	}
	defer func() { np.close(err) }()
	aligned, shared, err := np.align(ctx, t, stdout)
	if err != nil {
		return err
	}
	scores, st, err := vertical.PredictParty(ctx, np.sess, np.parties, np.self, aligned, &m.Part, np.share, rand.Reader)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "scored %d rows in %.1fs (%s sent)\n", aligned.Rows(), st.Time.Seconds(), mbytes(st.Bytes))
	if np.self != 0 {
		return nil
	}
	if aligned.Y != nil {
		fmt.Fprintf(stdout, "accuracy %.4f\n", vertical.Accuracy(scores, aligned.Y))
	}
	if out != "" {
		return writeScores(out, shared, scores)
	}
	return nil
}

// verticalRelay is `cloister vertical relay`: the coordinator's relay.
func verticalRelay(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("vertical relay", stderr)
	kitDir := fs.String("kit", "", "the coordinator's kit directory (required)")
	listen := fs.String("listen", "", "address to accept the parties on (default: the kit's coordinator address)")
	partiesFlag := fs.String("parties", "", "the vertical parties' node names (only they may connect)")
	var lf logFlags
	lf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	kit, err := loadKit(*kitDir, pki.RoleCoordinator)
	if err != nil {
		return err
	}
	parties, err := parseParties(*partiesFlag)
	if err != nil {
		return err
	}
	var members []fl.NodeID
	for _, p := range parties {
		if _, ok := kit.Manifest.Member(fl.NodeID(p)); !ok {
			return fmt.Errorf("vertical relay: %s is not a member of federation %s", p, kit.Manifest.Federation)
		}
		members = append(members, fl.NodeID(p))
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	tlsCfg, err := kit.TLSConfig(pki.Options{})
	if err != nil {
		return err
	}
	srv, err := relaynet.NewServer(relaynet.ServerConfig{TLS: tlsCfg, Members: members, Logger: log})
	if err != nil {
		return err
	}
	if *listen == "" {
		*listen = kit.Config.CoordinatorAddress
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return withHint(err, "is a coordinator or another relay running? pick another --listen")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go srv.Serve(l)
	fmt.Fprintf(stdout, "relay of federation %s listening on %s for %s; it forwards sealed messages and reads none\n", kit.Manifest.Federation, l.Addr(), strings.Join(parties, ", "))
	err = srv.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	for _, p := range srv.Stats() {
		fmt.Fprintf(stdout, "relayed %s → %s: %d messages, %s\n", p.From, p.To, p.Messages, mbytes(p.Bytes))
	}
	return err
}

// writeTableCSV writes t as a party's CSV file: id, the label (by class
// name) at the label party, then the features, each float exactly.
func writeTableCSV(path string, t *vertical.Table) error {
	var b strings.Builder
	b.WriteString("id")
	if t.Y != nil {
		b.WriteString(",label")
	}
	for _, c := range t.Columns {
		b.WriteString("," + c)
	}
	b.WriteByte('\n')
	for i, id := range t.IDs {
		b.WriteString(id)
		if t.Y != nil {
			b.WriteString("," + t.Classes[t.Y[i]])
		}
		for _, x := range t.Row(i) {
			b.WriteByte(',')
			b.WriteString(strconv.FormatFloat(x, 'g', -1, 64))
		}
		b.WriteByte('\n')
	}
	return atomicfile.Create(path, []byte(b.String()), 0o600)
}

// verticalDemoProcesses is demo --vertical as a consortium runs it: each
// party's tables written to its own CSV files, a federation of two
// members, the key dealt into their kits, the coordinator's relay, and
// each party a process of its own (train on the training images, then
// score the test images at the label party). This process then compares
// the label party's scores with the same model trained centrally on the
// joined columns.
func verticalDemoProcesses(dir string, trainTabs, testTabs []*vertical.Table, tf trainFlags, stdout io.Writer) (comparison, error) {
	var r comparison
	f, err := newLocalFed(dir, pki.InitOptions{Nodes: 2, Threshold: 2, Mode: federation.ModePlain, DP: &federation.DP{}})
	if err != nil {
		return r, err
	}
	defer f.stopAll()
	names := []string{"node-1", "node-2"}
	parties := strings.Join(names, ",")
	specs := map[string][2]string{} // party → train, test --data
	for i, n := range names {
		var sp [2]string
		for j, t := range []*vertical.Table{trainTabs[i], testTabs[i]} {
			path := filepath.Join(dir, fmt.Sprintf("%s-%s.csv", n, []string{"train", "test"}[j]))
			if err := writeTableCSV(path, t); err != nil {
				return r, err
			}
			sp[j] = "csv:" + path + ":id=id:scale=none"
			if i == 0 {
				sp[j] += ":label=label"
			}
		}
		specs[n] = sp
	}
	fmt.Fprintf(stdout, "the label party is node-1 (%s), the feature party node-2 (%s); each has its own kit and CSV files in %s\n",
		filepath.Base(strings.Split(specs["node-1"][0], ":")[1]), filepath.Base(strings.Split(specs["node-2"][0], ":")[1]), dir)
	if err := verticalDeal([]string{"--dir", filepath.Join(dir, "fed"), "--parties", parties, "--key-bits", strconv.Itoa(tf.keyBits)}, stdout, io.Discard); err != nil {
		return r, err
	}
	if err := f.start("relay", "vertical", "relay", "--kit", f.kit(pki.CoordinatorDir), "--parties", parties, "--log-format", "json"); err != nil {
		return r, err
	}
	step := func(verb string, args map[string][]string) (map[string]string, error) {
		for _, n := range []string{"node-2", "node-1"} {
			all := append([]string{"vertical", verb, "--kit", f.kit(n), "--parties", parties}, args[n]...)
			if err := f.start(n+"-"+verb, all...); err != nil {
				return nil, err
			}
		}
		logs := map[string]string{}
		for _, n := range names {
			p := f.proc(n + "-" + verb)
			<-p.done
			b, _ := os.ReadFile(f.logPath(n + "-" + verb))
			logs[n] = string(b)
			for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				if strings.HasPrefix(l, "psi:") || strings.HasPrefix(l, "trained:") || strings.HasPrefix(l, "scored") || strings.HasPrefix(l, "cloister:") || strings.HasPrefix(l, "training:") {
					fmt.Fprintf(stdout, "  %s | %s\n", n, l)
				}
			}
			if p.err != nil {
				return nil, fmt.Errorf("%s's %s: %v", n, verb, p.err)
			}
		}
		return logs, nil
	}
	c := tf.config()
	common := []string{"--epochs", strconv.Itoa(c.Epochs), "--batch", strconv.Itoa(c.Batch), "--lr", strconv.FormatFloat(c.LearningRate, 'g', -1, 64),
		"--l2", strconv.FormatFloat(c.L2, 'g', -1, 64), "--seed", strconv.FormatUint(c.Seed, 10), "--test-fraction", "0"}
	models := map[string]string{}
	trainArgs := map[string][]string{}
	for _, n := range names {
		models[n] = filepath.Join(dir, n+"-model.json")
		trainArgs[n] = append([]string{"--data", specs[n][0], "--model", models[n]}, common...)
	}
	fmt.Fprintf(stdout, "training: each party a process, through the relay\n")
	start := time.Now()
	if _, err := step("train", trainArgs); err != nil {
		return r, err
	}
	r.TrainSeconds = time.Since(start).Seconds()
	scores := filepath.Join(dir, "scores.csv")
	fmt.Fprintf(stdout, "scoring the test images: each party a process; node-1 alone reads the scores\n")
	start = time.Now()
	if _, err := step("predict", map[string][]string{
		"node-1": {"--data", specs["node-1"][1], "--model", models["node-1"], "--out", scores},
		"node-2": {"--data", specs["node-2"][1], "--model", models["node-2"]},
	}); err != nil {
		return r, err
	}
	r.PredSeconds = time.Since(start).Seconds()
	f.signal("relay", syscall.SIGTERM)
	<-f.proc("relay").done
	if b, err := os.ReadFile(f.logPath("relay")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "relayed ") {
				fmt.Fprintf(stdout, "  relay  | %s\n", l)
			}
		}
	}

	// The comparison, here, where the demo has every column: the same
	// files aligned in this process, and the central models.
	load := func(j int) ([]*vertical.Table, error) {
		var ts []*vertical.Table
		for _, n := range names {
			sp, err := vertical.ParseSpec(specs[n][j])
			if err != nil {
				return nil, err
			}
			t, err := vertical.Load(n, sp)
			if err != nil {
				return nil, err
			}
			ts = append(ts, t)
		}
		return ts, nil
	}
	var aligned [2][]*vertical.Table
	for j := range 2 {
		ts, err := load(j)
		if err != nil {
			return r, err
		}
		if aligned[j], _, err = align(ts, "cloister-demo-vertical-check", io.Discard); err != nil {
			return r, err
		}
	}
	train, test := aligned[0], aligned[1]
	b, err := os.ReadFile(scores)
	if err != nil {
		return r, err
	}
	got := map[string]float64{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n")[1:] {
		fs := strings.Split(l, ",")
		v, err := strconv.ParseFloat(fs[1], 64)
		if len(fs) != 3 || err != nil {
			return r, fmt.Errorf("%s: line %q", scores, l)
		}
		got[fs[0]] = v
	}
	if len(got) != test[0].Rows() {
		return r, fmt.Errorf("%s scores %d rows, the aligned test set has %d", scores, len(got), test[0].Rows())
	}
	vs := make([]float64, test[0].Rows())
	for i, id := range test[0].IDs {
		vs[i] = got[id]
	}
	r.Rows, r.TestRows, r.KeyBits = train[0].Rows(), test[0].Rows(), tf.keyBits
	r.Vertical = vertical.Accuracy(vs, test[0].Y)
	c.KeyBits = tf.keyBits
	ct, err := vertical.Central(train[0], train[1:], c, true)
	if err != nil {
		return r, err
	}
	r.CentralTay = vertical.Accuracy(vertical.Scores(ct, test), test[0].Y)
	ce, err := vertical.Central(train[0], train[1:], c, false)
	if err != nil {
		return r, err
	}
	r.CentralExact = vertical.Accuracy(vertical.Scores(ce, test), test[0].Y)
	fmt.Fprintf(stdout, "vertical (encrypted, 2 processes): test accuracy %.4f on %d test images  (train %.1fs, score %.1fs)\n", r.Vertical, r.TestRows, r.TrainSeconds, r.PredSeconds)
	fmt.Fprintf(stdout, "central, same model and steps (Taylor loss): test accuracy %.4f  (gap %+.2f pp)\n", r.CentralTay, 100*(r.Vertical-r.CentralTay))
	fmt.Fprintf(stdout, "central, exact logistic loss:                test accuracy %.4f  (gap %+.2f pp)\n", r.CentralExact, 100*(r.Vertical-r.CentralExact))
	return r, nil
}
