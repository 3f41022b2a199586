package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/cloisterfl/cloister/attack"
	"github.com/cloisterfl/cloister/client"
	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/model"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
)

// backdoorSuccess measures, once the federation has stopped, how often its
// final model answers the backdoor's target on the triggered test set
// (attack.Backdoor.Triggered: every test image outside the target class,
// stamped with the trigger): the backdoor's success rate. The model is the
// global one, exported from honest's state with its group key, as `cloister
// model export` does; every member holds the same. It returns nil when the
// demo's attack is not a backdoor.
func (d *demoFlags) backdoorSuccess(ctx context.Context, f *localFed, honest string) (*float64, error) {
	if d.attack == "" {
		return nil, nil
	}
	a, err := attack.Parse(d.attack, d.fed.nodes, d.byzantine)
	if err != nil {
		return nil, err
	}
	b, ok := a.(attack.Backdoor)
	if !ok {
		return nil, nil
	}
	kit, err := pki.LoadKit(f.kit(honest))
	if err != nil {
		return nil, err
	}
	exp, err := node.Export(ctx, kit, f.kit(honest), f.state(honest), nil)
	if err != nil {
		return nil, fmt.Errorf("exporting the final model from %s: %w", honest, err)
	}
	spec := kit.Manifest.Model.Spec()
	if len(exp.Model) != spec.NumParams() {
		return nil, fmt.Errorf("the final model of %s has %d values, the manifest's %s %d", honest, len(exp.Model), spec.Kind, spec.NumParams())
	}
	split, err := dataset.Open(d.fed.data, dataset.Options{TestFraction: 0.2, Seed: d.seed})
	if err != nil {
		return nil, err
	}
	trig, err := b.Triggered(split.Test)
	if err != nil {
		return nil, err
	}
	// Evaluation does not train: any valid optimizer will do.
	t := client.Trainer{Model: spec, Optimizer: model.SGD{LR: 0.1, Batch: 1}, Epochs: 1}
	m, err := t.Evaluate(exp.Model, trig)
	if err != nil {
		return nil, errors.Join(errors.New("evaluating the final model on the triggered test set"), err)
	}
	return &m.Accuracy, nil
}
