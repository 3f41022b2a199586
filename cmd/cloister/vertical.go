package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/internal/atomicfile"
	"github.com/cloisterfl/cloister/psi"
	"github.com/cloisterfl/cloister/vertical"
)

const verticalUsage = `Usage: cloister vertical deal|relay|psi|train|predict [flags]

  deal     the admin deals the parties' threshold Paillier key into their kits
  relay    the coordinator's relay: carries the parties' sealed messages
  psi      find the IDs all parties share (ECDH-PSI), write the aligned order
  train    PSI, then hetero logistic regression under threshold Paillier
  predict  PSI, then secure scoring with a trained model

Each party runs in its own process with --kit (its node kit), --parties (every
party's node name, the label party first, the same on every party) and one
--data csv:PATH:id=COLUMN[:label=COLUMN][:columns=A,B], its own table; the
label party's has label=. They talk through the relay, which reads nothing.

Without --kit, every party runs in this process: repeat --data, the label
party first; train then also compares with the model trained centrally.
See docs/VERTICAL.md.
`

func runVertical(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprint(stdout, verticalUsage)
		if len(args) == 0 {
			return errors.New("vertical: no subcommand given")
		}
		return nil
	}
	switch args[0] {
	case "deal":
		return verticalDeal(args[1:], stdout, stderr)
	case "relay":
		return verticalRelay(args[1:], stdout, stderr)
	case "psi":
		return verticalPSI(args[1:], stdout, stderr)
	case "train":
		return verticalTrain(args[1:], stdout, stderr)
	case "predict":
		return verticalPredict(args[1:], stdout, stderr)
	}
	return withHint(fmt.Errorf("vertical: unknown subcommand %q", args[0]), "use cloister vertical deal, relay, psi, train or predict")
}

// netFlags are a party's flags when each party runs in its own process.
type netFlags struct {
	kit, parties string
	timeout      time.Duration
}

func (f *netFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.kit, "kit", "", "this party's node kit: run this party alone, talking to the others through the relay")
	fs.StringVar(&f.parties, "parties", "", "with --kit: every party's node name, the label party (PSI's hub) first, the same on every party")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Minute, "with --kit: give up when the session has not ended by then")
}

// dataFlags collects repeated --data selectors.
type dataFlags []string

func (d *dataFlags) String() string     { return strings.Join(*d, " ") }
func (d *dataFlags) Set(s string) error { *d = append(*d, s); return nil }

// loadParties reads every --data table; the first must have labels
// when needLabel, and only the first may.
func loadParties(specs []string, needLabel bool) ([]*vertical.Table, error) {
	return loadTables(specs, needLabel, false)
}

func loadTables(specs []string, needLabel, idsOnly bool) ([]*vertical.Table, error) {
	if len(specs) < 2 {
		return nil, withHint(fmt.Errorf("vertical: %d --data given, need at least 2 parties", len(specs)), "give --data once per party, the label party first")
	}
	var ts []*vertical.Table
	names := map[string]bool{}
	for i, s := range specs {
		sp, err := vertical.ParseSpec(s)
		if err != nil {
			return nil, err
		}
		if i == 0 && needLabel && sp.Label == "" {
			return nil, withHint(fmt.Errorf("vertical: the first --data (the label party) has no label=COLUMN"), "add :label=COLUMN to the first --data")
		}
		if i > 0 && sp.Label != "" {
			return nil, fmt.Errorf("vertical: --data %q: only the first party (the label party) may have labels", s)
		}
		name := strings.TrimSuffix(filepath.Base(sp.Path), filepath.Ext(sp.Path))
		for names[name] {
			name += "'"
		}
		names[name] = true
		load := vertical.Load
		if idsOnly {
			load = vertical.LoadIDs
		}
		t, err := load(name, sp)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// align runs PSI over the tables (the first is the hub) and returns each
// table's rows of the shared IDs, in the aligned order.
func align(ts []*vertical.Table, session string, w io.Writer) ([]*vertical.Table, *psi.Result, error) {
	var ps []psi.Party
	for _, t := range ts {
		k, err := psi.NewKey([]byte(session), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		ps = append(ps, psi.Party{Name: t.Name, IDs: t.IDs, Key: k})
	}
	start := time.Now()
	res, err := psi.Run(ps[0], ps[1:], psi.Options{})
	if err != nil {
		return nil, nil, err
	}
	var sizes []string
	for _, t := range ts {
		sizes = append(sizes, fmt.Sprintf("%s %d", t.Name, t.Rows()))
	}
	fmt.Fprintf(w, "psi: %s IDs; %d shared by all (%s sent, %.2fs)\n", strings.Join(sizes, ", "), len(res.Shared), mbytes(res.Bytes), time.Since(start).Seconds())
	out := make([]*vertical.Table, len(ts))
	for i, t := range ts {
		out[i] = t.Select(res.Rows[i])
	}
	return out, res, nil
}

func mbytes(b int64) string { return fmt.Sprintf("%.2f MB", float64(b)/1e6) }

func verticalPSI(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("vertical psi", stderr)
	var data dataFlags
	fs.Var(&data, "data", "a party's table, csv:PATH:id=COLUMN (repeat; the first is the hub)")
	out := fs.String("out", "", "write the shared IDs, one a line in the aligned order, to this new file")
	session := fs.String("session", "cloister-vertical", "the session string every party binds its points to")
	var nf netFlags
	nf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if nf.kit != "" {
		return netPSI(nf.kit, nf.parties, data, *out, nf.timeout, stdout)
	}
	ts, err := loadTables(data, false, true)
	if err != nil {
		return err
	}
	_, res, err := align(ts, *session, stdout)
	if err != nil {
		return err
	}
	if *out != "" {
		if err := atomicfile.Create(*out, []byte(strings.Join(res.Shared, "\n")+"\n"), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %d aligned IDs to %s\n", len(res.Shared), *out)
	}
	return nil
}

// trainFlags are the training settings of train and demo --vertical.
type trainFlags struct {
	epochs, batch, keyBits int
	lr, l2, testFraction   float64
	seed                   uint64
}

func (f *trainFlags) register(fs *flag.FlagSet, epochs, batch int, lr float64, split bool) {
	fs.IntVar(&f.epochs, "epochs", epochs, "epochs over the aligned training rows")
	fs.IntVar(&f.batch, "batch", batch, "minibatch size")
	fs.IntVar(&f.keyBits, "key-bits", 2048, "Paillier modulus bits (below 2048 is NOT SECURE: for quick trials only)")
	fs.Float64Var(&f.lr, "lr", lr, "learning rate (the Taylor loss is quadratic: keep lr·‖x‖²/4 below 2)")
	fs.Float64Var(&f.l2, "l2", 0, "L2 penalty")
	if split {
		fs.Float64Var(&f.testFraction, "test-fraction", 0.2, "share of the aligned rows held out for testing")
	}
	fs.Uint64Var(&f.seed, "seed", 1, "seed of the train/test split (or the demo's sampling and missing IDs) and the minibatch order")
}

func (f *trainFlags) config() vertical.Config {
	return vertical.Config{KeyBits: f.keyBits, Epochs: f.epochs, Batch: f.batch, LearningRate: f.lr, L2: f.l2, Seed: f.seed}
}

// comparison trains the vertical model and the central baselines on
// train, scores test securely and in the clear, and prints the gap.
type comparison struct {
	Rows         int     `json:"train_rows"`
	TestRows     int     `json:"test_rows"`
	Vertical     float64 `json:"vertical_accuracy"`
	CentralTay   float64 `json:"central_taylor_accuracy"`
	CentralExact float64 `json:"central_logistic_accuracy"`
	TrainSeconds float64 `json:"train_seconds"`
	TrainBytes   int64   `json:"train_bytes"`
	PredSeconds  float64 `json:"predict_seconds"`
	PredBytes    int64   `json:"predict_bytes"`
	KeyBits      int     `json:"key_bits"`
}

func compare(train, test []*vertical.Table, c vertical.Config, w io.Writer) (*vertical.Model, comparison, error) {
	var r comparison
	r.Rows, r.TestRows, r.KeyBits = train[0].Rows(), test[0].Rows(), c.KeyBits
	if c.KeyBits < 2048 {
		fmt.Fprintf(w, "WARNING: a %d-bit Paillier key is NOT SECURE; use 2048 bits for real data\n", c.KeyBits)
	}
	fmt.Fprintf(w, "training: %d rows, %d epochs, batch %d, lr %g, %d-bit threshold Paillier (all %d parties must decrypt)\n",
		r.Rows, c.Epochs, c.Batch, c.LearningRate, c.KeyBits, len(train))
	m, st, err := vertical.Train(train[0], train[1:], c, rand.Reader)
	if err != nil {
		return nil, r, err
	}
	r.TrainSeconds, r.TrainBytes = st.Time.Seconds(), st.Bytes
	scores, pst, err := vertical.Predict(m, test[0], test[1:], c.KeyBits, rand.Reader)
	if err != nil {
		return nil, r, err
	}
	r.PredSeconds, r.PredBytes = pst.Time.Seconds(), pst.Bytes
	r.Vertical = vertical.Accuracy(scores, test[0].Y)
	ct, err := vertical.Central(train[0], train[1:], c, true)
	if err != nil {
		return nil, r, err
	}
	r.CentralTay = vertical.Accuracy(vertical.Scores(ct, test), test[0].Y)
	ce, err := vertical.Central(train[0], train[1:], c, false)
	if err != nil {
		return nil, r, err
	}
	r.CentralExact = vertical.Accuracy(vertical.Scores(ce, test), test[0].Y)
	fmt.Fprintf(w, "vertical (encrypted): test accuracy %.4f  (train %.1fs, %s; predict %d rows %.1fs, %s)\n",
		r.Vertical, r.TrainSeconds, mbytes(r.TrainBytes), r.TestRows, r.PredSeconds, mbytes(r.PredBytes))
	fmt.Fprintf(w, "central, same model and steps (Taylor loss): test accuracy %.4f  (gap %+.2f pp)\n", r.CentralTay, 100*(r.Vertical-r.CentralTay))
	fmt.Fprintf(w, "central, exact logistic loss:                test accuracy %.4f  (gap %+.2f pp)\n", r.CentralExact, 100*(r.Vertical-r.CentralExact))
	return m, r, nil
}

// splitRows holds out a seeded fraction of the aligned rows.
func splitRows(ts []*vertical.Table, frac float64, seed uint64) (train, test []*vertical.Table, err error) {
	n := ts[0].Rows()
	nt := int(math.Round(frac * float64(n)))
	if !(frac > 0 && frac < 1) || nt < 1 || nt >= n {
		return nil, nil, fmt.Errorf("vertical: --test-fraction %v of %d aligned rows leaves no training or no test rows", frac, n)
	}
	perm := mrand.New(mrand.NewPCG(seed, 2)).Perm(n)
	testRows, trainRows := slices.Clone(perm[:nt]), slices.Clone(perm[nt:])
	slices.Sort(testRows)
	slices.Sort(trainRows)
	for _, t := range ts {
		train, test = append(train, t.Select(trainRows)), append(test, t.Select(testRows))
	}
	return train, test, nil
}

func verticalTrain(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("vertical train", stderr)
	var data dataFlags
	fs.Var(&data, "data", "a party's table (repeat; the first, with label=, is the label party)")
	model := fs.String("model", "", "write the trained model (every party's part, JSON) to this new file")
	jsonOut := fs.String("json", "", "write the accuracies and costs as JSON to this new file")
	var tf trainFlags
	tf.register(fs, 10, 64, 0.1, true)
	var nf netFlags
	nf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if nf.kit != "" {
		return netTrain(nf.kit, nf.parties, data, tf, *model, *jsonOut, nf.timeout, stdout)
	}
	ts, err := loadParties(data, true)
	if err != nil {
		return err
	}
	aligned, _, err := align(ts, "cloister-vertical-train", stdout)
	if err != nil {
		return err
	}
	train, test, err := splitRows(aligned, tf.testFraction, tf.seed)
	if err != nil {
		return err
	}
	m, r, err := compare(train, test, tf.config(), stdout)
	if err != nil {
		return err
	}
	return writeOutputs(*model, m, *jsonOut, r, stdout)
}

func writeOutputs(modelPath string, m *vertical.Model, jsonPath string, r any, stdout io.Writer) error {
	if modelPath != "" {
		b, _ := json.MarshalIndent(m, "", "  ")
		if err := atomicfile.Create(modelPath, append(b, '\n'), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote the model to %s (in a real deployment each party keeps only its own part)\n", modelPath)
	}
	if jsonPath != "" {
		b, _ := json.MarshalIndent(r, "", "  ")
		if err := atomicfile.Create(jsonPath, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func verticalPredict(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("vertical predict", stderr)
	var data dataFlags
	fs.Var(&data, "data", "a party's table, in the model's order (repeat; label= optional at the first)")
	modelPath := fs.String("model", "", "the model written by cloister vertical train")
	out := fs.String("out", "", "write id,score,probability for each shared ID to this new CSV file")
	keyBits := fs.Int("key-bits", 2048, "Paillier modulus bits of the scoring session")
	var nf netFlags
	nf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if nf.kit != "" {
		return netPredict(nf.kit, nf.parties, data, *modelPath, *out, nf.timeout, stdout)
	}
	if *modelPath == "" {
		return withHint(errors.New("vertical predict: no --model"), "give the file cloister vertical train --model wrote")
	}
	b, err := os.ReadFile(*modelPath)
	if err != nil {
		return err
	}
	var m vertical.Model
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("vertical predict: model %s: %w", *modelPath, err)
	}
	ts, err := loadParties(data, false)
	if err != nil {
		return err
	}
	aligned, res, err := align(ts, "cloister-vertical-predict", stdout)
	if err != nil {
		return err
	}
	scores, st, err := vertical.Predict(&m, aligned[0], aligned[1:], *keyBits, rand.Reader)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "scored %d rows in %.1fs (%s sent)\n", len(scores), st.Time.Seconds(), mbytes(st.Bytes))
	if aligned[0].Y != nil {
		fmt.Fprintf(stdout, "accuracy %.4f\n", vertical.Accuracy(scores, aligned[0].Y))
	}
	if *out != "" {
		return writeScores(*out, res.Shared, scores)
	}
	return nil
}

// writeScores writes id,score,probability for each aligned row.
func writeScores(path string, ids []string, scores []float64) error {
	var sb strings.Builder
	sb.WriteString("id,score,probability\n")
	for i, s := range scores {
		fmt.Fprintf(&sb, "%s,%.6f,%.6f\n", ids[i], s, 1/(1+math.Exp(-s)))
	}
	return atomicfile.Create(path, []byte(sb.String()), 0o600)
}

// runVerticalDemo is demo --vertical: Fashion-MNIST, T-shirt/top against
// Shirt, the left half of each image at the label party and the right
// half at the other, each missing a random 20% of the IDs.
func runVerticalDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo --vertical", stderr)
	dir := fs.String("data-dir", dataset.DefaultFashionMNISTDir, "Fashion-MNIST directory")
	rows := fs.Int("rows", 2000, "training images of the two classes to use (of 12,000)")
	missing := fs.Float64("missing", 0.2, "share of the IDs each party lacks")
	jsonOut := fs.String("json", "", "write the results as JSON to this new file")
	inProcess := fs.Bool("in-process", false, "run both parties in this process instead of as two processes talking through a relay")
	keep := fs.String("keep", "", "keep the federation, the parties' CSV files, models and logs in this new directory (default: a temporary directory, removed)")
	var tf trainFlags
	tf.register(fs, 5, 64, 0.02, false)
	if err := parse(fs, args); err != nil {
		return err
	}
	sp, err := dataset.LoadFashionMNIST(*dir)
	if err != nil {
		if errors.Is(err, dataset.ErrNotFound) {
			return withHint(err, "apt-get install dataset-fashion-mnist")
		}
		return err
	}
	rng := mrand.New(mrand.NewPCG(tf.seed, 3))
	const a, b = 0, 6 // T-shirt/top, Shirt
	fmt.Fprintf(stdout, "cloister demo --vertical: Fashion-MNIST, %q (0) against %q (1); the label party holds the labels and the left half of each image, the other party the right half; each lacks a random %.0f%% of the IDs\n",
		sp.Train.ClassNames[a], sp.Train.ClassNames[b], 100**missing)
	split := func(s *dataset.Set, prefix string, limit int) []*vertical.Table {
		var idx []int
		for i, y := range s.Y {
			if y == a || y == b {
				idx = append(idx, i)
			}
		}
		if limit > 0 && limit < len(idx) {
			rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
			idx = idx[:limit]
			slices.Sort(idx)
		}
		left := &vertical.Table{Name: "left", Raw: true, Classes: []string{sp.Train.ClassNames[a], sp.Train.ClassNames[b]}}
		right := &vertical.Table{Name: "right", Raw: true}
		for c := range 28 * 28 {
			name := fmt.Sprintf("px%d_%d", c/28, c%28)
			if c%28 < 14 {
				left.Columns = append(left.Columns, name)
			} else {
				right.Columns = append(right.Columns, name)
			}
		}
		for _, i := range idx {
			id := fmt.Sprintf("%s-%05d", prefix, i)
			row := s.X[i*s.Features : (i+1)*s.Features]
			label := 0
			if s.Y[i] == b {
				label = 1
			}
			if rng.Float64() >= *missing {
				left.IDs = append(left.IDs, id)
				left.Y = append(left.Y, label)
				for c, x := range row {
					if c%28 < 14 {
						left.X = append(left.X, x)
					}
				}
			}
			if rng.Float64() >= *missing {
				right.IDs = append(right.IDs, id)
				for c, x := range row {
					if c%28 >= 14 {
						right.X = append(right.X, x)
					}
				}
			}
		}
		return []*vertical.Table{left, right}
	}
	trainTabs, testTabs := split(sp.Train, "train", *rows), split(sp.Test, "test", 0)
	if !*inProcess {
		d := demoFlags{keep: *keep}
		work, remove, err := d.workDir()
		if err != nil {
			return err
		}
		defer remove()
		r, err := verticalDemoProcesses(work, trainTabs, testTabs, tf, stdout)
		if err != nil {
			if *keep == "" {
				return withHint(err, "run with --keep DIR to keep the parties' logs (DIR/logs)")
			}
			return withHint(err, "the parties' logs are in "+filepath.Join(*keep, "logs"))
		}
		return writeOutputs("", nil, *jsonOut, r, stdout)
	}
	train, _, err := align(trainTabs, "cloister-demo-vertical-train", stdout)
	if err != nil {
		return err
	}
	test, _, err := align(testTabs, "cloister-demo-vertical-test", stdout)
	if err != nil {
		return err
	}
	_, r, err := compare(train, test, tf.config(), stdout)
	if err != nil {
		return err
	}
	return writeOutputs("", nil, *jsonOut, r, stdout)
}
