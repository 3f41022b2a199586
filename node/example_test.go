package node_test

import (
	"context"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/store"
)

// ExampleNode_Run runs member node-1 of the federation `cloister init --dir
// fed` wrote, on its share of Fashion-MNIST, until the session is over.
func ExampleNode_Run() {
	kit, err := pki.LoadKit("fed/node-1")
	if err != nil {
		panic(err)
	}
	split, err := dataset.Open("fashion-mnist", dataset.Options{})
	if err != nil {
		panic(err)
	}
	key, err := store.LoadOrCreateKey("fed/node-1") // the at-rest key stays with the kit
	if err != nil {
		panic(err)
	}
	n, err := node.New(node.Config{Kit: kit, StateDir: "fed/node-1/state", AtRest: key,
		Train: split.Train, Test: split.Test})
	if err != nil {
		panic(err)
	}
	if err := n.Run(context.Background(), kit.Config.CoordinatorAddress); err != nil {
		panic(err)
	}
}
