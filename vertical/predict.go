package vertical

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
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
		if err := checkModel(&m.Parties[i], t); err != nil {
			return nil, Stats{}, err
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
		ps[i] = scoringParty(&m.Parties[i], t, shares[i])
	}
	pk := &shares[0].Key.PublicKey
	ct := int64(pk.CiphertextSize())
	n := label.Rows()
	st := Stats{Rows: n}
	// The feature parties' packed, encrypted partial predictors, summed.
	var sum []*big.Int
	for _, h := range ps[1:] {
		cts, err := encryptAll(pk, h.packedPredictors(pk, n), rnd, 0)
		if err != nil {
			return nil, st, err
		}
		if sum == nil {
			sum = cts
		} else {
			addCiphertexts(pk, sum, cts)
		}
		st.Bytes += int64(len(cts)) * ct
	}
	// The label party adds its own.
	addPlaintexts(pk, sum, ps[0].packedPredictors(pk, n))
	out, err := decryptPacked(ps, sum, n, 0)
	if err != nil {
		return nil, st, fmt.Errorf("vertical: decrypting the scores: %w", err)
	}
	st.Bytes += 2 * int64(len(ps)-1) * int64(len(sum)) * ct
	st.Time = time.Since(start)
	return unscale(out), st, nil
}

// checkModel checks that pm is a well-formed model of t's columns.
func checkModel(pm *PartyModel, t *Table) error {
	if !slices.Equal(t.Columns, pm.Columns) {
		return fmt.Errorf("vertical: party %q's columns %q are not the model's %q", t.Name, t.Columns, pm.Columns)
	}
	if len(pm.Weights) != len(pm.Columns) || len(pm.Mean) != len(pm.Columns) || len(pm.Std) != len(pm.Columns) {
		return fmt.Errorf("vertical: the model of party %q is malformed", pm.Name)
	}
	return nil
}

// scoringParty is t's state for prediction with its part of the model.
func scoringParty(pm *PartyModel, t *Table, share *paillier.KeyShare) *party {
	p := newParty(t, pm.Mean, pm.Std, share)
	p.w, p.b = pm.Weights, pm.Intercept
	return p
}

// packedPredictors returns the party's partial predictors of its n rows,
// quantized and packed, slots per plaintext.
func (p *party) packedPredictors(pk *paillier.PublicKey, n int) []*big.Int {
	s := slots(pk)
	pack := paillier.Packing{SlotBits: slotBits, Slots: s}
	out := make([]*big.Int, (n+s-1)/s)
	for o := range out {
		lo, hi := o*s, min((o+1)*s, n)
		q := make([]int64, hi-lo)
		for i := range q {
			q[i] = p.u(lo + i)
		}
		out[o] = pack.Pack(q, pk.N)
	}
	return out
}

// addPlaintexts adds plaintexts into ciphertexts without randomness:
// c·(1 + m·n) mod n².
func addPlaintexts(pk *paillier.PublicKey, cts, pts []*big.Int) {
	for o, m := range pts {
		g := new(big.Int).Mul(m, pk.N)
		g.Add(g, big.NewInt(1))
		pk.Add(cts[o], cts[o], g)
	}
}

// unscale turns quantized scores into float64.
func unscale(q []int64) []float64 {
	out := make([]float64, len(q))
	for i, v := range q {
		out[i] = float64(v) / (1 << fracU)
	}
	return out
}

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
	m := &Model{Parties: make([]PartyModel, len(all))}
	ps := make([]*party, len(all))
	for i, t := range all {
		m.Parties[i], ps[i] = modelParty(t, i == 0, nil)
	}
	forBatches(label.Rows(), c, func(batch []int) error { // f never fails
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
		for _, p := range ps {
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
			if p.label {
				p.b -= c.LearningRate * grad[p.k] / B
			}
		}
		return nil
	})
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
		p := scoringParty(&pm, t, nil)
		for i := range n {
			out[i] += float64(p.u(i)) / (1 << fracU)
		}
	}
	return out
}
