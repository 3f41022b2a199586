package main

import (
	"fmt"
	"io"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/simulation"
	"github.com/cloisterfl/cloister/strategy"
)

func runSimulate(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("simulate", stderr)
	var l learning
	l.register(fs)
	nodes := fs.Int("nodes", 10, "number of simulated sites")
	partition := fs.String("partition", "iid", "how data is split over sites: iid, dirichlet:ALPHA or shards:K")
	rounds := fs.Int("rounds", 30, "federated rounds")
	localEpochs := fs.Int("local-epochs", 1, "local epochs per round on each site")
	server := fs.String("strategy", "fedavg", "server optimizer: fedavg, fedadam, fedyogi, fedadagrad")
	proxMu := fs.Float64("prox-mu", 0, "FedProx proximal term μ (0 is plain FedAvg)")
	if err := parse(fs, args); err != nil {
		return err
	}
	part, err := dataset.ParsePartition(*partition)
	if err != nil {
		return withHint(err, "use iid, dirichlet:0.5 or shards:2")
	}
	strat, err := strategy.New(*server)
	if err != nil {
		return err
	}
	spec, err := l.spec()
	if err != nil {
		return err
	}
	split, err := l.load()
	if err != nil {
		return err
	}
	opt := l.optimizer()
	opt.ProxMu = *proxMu
	fmt.Fprintf(stderr, "cloister: simulating %d nodes (%s) training %s on %s, %s, %d rounds (plaintext: nothing is protected)\n",
		*nodes, part, spec.Kind, split.Train.Name, strat.Name(), *rounds)
	res, err := simulation.Run(simulation.Config{
		Data: split, Model: spec, Optimizer: opt, Strategy: strat,
		Nodes: *nodes, Partition: part, Rounds: *rounds, LocalEpochs: *localEpochs, Seed: l.seed,
	}, progress(stderr, "round", *rounds))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "final test accuracy %.4f, loss %.4f after %d rounds\n", res.Final.Accuracy, res.Final.Loss, *rounds)
	return l.output(res, fmt.Sprintf("FedAvg: %d nodes, %s, %s on %s", *nodes, part, spec.Kind, split.Train.Name), "round")
}
