package trainer_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/trainer"
)

// A layout is what a manifest pins: its digest and its parameter count.
func ExampleLayout() {
	l := trainer.Layout{Version: trainer.LayoutVersion, Tensors: []trainer.Tensor{
		{Name: "fc.weight", Shape: []int{10, 784}, DType: trainer.Float32},
		{Name: "fc.bias", Shape: []int{10}, DType: trainer.Float32},
	}}
	d, err := l.Digest()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(l.Len(), "parameters,", l.Bytes(), "bytes on the wire")
	fmt.Println("layout", d)
	// Output:
	// 7850 parameters, 31400 bytes on the wire
	// layout 7e2d924b802064162a3f53d415813cf4b214c195b1d34d5221e5009f299a1e53
}

// A node's Host and a trainer written in Go, on a Unix socket.
func ExampleHost() {
	dir, err := os.MkdirTemp("", "trainer-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l := trainer.Layout{Version: trainer.LayoutVersion, Tensors: []trainer.Tensor{{Name: "w", Shape: []int{2}, DType: trainer.Float32}}}
	digest, _ := l.Digest()

	// The node's side.
	socket := filepath.Join(dir, "trainer.sock")
	lis, err := trainer.Listen(socket)
	if err != nil {
		log.Fatal(err)
	}
	host := trainer.NewHost(trainer.HostConfig{Layout: digest})
	go host.Serve(lis)
	defer host.Close()

	// The trainer's side: it halves every weight.
	go trainer.Attach(context.Background(), trainer.AttachConfig{Socket: socket}, func(_ context.Context, r *trainer.Request) (*trainer.Reply, error) {
		switch r.Kind {
		case trainer.Describe, trainer.Init:
			a, _ := trainer.NewArray(l.Tensors[0], []float64{1, 1})
			return &trainer.Reply{Weights: []trainer.Array{a}}, nil
		case trainer.Train:
			v, _ := r.Weights[0].Values()
			a, _ := trainer.NewArray(l.Tensors[0], []float64{v[0] / 2, v[1] / 2})
			return &trainer.Reply{Weights: []trainer.Array{a}, Examples: 100, Metrics: map[string]float64{"loss": 0.25}}, nil
		}
		return nil, fmt.Errorf("no %v here", r.Kind)
	})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := host.Train(ctx, trainer.TrainTask{Round: 1, Global: fl.Vector{4, -2}, Config: trainer.Config{Epochs: 1}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("Δ", res.Delta, "from", res.Examples, "examples, loss", res.Metrics["loss"])
	// Output:
	// Δ [-2 1] from 100 examples, loss 0.25
}
