package node

import (
	"context"
	"encoding/binary"
	"hash/fnv"
	"math"
	mrand "math/rand/v2"
	"testing"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/fl"
)

// A training task's update is the same, bit for bit, across refactorings:
// the digest was recorded before the local update moved to package client.
func TestTrainGolden(t *testing.T) {
	data := &dataset.Set{Name: "tiny", Features: 4, Classes: 2}
	rng := mrand.New(mrand.NewPCG(1, 2))
	for i := range 32 {
		for range 4 {
			data.X = append(data.X, rng.NormFloat64()+float64(i%2))
		}
		data.Y = append(data.Y, i%2)
	}
	tr, err := newTrainer(dpManifest, "node-1", data, data, testLimits, 1)
	if err != nil {
		t.Fatal(err)
	}
	tr.noise = mrand.NewChaCha8([32]byte{7})
	h := fnv.New64a()
	global := make(fl.Vector, 10)
	for r := fl.Round(1); r <= 3; r++ {
		res, err := tr.trainTask(context.Background(), r, global)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range append(res.Update.Delta, res.Update.Weight, res.Clip) {
			h.Write(binary.LittleEndian.AppendUint64(nil, math.Float64bits(x)))
		}
		global.Add(1, res.Update.Delta)
	}
	if got, want := h.Sum64(), uint64(0xa473a497a013c4f9); got != want {
		t.Errorf("digest %#x, want %#x", got, want)
	}
}
