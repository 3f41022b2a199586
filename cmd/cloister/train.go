package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/model"
	"github.com/cloisterfl/cloister/simulation"
)

// learning holds the flags shared by train and simulate.
type learning struct {
	data         string
	testFraction float64
	kind         string
	hidden       string
	batch        int
	lr           float64
	momentum     float64
	weightDecay  float64
	seed         uint64
	jsonPath     string
	plotPath     string
}

func (l *learning) register(fs *flag.FlagSet) {
	fs.StringVar(&l.data, "data", "fashion-mnist", "dataset: fashion-mnist, fashion-mnist:DIR or csv:PATH:label=COLUMN")
	fs.Float64Var(&l.testFraction, "test-fraction", 0.2, "fraction of a CSV held out for testing")
	fs.StringVar(&l.kind, "model", "mlp", "model: softmax or mlp")
	fs.StringVar(&l.hidden, "hidden", "128", "hidden layer sizes of the mlp, comma-separated")
	fs.IntVar(&l.batch, "batch", 64, "minibatch size")
	fs.Float64Var(&l.lr, "lr", 0.05, "learning rate")
	fs.Float64Var(&l.momentum, "momentum", 0.9, "SGD momentum")
	fs.Float64Var(&l.weightDecay, "weight-decay", 0, "L2 weight decay")
	fs.Uint64Var(&l.seed, "seed", 1, "random seed: the same seed gives the same result")
	fs.StringVar(&l.jsonPath, "json", "", "write the results as JSON to this file")
	fs.StringVar(&l.plotPath, "plot", "", "write accuracy and loss per round as SVG to this file")
}

func (l *learning) load() (dataset.Split, error) {
	split, err := dataset.Open(l.data, dataset.Options{TestFraction: l.testFraction, Seed: l.seed})
	if errors.Is(err, dataset.ErrNotFound) && strings.HasPrefix(l.data, "fashion-mnist") {
		return split, withHint(err, "install it with: apt-get install -y dataset-fashion-mnist")
	}
	return split, err
}

func (l *learning) spec() (model.Spec, error) {
	spec := model.Spec{Kind: l.kind}
	if l.kind == "mlp" {
		for _, f := range strings.Split(l.hidden, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return spec, fmt.Errorf("--hidden %q: %q is not a positive layer size", l.hidden, f)
			}
			spec.Hidden = append(spec.Hidden, n)
		}
	}
	return spec, nil
}

func (l *learning) optimizer() model.SGD {
	return model.SGD{LR: l.lr, Momentum: l.momentum, WeightDecay: l.weightDecay, Batch: l.batch}
}

// progress prints one line per round to w.
func progress(w io.Writer, unit string, total int) func(simulation.RoundResult) {
	return func(r simulation.RoundResult) {
		fmt.Fprintf(w, "%s %*d/%d  accuracy %.4f  loss %.4f  %.1fs\n", unit, len(strconv.Itoa(total)), r.Round, total, r.Accuracy, r.Loss, r.Seconds)
	}
}

func runTrain(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("train", stderr)
	var l learning
	l.register(fs)
	epochs := fs.Int("epochs", 10, "training epochs")
	schedule := fs.String("schedule", "cosine", "learning-rate schedule over the epochs: cosine or constant")
	if err := parse(fs, args); err != nil {
		return err
	}
	opt := l.optimizer()
	switch *schedule {
	case "cosine":
		opt.Cosine = true
	case "constant":
	default:
		return fmt.Errorf("--schedule %q: want cosine or constant", *schedule)
	}
	spec, err := l.spec()
	if err != nil {
		return err
	}
	split, err := l.load()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "cloister: training %s centrally on %s: %d training and %d test examples\n", spec.Kind, split.Train.Name, split.Train.Len(), split.Test.Len())
	res, err := simulation.Centralized(simulation.Config{
		Data: split, Model: spec, Optimizer: opt, Rounds: *epochs, Seed: l.seed,
	}, progress(stderr, "epoch", *epochs))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "final test accuracy %.4f, loss %.4f after %d epochs\n", res.Final.Accuracy, res.Final.Loss, *epochs)
	return l.output(res, fmt.Sprintf("centralized %s on %s", spec.Kind, split.Train.Name), "epoch", false)
}
