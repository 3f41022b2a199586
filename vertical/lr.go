package vertical

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/cloisterfl/cloister/paillier"
)

// Fixed-point scales of the protocol.
const (
	// fracU: the linear predictors u = x·w and the residuals travel as
	// round(·2^16).
	fracU = 16
	// fracX: features enter the encrypted gradient as round(x·2^8).
	fracX = 8
	// maxU clips a party's partial predictor, so that every packed sum
	// stays within its slot (|u| ≥ 64 means a sigmoid of 0 or 1 anyway).
	maxU = 64
	// maxX clips a standardized feature.
	maxX = 8
	// slotBits and checkBits lay out the packed gradients and scores:
	// balanced 62-bit digits, 60 bits of headroom to catch a wrong share.
	slotBits  = 62
	checkBits = 60
	// MaxBatch bounds a batch so that a packed gradient cannot overflow:
	// |G| ≤ B·(maxX·2^8)·((maxU·(1+hosts)+2)·2^16) < 2^61 for up to 15 hosts.
	MaxBatch = 1 << 12
	// MaxHosts bounds the feature parties.
	MaxHosts = 15
)

// Config sets the training.
type Config struct {
	// KeyBits is the Paillier modulus' length (2048; tests use less).
	KeyBits int
	// Epochs over the aligned training rows.
	Epochs int
	// Batch is the minibatch size (at most MaxBatch).
	Batch int
	// LearningRate and L2 (ridge) of gradient descent.
	LearningRate float64
	L2           float64
	// Seed orders the minibatches.
	Seed uint64
	// Workers bounds the goroutines (0: one per core).
	Workers int
}

func (c Config) validate() error {
	switch {
	case c.KeyBits < 256 || c.KeyBits%16 != 0:
		return fmt.Errorf("vertical: key of %d bits, want a multiple of 16, at least 256 (2048 for real data)", c.KeyBits)
	case c.Epochs < 1:
		return fmt.Errorf("vertical: %d epochs, want at least 1", c.Epochs)
	case c.Batch < 1 || c.Batch > MaxBatch:
		return fmt.Errorf("vertical: batch of %d, want 1 to %d", c.Batch, MaxBatch)
	case !(c.LearningRate > 0) || math.IsInf(c.LearningRate, 0):
		return fmt.Errorf("vertical: learning rate %v, want a positive number", c.LearningRate)
	case !(c.L2 >= 0) || math.IsInf(c.L2, 0):
		return fmt.Errorf("vertical: L2 %v, want a non-negative number", c.L2)
	}
	return nil
}

// PartyModel is one party's part of the model: its columns' standardization
// and weights (and, at the label party, the intercept). Each party keeps its
// own; nobody else learns it.
type PartyModel struct {
	Name      string    `json:"name"`
	Columns   []string  `json:"columns"`
	Mean      []float64 `json:"mean"`
	Std       []float64 `json:"std"`
	Weights   []float64 `json:"weights"`
	Intercept float64   `json:"intercept,omitempty"`
	Label     bool      `json:"label,omitempty"`
	Classes   []string  `json:"classes,omitempty"`
}

// Model is the parties' models, the label party first.
type Model struct {
	Parties []PartyModel `json:"parties"`
}

// Stats are what a run measured.
type Stats struct {
	Rows, Batches int
	Bytes         int64 // ciphertexts and decryption shares the parties sent each other
	Time          time.Duration
}

// Standardize returns the per-column mean and standard deviation of t
// (std 1 for a constant column), or mean 0 and std 1 everywhere if raw.
func Standardize(t *Table, raw bool) (mean, std []float64) {
	k := len(t.Columns)
	mean, std = make([]float64, k), make([]float64, k)
	for j := range std {
		std[j] = 1
	}
	if raw {
		return mean, std
	}
	n := float64(t.Rows())
	for i := range t.Rows() {
		for j, x := range t.Row(i) {
			mean[j] += x / n
		}
	}
	for j := range k {
		var v float64
		for i := range t.Rows() {
			d := t.Row(i)[j] - mean[j]
			v += d * d / n
		}
		if v > 1e-24 {
			std[j] = math.Sqrt(v)
		}
	}
	return mean, std
}

// features returns t's rows standardized and clipped, row-major.
func features(t *Table, mean, std []float64) []float64 {
	out := make([]float64, len(t.X))
	k := len(t.Columns)
	for i, x := range t.X {
		j := i % k
		out[i] = max(-maxX, min(maxX, (x-mean[j])/std[j]))
	}
	return out
}

// party is one party's private state during training.
type party struct {
	name  string
	k     int       // columns
	x     []float64 // standardized, row-major
	qx    []int64   // round(x·2^fracX), row-major
	w     []float64
	b     float64 // intercept (label party)
	y     []int   // label party only
	share *paillier.KeyShare
}

func newParty(t *Table, mean, std []float64, share *paillier.KeyShare) *party {
	p := &party{name: t.Name, k: len(t.Columns), x: features(t, mean, std), w: make([]float64, len(t.Columns)), y: t.Y, share: share}
	p.qx = make([]int64, len(p.x))
	for i, x := range p.x {
		p.qx[i] = int64(math.Round(x * (1 << fracX)))
	}
	return p
}

// u returns the party's clipped partial predictor of row i, quantized.
func (p *party) u(i int) int64 {
	var s float64
	for j, x := range p.x[i*p.k : (i+1)*p.k] {
		s += x * p.w[j]
	}
	s += p.b
	return int64(math.Round(max(-maxU, min(maxU, s)) * (1 << fracU)))
}

// Train trains hetero logistic regression on aligned tables: label is
// the label party's table (with Y), hosts the feature parties', all with
// the same rows in the same order (the output of PSI). It deals a t-of-t
// threshold Paillier key over all parties (the dealer, here this
// process, erases it), then for each minibatch:
//
//  1. each feature party h encrypts its partial predictors [[u_h,i]];
//  2. the label party computes [[4d_i]] = [[u_G,i − 2y_i]]·Π_h [[u_h,i]]
//     (y in ±1: d is the Taylor residual of the logistic loss, 0.25·u − 0.5·y)
//     and sends it to every feature party;
//  3. every party p computes its encrypted gradient Σ_i x_p,i·[[4d_i]],
//     packs it (62-bit slots) and has it decrypted: every other party
//     returns a decryption share, p combines them and alone reads its
//     gradient, then steps.
//
// Nobody decrypts a per-sample value. What each party learns is written in
// SECURITY.md.
func Train(label *Table, hosts []*Table, c Config, rnd io.Reader) (*Model, Stats, error) {
	if err := c.validate(); err != nil {
		return nil, Stats{}, err
	}
	if label.Y == nil {
		return nil, Stats{}, errors.New("vertical: the label party's table has no labels")
	}
	if len(hosts) < 1 || len(hosts) > MaxHosts {
		return nil, Stats{}, fmt.Errorf("vertical: %d feature parties, want 1 to %d", len(hosts), MaxHosts)
	}
	for _, h := range hosts {
		if !slices.Equal(h.IDs, label.IDs) {
			return nil, Stats{}, fmt.Errorf("vertical: party %q's rows are not aligned with the label party's (run PSI first)", h.Name)
		}
	}
	start := time.Now()
	all := append([]*Table{label}, hosts...)
	shares, err := dealKey(c.KeyBits, len(all), rnd)
	if err != nil {
		return nil, Stats{}, err
	}
	m := &Model{}
	ps := make([]*party, len(all))
	for i, t := range all {
		mean, std := Standardize(t, t.Raw)
		m.Parties = append(m.Parties, PartyModel{Name: t.Name, Columns: t.Columns, Mean: mean, Std: std, Label: i == 0, Classes: t.Classes})
		ps[i] = newParty(t, mean, std, shares[i])
	}
	tk := shares[0].Key
	ct := int64(tk.CiphertextSize())
	n := label.Rows()
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(c.Seed, 0x7665727469))
	var st Stats
	st.Rows = n
	for range c.Epochs {
		rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
		for lo := 0; lo < n; lo += c.Batch {
			batch := order[lo:min(lo+c.Batch, n)]
			if err := step(ps, batch, c, rnd, &st, ct); err != nil {
				return nil, st, err
			}
			st.Batches++
		}
	}
	for i, p := range ps {
		m.Parties[i].Weights = p.w
		m.Parties[i].Intercept = p.b
	}
	st.Time = time.Since(start)
	return m, st, nil
}

// dealKey generates a keyBits Paillier key, deals it all-of-l and erases it.
func dealKey(keyBits, l int, rnd io.Reader) ([]*paillier.KeyShare, error) {
	sk, err := paillier.GenerateKey(keyBits, rnd)
	if err != nil {
		return nil, err
	}
	_, shares, err := paillier.Deal(sk, l, l, rnd)
	sk.Erase()
	return shares, err
}

// step runs one minibatch of the protocol.
func step(ps []*party, batch []int, c Config, rnd io.Reader, st *Stats, ct int64) error {
	tk := ps[0].share.Key
	pk := &tk.PublicKey
	B := len(batch)
	// 1. Feature parties encrypt their partial predictors.
	enc := make([][]*big.Int, len(ps))
	for h := 1; h < len(ps); h++ {
		vals := make([]*big.Int, B)
		for k, i := range batch {
			vals[k] = signed(ps[h].u(i), pk.N)
		}
		var err error
		if enc[h], err = encryptAll(pk, vals, rnd, c.Workers); err != nil {
			return err
		}
		st.Bytes += int64(B) * ct
	}
	// 2. The label party: [[4d]] = [[u_G − 2y]] · Π [[u_h]].
	g := ps[0]
	vals := make([]*big.Int, B)
	for k, i := range batch {
		y := int64(2*g.y[i] - 1)
		vals[k] = signed(g.u(i)-2*y<<fracU, pk.N)
	}
	d, err := encryptAll(pk, vals, rnd, c.Workers)
	if err != nil {
		return err
	}
	for h := 1; h < len(ps); h++ {
		for k := range d {
			pk.Add(d[k], d[k], enc[h][k])
		}
	}
	st.Bytes += int64(len(ps)-1) * int64(B) * ct
	// 3. Every party's encrypted gradient, packed and threshold-decrypted.
	scale := 1 / (4 * float64(B) * math.Ldexp(1, fracU+fracX))
	for pi, p := range ps {
		cols := p.k
		if pi == 0 {
			cols++ // the intercept: x = 1 at scale 2^fracX
		}
		gct := make([]*big.Int, cols)
		err := parallelFor(cols, c.Workers, func(j int) error {
			gct[j] = columnProduct(pk, d, batch, func(i int) int64 {
				if j == p.k {
					return 1 << fracX
				}
				return p.qx[i*p.k+j]
			})
			return nil
		})
		if err != nil {
			return err
		}
		grad, bytes, err := decryptPacked(ps, pi, gct, c.Workers)
		if err != nil {
			return fmt.Errorf("vertical: party %q's gradient: %w", p.name, err)
		}
		st.Bytes += bytes
		for j := range p.k {
			p.w[j] -= c.LearningRate * (float64(grad[j])*scale + c.L2*p.w[j])
		}
		if pi == 0 {
			p.b -= c.LearningRate * float64(grad[p.k]) * scale
		}
	}
	return nil
}

// signed encodes v mod n.
func signed(v int64, n *big.Int) *big.Int {
	x := big.NewInt(v)
	if v < 0 {
		x.Add(x, n)
	}
	return x
}

func encryptAll(pk *paillier.PublicKey, vals []*big.Int, rnd io.Reader, workers int) ([]*big.Int, error) {
	rs, err := pk.RandomUnits(rnd, len(vals))
	if err != nil {
		return nil, err
	}
	out := make([]*big.Int, len(vals))
	err = parallelFor(len(vals), workers, func(i int) error {
		out[i] = pk.EncryptWith(vals[i], rs[i])
		return nil
	})
	return out, err
}

// columnProduct returns Π_k d[k]^q(batch[k]) mod n², the encryption of
// Σ_k q_k·D_k, skipping zeros and inverting for negative q.
func columnProduct(pk *paillier.PublicKey, d []*big.Int, batch []int, q func(i int) int64) *big.Int {
	pos, neg := big.NewInt(1), big.NewInt(1)
	var e, t big.Int
	for k, i := range batch {
		v := q(i)
		switch {
		case v == 0:
			continue
		case v == 1:
			pos.Mul(pos, d[k])
			pos.Mod(pos, pk.N2)
		case v > 0:
			t.Exp(d[k], e.SetInt64(v), pk.N2)
			pos.Mul(pos, &t)
			pos.Mod(pos, pk.N2)
		default:
			t.Exp(d[k], e.SetInt64(-v), pk.N2)
			neg.Mul(neg, &t)
			neg.Mod(neg, pk.N2)
		}
	}
	if neg.Cmp(big.NewInt(1)) != 0 {
		neg.ModInverse(neg, pk.N2)
		pos.Mul(pos, neg)
		pos.Mod(pos, pk.N2)
	}
	return pos
}

// slots is the number of 62-bit values per packed plaintext.
func slots(pk *paillier.PublicKey) int { return (pk.N.BitLen() - 1 - checkBits) / slotBits }

// packCiphertexts packs encrypted values, slots per ciphertext, by Horner's
// rule in the exponent: [[Σ_j v_j·2^(62j)]] = (…([[v_{k−1}]]^(2^62)·[[v_{k−2}]])…).
func packCiphertexts(pk *paillier.PublicKey, cts []*big.Int, workers int) []*big.Int {
	s := slots(pk)
	out := make([]*big.Int, (len(cts)+s-1)/s)
	shift := new(big.Int).Lsh(big.NewInt(1), slotBits)
	parallelFor(len(out), workers, func(o int) error {
		lo, hi := o*s, min((o+1)*s, len(cts))
		acc := new(big.Int).Set(cts[hi-1])
		for j := hi - 2; j >= lo; j-- {
			acc.Exp(acc, shift, pk.N2)
			acc.Mul(acc, cts[j])
			acc.Mod(acc, pk.N2)
		}
		out[o] = acc
		return nil
	})
	return out
}

// decryptPacked packs owner's encrypted values, collects a decryption
// share of each packed ciphertext from every party (the owner's own
// included), combines them at the owner and unpacks. It returns the
// values and the bytes sent (packed ciphertexts out, shares back).
func decryptPacked(ps []*party, owner int, cts []*big.Int, workers int) ([]int64, int64, error) {
	pk := &ps[owner].share.Key.PublicKey
	packed := packCiphertexts(pk, cts, workers)
	ctLen := int64(pk.CiphertextSize())
	bytes := 2 * int64(len(ps)-1) * int64(len(packed)) * ctLen
	s := slots(pk)
	pack := paillier.Packing{SlotBits: slotBits, Slots: s}
	bound := new(big.Int).Lsh(big.NewInt(1), slotBits-1)
	out := make([]int64, len(cts))
	err := parallelFor(len(packed), workers, func(o int) error {
		parts := make(map[int]*big.Int, len(ps))
		for _, p := range ps {
			sh, err := p.share.Decrypt(packed[o])
			if err != nil {
				return err
			}
			parts[p.share.Index] = sh
		}
		m, err := ps[owner].share.Key.Combine(parts)
		if err != nil {
			return err
		}
		lo, hi := o*s, min((o+1)*s, len(cts))
		return pack.Unpack(m, pk.N, hi-lo, bound, out[lo:hi])
	})
	return out, bytes, err
}

func parallelFor(n, workers int, f func(i int) error) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range workers {
		wg.Go(func() {
			for i := range next {
				errs[i] = f(i)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
