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
	"slices"
	"strings"
	"syscall"
	"time"

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
