package vertical

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/cloisterfl/cloister/paillier"
)

// Predict scores aligned rows with a trained model: each feature party
// packs its partial predictors (62-bit slots) and encrypts them under a
// fresh all-of-l threshold key; the label party adds its own partial
// predictors into the ciphertexts and, with a decryption share from every
// feature party, reads the sums. The label party learns each row's score
// x·w (the prediction), and nothing else; the feature parties learn
// nothing. The tables must be aligned and their columns those of the
// model, the label party first (its labels are not needed).
func Predict(m *Model, label *Table, hosts []*Table, keyBits int, rnd io.Reader) ([]float64, Stats, error) {
	start := time.Now()
	all := append([]*Table{label}, hosts...)
	if len(m.Parties) != len(all) {
		return nil, Stats{}, fmt.Errorf("vertical: the model has %d parties, %d tables given", len(m.Parties), len(all))
	}
	for i, t := range all {
		pm := m.Parties[i]
		if !slices.Equal(t.Columns, pm.Columns) {
			return nil, Stats{}, fmt.Errorf("vertical: party %q's columns %q are not the model's %q", t.Name, t.Columns, pm.Columns)
		}
		if len(pm.Weights) != len(pm.Columns) || len(pm.Mean) != len(pm.Columns) || len(pm.Std) != len(pm.Columns) {
			return nil, Stats{}, fmt.Errorf("vertical: the model of party %q is malformed", pm.Name)
		}
		if i > 0 && !slices.Equal(t.IDs, label.IDs) {
			return nil, Stats{}, fmt.Errorf("vertical: party %q's rows are not aligned with the label party's (run PSI first)", t.Name)
		}
	}
	shares, err := dealKey(keyBits, len(all), rnd)
	if err != nil {
		return nil, Stats{}, err
	}
	ps := make([]*party, len(all))
	for i, t := range all {
		pm := m.Parties[i]
		ps[i] = newParty(t, pm.Mean, pm.Std, shares[i])
		ps[i].w, ps[i].b = pm.Weights, pm.Intercept
	}
	pk := &shares[0].Key.PublicKey
	s := slots(pk)
	pack := paillier.Packing{SlotBits: slotBits, Slots: s}
	n := label.Rows()
	k := (n + s - 1) / s
	var st Stats
	st.Rows = n
	quant := func(p *party, lo, hi int) []int64 {
		q := make([]int64, hi-lo)
		for i := lo; i < hi; i++ {
			q[i-lo] = p.u(i)
		}
		return q
	}
	// The feature parties' packed, encrypted partial predictors, summed.
	sum := make([]*big.Int, k)
	for h := 1; h < len(ps); h++ {
		pts := make([]*big.Int, k)
		for o := range k {
			pts[o] = pack.Pack(quant(ps[h], o*s, min((o+1)*s, n)), pk.N)
		}
		cts, err := encryptAll(pk, pts, rnd, 0)
		if err != nil {
			return nil, st, err
		}
		for o := range k {
			if sum[o] == nil {
				sum[o] = cts[o]
			} else {
				pk.Add(sum[o], sum[o], cts[o])
			}
		}
		st.Bytes += int64(k * pk.CiphertextSize())
	}
	// The label party adds its own: c·(1 + m·n) mod n².
	for o := range k {
		mg := pack.Pack(quant(ps[0], o*s, min((o+1)*s, n)), pk.N)
		mg.Mul(mg, pk.N)
		mg.Add(mg, big.NewInt(1))
		pk.Add(sum[o], sum[o], mg)
	}
	out := make([]int64, n)
	bound := new(big.Int).Lsh(big.NewInt(1), slotBits-1)
	err = parallelFor(k, 0, func(o int) error {
		parts := map[int]*big.Int{}
		for _, p := range ps {
			sh, err := p.share.Decrypt(sum[o])
			if err != nil {
				return err
			}
			parts[p.share.Index] = sh
		}
		mm, err := pk2tk(ps).Combine(parts)
		if err != nil {
			return err
		}
		lo, hi := o*s, min((o+1)*s, n)
		return pack.Unpack(mm, pk.N, hi-lo, bound, out[lo:hi])
	})
	if err != nil {
		return nil, st, fmt.Errorf("vertical: decrypting the scores: %w", err)
	}
	st.Bytes += 2 * int64(len(ps)-1) * int64(k*pk.CiphertextSize())
	scores := make([]float64, n)
	for i, v := range out {
		scores[i] = float64(v) / (1 << fracU)
	}
	st.Time = time.Since(start)
	return scores, st, nil
}

func pk2tk(ps []*party) *paillier.ThresholdKey { return ps[0].share.Key }

// Accuracy is the share of rows whose score has the label's sign.
func Accuracy(scores []float64, y []int) float64 {
	if len(scores) == 0 {
		return 0
	}
	ok := 0
	for i, s := range scores {
		if (s > 0) == (y[i] == 1) {
			ok++
		}
	}
	return float64(ok) / float64(len(scores))
}

// Central is the baseline: the same logistic regression trained in one
// place on the joined columns (each party's standardized as in Train), in
// float64, with the same minibatches in the same order. With taylor, the
// gradient is Train's (the residual 0.25·u − 0.5·y); without, the exact
// logistic gradient σ(u) − y. It returns the same Model shape.
func Central(label *Table, hosts []*Table, c Config, taylor bool) (*Model, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if label.Y == nil {
		return nil, errors.New("vertical: the label party's table has no labels")
	}
	all := append([]*Table{label}, hosts...)
	m := &Model{}
	ps := make([]*party, len(all))
	for i, t := range all {
		mean, std := Standardize(t, t.Raw)
		m.Parties = append(m.Parties, PartyModel{Name: t.Name, Columns: t.Columns, Mean: mean, Std: std, Label: i == 0, Classes: t.Classes})
		ps[i] = newParty(t, mean, std, nil)
	}
	n := label.Rows()
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(c.Seed, 0x7665727469))
	for range c.Epochs {
		rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
		for lo := 0; lo < n; lo += c.Batch {
			batch := order[lo:min(lo+c.Batch, n)]
			res := make([]float64, len(batch))
			for k, i := range batch {
				var u float64
				for _, p := range ps {
					u += float64(p.u(i)) / (1 << fracU) // the same clipping
				}
				y := float64(label.Y[i])
				if taylor {
					res[k] = 0.25*u - 0.5*(2*y-1)
				} else {
					res[k] = 1/(1+math.Exp(-u)) - y
				}
			}
			B := float64(len(batch))
			for pi, p := range ps {
				grad := make([]float64, p.k+1)
				for k, i := range batch {
					for j, x := range p.x[i*p.k : (i+1)*p.k] {
						grad[j] += x * res[k]
					}
					grad[p.k] += res[k]
				}
				for j := range p.k {
					p.w[j] -= c.LearningRate * (grad[j]/B + c.L2*p.w[j])
				}
				if pi == 0 {
					p.b -= c.LearningRate * grad[p.k] / B
				}
			}
		}
	}
	for i, p := range ps {
		m.Parties[i].Weights = p.w
		m.Parties[i].Intercept = p.b
	}
	return m, nil
}

// Scores computes x·w in the clear, for a model trained centrally (or for
// testing Predict).
func Scores(m *Model, all []*Table) []float64 {
	n := all[0].Rows()
	out := make([]float64, n)
	for pi, t := range all {
		pm := m.Parties[pi]
		p := newParty(t, pm.Mean, pm.Std, nil)
		p.w, p.b = pm.Weights, pm.Intercept
		for i := range n {
			out[i] += float64(p.u(i)) / (1 << fracU)
		}
	}
	return out
}
