package model

import (
	"syscall"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/dataset"
)

// The benchmarks train the MLP 784-128-10 of the Fashion-MNIST baseline
// with DefaultSGD (batch 64, momentum 0.9) on synthetic data of the same
// shape: features uniform in [0, 1), labels uniform in [0, 10). The same
// workload in PyTorch is bench/pytorch_mlp.py.

var benchSpec = Spec{Kind: MLP, Inputs: 784, Classes: 10, Hidden: []int{128}}

func syntheticSet(n int) *dataset.Set {
	rng := newRand(1)
	s := &dataset.Set{Name: "synthetic", Features: 784, Classes: 10, X: make([]float64, n*784), Y: make([]int, n)}
	for i := range s.X {
		s.X[i] = rng.Float64()
	}
	for i := range s.Y {
		s.Y[i] = rng.IntN(10)
	}
	return s
}

// BenchmarkMLPStep measures one SGD step: forward, backward and update on a
// batch of 64.
func BenchmarkMLPStep(b *testing.B) {
	set := syntheticSet(64)
	m := mustNew(b, benchSpec, 1)
	t, err := DefaultSGD().newTrainer(m, nil, 64)
	if err != nil {
		b.Fatal(err)
	}
	x, y := t.gather(set, seq(0, 64))
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		if _, err := t.step(x, y); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
	b.ReportMetric(float64(64*b.N)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkMLPEpoch measures one epoch of SGD.Train over 60,000 examples,
// the size of Fashion-MNIST's training set, shuffling included.
func BenchmarkMLPEpoch(b *testing.B) {
	const n = 60000
	set := syntheticSet(n)
	m := mustNew(b, benchSpec, 1)
	rng := newRand(2)
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		if _, err := DefaultSGD().Train(m, set, 1, nil, rng); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "samples/s")
}

// cpuTime returns the user and system CPU time the process has used.
// On a machine shared with other work, CPU time per operation varies much
// less than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process CPU time per operation since start, in
// the unit cpu-ns/op.
func reportCPU(b *testing.B, start time.Duration) {
	if used := cpuTime() - start; start > 0 && used > 0 {
		b.ReportMetric(float64(used)/float64(b.N), "cpu-ns/op")
	}
}
