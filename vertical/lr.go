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
	// minKeyBits is the shortest Paillier modulus accepted (2048 for real
	// data): three 62-bit slots and the check bits.
	minKeyBits = 256
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
	if c.KeyBits < minKeyBits || c.KeyBits%16 != 0 {
		return fmt.Errorf("vertical: key of %d bits, want a multiple of 16, at least %d (2048 for real data)", c.KeyBits, minKeyBits)
	}
	return c.validateSteps()
}

// validateSteps checks the settings of gradient descent (all but KeyBits,
// which only the in-process Train uses).
func (c Config) validateSteps() error {
	switch {
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
	// Bytes counts the ciphertexts and decryption shares the parties sent
	// each other (Train, Predict), or the message bodies this party sent
	// (TrainParty, PredictParty).
	Bytes int64
	Time  time.Duration
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
	label bool      // the label party: it has the labels and the intercept
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

// modelParty standardizes t and returns its part of the model (weights to
// come) and its training state.
func modelParty(t *Table, label bool, share *paillier.KeyShare) (PartyModel, *party) {
	mean, std := Standardize(t, t.Raw)
	pm := PartyModel{Name: t.Name, Columns: t.Columns, Mean: mean, Std: std, Label: label, Classes: t.Classes}
	p := newParty(t, mean, std, share)
	p.label = label
	return pm, p
}

// cols is the number of values in the party's gradient: one per column,
// and the intercept's at the label party.
func (p *party) cols() int {
	if p.label {
		return p.k + 1
	}
	return p.k
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
	m := &Model{Parties: make([]PartyModel, len(all))}
	ps := make([]*party, len(all))
	for i, t := range all {
		m.Parties[i], ps[i] = modelParty(t, i == 0, shares[i])
	}
	n := label.Rows()
	st := Stats{Rows: n}
	err = forBatches(n, c, func(batch []int) error {
		if err := step(ps, batch, c, rnd, &st); err != nil {
			return err
		}
		st.Batches++
		return nil
	})
	if err != nil {
		return nil, st, err
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

// forBatches calls f with the rows of each minibatch of n rows, epoch
// after epoch, in the order Config.Seed draws: every party, given the
// same n and Config, visits the same batches.
func forBatches(n int, c Config, f func(batch []int) error) error {
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(c.Seed, 0x7665727469))
	for range c.Epochs {
		rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
		for lo := 0; lo < n; lo += c.Batch {
			if err := f(order[lo:min(lo+c.Batch, n)]); err != nil {
				return err
			}
		}
	}
	return nil
}

// step runs one minibatch of the protocol, every party in this process.
func step(ps []*party, batch []int, c Config, rnd io.Reader, st *Stats) error {
	pk := &ps[0].share.Key.PublicKey
	ct := int64(pk.CiphertextSize())
	B := int64(len(batch))
	// 1. Feature parties encrypt their partial predictors.
	enc := make([][]*big.Int, 0, len(ps)-1)
	for _, h := range ps[1:] {
		u, err := h.partials(pk, batch, rnd, c.Workers)
		if err != nil {
			return err
		}
		enc = append(enc, u)
		st.Bytes += B * ct
	}
	// 2. The label party: [[4d]] = [[u_G − 2y]] · Π [[u_h]].
	d, err := ps[0].residuals(pk, batch, rnd, c.Workers)
	if err != nil {
		return err
	}
	addCiphertexts(pk, d, enc...)
	st.Bytes += int64(len(ps)-1) * B * ct
	// 3. Every party's encrypted gradient, packed and threshold-decrypted.
	for _, p := range ps {
		packed, err := p.gradient(pk, d, batch, c.Workers)
		if err != nil {
			return err
		}
		grad, err := decryptPacked(ps, packed, p.cols(), c.Workers)
		if err != nil {
			return fmt.Errorf("vertical: party %q's gradient: %w", p.name, err)
		}
		st.Bytes += 2 * int64(len(ps)-1) * int64(len(packed)) * ct
		p.descend(grad, len(batch), c)
	}
	return nil
}

// partials encrypts a feature party's partial predictors [[u_h,i]] of the
// batch's rows (step 1).
func (p *party) partials(pk *paillier.PublicKey, batch []int, rnd io.Reader, workers int) ([]*big.Int, error) {
	vals := make([]*big.Int, len(batch))
	for k, i := range batch {
		vals[k] = signed(p.u(i), pk.N)
	}
	return encryptAll(pk, vals, rnd, workers)
}

// residuals encrypts the label party's part of the batch's residuals,
// [[u_G,i − 2y_i]] (y in ±1); with the feature parties' partial predictors
// added (addCiphertexts), they are [[4d_i]] (step 2).
func (p *party) residuals(pk *paillier.PublicKey, batch []int, rnd io.Reader, workers int) ([]*big.Int, error) {
	vals := make([]*big.Int, len(batch))
	for k, i := range batch {
		y := int64(2*p.y[i] - 1)
		vals[k] = signed(p.u(i)-2*y<<fracU, pk.N)
	}
	return encryptAll(pk, vals, rnd, workers)
}

// addCiphertexts adds each of terms into acc, element by element (they
// have acc's length).
func addCiphertexts(pk *paillier.PublicKey, acc []*big.Int, terms ...[]*big.Int) {
	for _, t := range terms {
		for k := range acc {
			pk.Add(acc[k], acc[k], t[k])
		}
	}
}

// gradient returns the party's encrypted gradient over the batch,
// Σ_i x_i·[[4d_i]] per column (and the intercept's, x = 1, at the label
// party), packed (step 3).
func (p *party) gradient(pk *paillier.PublicKey, d []*big.Int, batch []int, workers int) ([]*big.Int, error) {
	gct := make([]*big.Int, p.cols())
	err := parallelFor(len(gct), workers, func(j int) error {
		gct[j] = columnProduct(pk, d, batch, func(i int) int64 {
			if j == p.k {
				return 1 << fracX // the intercept
			}
			return p.qx[i*p.k+j]
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return packCiphertexts(pk, gct, workers), nil
}

// descend takes the gradient step of a batch of B rows, given the
// decrypted gradient (p.cols() values, scaled by 4·2^(fracU+fracX)).
func (p *party) descend(grad []int64, B int, c Config) {
	scale := 1 / (4 * float64(B) * math.Ldexp(1, fracU+fracX))
	for j := range p.k {
		p.w[j] -= c.LearningRate * (float64(grad[j])*scale + c.L2*p.w[j])
	}
	if p.label {
		p.b -= c.LearningRate * float64(grad[p.k]) * scale
	}
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

// decryptPacked decrypts count values packed in ciphertexts with a
// decryption share of each from every party, all in this process.
func decryptPacked(ps []*party, packed []*big.Int, count, workers int) ([]int64, error) {
	parts := make(map[int][]*big.Int, len(ps))
	for _, p := range ps {
		sh, err := decryptionShares(p.share, packed, workers)
		if err != nil {
			return nil, err
		}
		parts[p.share.Index] = sh
	}
	return combinePacked(ps[0].share.Key, parts, count, workers)
}

// decryptionShares returns share's decryption share of each ciphertext.
func decryptionShares(share *paillier.KeyShare, cts []*big.Int, workers int) ([]*big.Int, error) {
	out := make([]*big.Int, len(cts))
	err := parallelFor(len(cts), workers, func(o int) error {
		var err error
		out[o], err = share.Decrypt(cts[o])
		return err
	})
	return out, err
}

// combinePacked combines the decryption shares of packed ciphertexts,
// parts[index][o] the share of party index (the share's Index) for
// ciphertext o, and unpacks the count values they hold (slots per
// ciphertext). A wrong share gives a plaintext that does not unpack.
func combinePacked(tk *paillier.ThresholdKey, parts map[int][]*big.Int, count, workers int) ([]int64, error) {
	s := slots(&tk.PublicKey)
	pack := paillier.Packing{SlotBits: slotBits, Slots: s}
	bound := new(big.Int).Lsh(big.NewInt(1), slotBits-1)
	k := (count + s - 1) / s
	for i, sh := range parts {
		if len(sh) != k {
			return nil, fmt.Errorf("vertical: %d decryption shares of party %d for %d packed ciphertexts", len(sh), i, k)
		}
	}
	out := make([]int64, count)
	err := parallelFor(k, workers, func(o int) error {
		shares := make(map[int]*big.Int, len(parts))
		for i, sh := range parts {
			shares[i] = sh[o]
		}
		m, err := tk.Combine(shares)
		if err != nil {
			return err
		}
		lo, hi := o*s, min((o+1)*s, count)
		return pack.Unpack(m, tk.N, hi-lo, bound, out[lo:hi])
	})
	return out, err
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
