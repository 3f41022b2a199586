package simulation

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"testing"

	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/model"
	"github.com/cloisterfl/cloister/strategy"
)

// digest is a hash of the bits of every round's accuracy and loss and of the
// final model's parameters.
func digest(res *Result) uint64 {
	h := fnv.New64a()
	put := func(x float64) { h.Write(binary.LittleEndian.AppendUint64(nil, math.Float64bits(x))) }
	for _, r := range res.Rounds {
		put(r.Accuracy)
		put(r.Loss)
		put(r.Epsilon)
	}
	for _, x := range res.Params {
		put(x)
	}
	return h.Sum64()
}

// The same seed gives the same run, bit for bit, across refactorings: the
// digests were recorded before the sites' local update moved to package
// client, and every random stream must still be drawn in the same order.
func TestGolden(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate func(*Config)
		want   uint64
	}{
		{"fedavg", func(*Config) {}, 0x1b6f9b5beabd1844},
		{"fedprox", func(c *Config) { c.Optimizer.ProxMu = 0.1 }, 0xc4ac6528b2bf6f14},
		{"scaffold", func(c *Config) {
			c.Strategy, _ = strategy.New("scaffold:frac=0.6")
			c.Cohort, c.Partition = 6, dataset.Dirichlet{Alpha: 0.3}
		}, 0x9fdd99c925d46aea},
		{"mlp dp", func(c *Config) {
			c.Model = model.Spec{Kind: model.MLP, Hidden: []int{6}}
			c.LocalEpochs, c.Clip, c.Privacy = 2, 1, &Privacy{Noise: 0.7}
			c.Compress, _ = compress.Parse("q8")
		}, 0x33126d767e5a57c5},
		{"attacked", func(c *Config) {
			c.Attack, c.Byzantine = mustAttack(t, "alie", 10, 2), 2
			c.Rule, c.Clip = mustRule(t, "trimmed:0.2", 10), 3
			c.Compress, _ = compress.Parse("topk:0.3")
		}, 0x6c7a65933ebaec0b},
	} {
		cfg := config(t)
		cfg.Rounds = 3
		c.mutate(&cfg)
		res := run(t, cfg)
		if got := digest(res); got != c.want {
			t.Errorf("%s: digest %#x, want %#x (accuracy %v)", c.name, got, c.want, res.Final.Accuracy)
		}
	}
}
