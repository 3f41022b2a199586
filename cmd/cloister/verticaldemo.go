package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/internal/atomicfile"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/vertical"
)

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
