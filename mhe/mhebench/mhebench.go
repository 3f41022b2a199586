// Package mhebench measures the mhe aggregation mode end to end and
// against raw Lattigo primitives on the same ring, in the same run.
//
// It is the library behind `cloister bench mhe`: Run sets up a session of
// Config.Nodes members in one process, runs one round on random updates of
// Config.Params parameters clipped to L2 norm 1, and reports timings per
// million parameters, wire size and precision. Unlike package mhe, it reads
// the clock.
//
//	rep, err := mhebench.Run(mhebench.Config{Params: 1_000_000, Nodes: 10})
//	b, _ := json.Marshal(rep)
//
// Timings on a shared machine drift; compare each mhe figure with its
// baseline from the same report (the public-key upload of wire version 1,
// public_key_encrypt_s_per_million; the reveal without precomputation,
// reveal_inline_s_per_party_per_million; raw Lattigo:
// raw_lattigo_encrypt_s_per_million, raw_lattigo_reveal_s_per_million,
// raw_lattigo_add_ms_per_million), never with figures from another run.
package mhebench

import (
	crand "crypto/rand"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"
	"github.com/tuneinsight/lattigo/v6/ring"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/mhe"
	"github.com/cloisterfl/cloister/protect"
)

// Config says what to measure.
type Config struct {
	// Params is the vector length d (default 1,000,000).
	Params int
	// Nodes is the number of members n, all of whom protect an update
	// (default 10).
	Nodes int
	// Threshold is t (default n/2+1).
	Threshold int
	// Preset is the parameter set (default mhe.Agg128).
	Preset *mhe.Preset
	// Workers bounds the goroutines per call (default GOMAXPROCS).
	Workers int
	// Rand is the randomness source (default crypto/rand.Reader).
	Rand io.Reader
	// Seed seeds the test vectors.
	Seed uint64
}

// Report is what Run measures. The first seven fields are the contract of
// `cloister bench mhe --json`; the rest are extras.
type Report struct {
	Cores                         int     `json:"cores"`
	EncryptSPerMillion            float64 `json:"encrypt_s_per_million"`
	RawLattigoEncryptSPerMillion  float64 `json:"raw_lattigo_encrypt_s_per_million"`
	AggregateMsPerPartyPerMillion float64 `json:"aggregate_ms_per_party_per_million"`
	RevealSPerPartyPerMillion     float64 `json:"reveal_s_per_party_per_million"`
	BytesPerParam                 float64 `json:"bytes_per_param"`
	PrecisionBits                 float64 `json:"precision_bits"`

	Preset            string  `json:"preset"`
	Params            int     `json:"params"`
	Nodes             int     `json:"nodes"`
	Threshold         int     `json:"threshold"`
	Workers           int     `json:"workers"`
	Ciphertexts       int     `json:"ciphertexts"`
	LogQ              float64 `json:"log_q"`
	LogFloodSigma     float64 `json:"log2_flood_sigma"`
	FloodSecurityBits float64 `json:"flood_statistical_security_bits_per_coefficient"`
	MaxErrorBound     float64 `json:"max_error_bound"`
	MaxAbsError       float64 `json:"max_abs_error"`
	SetupS            float64 `json:"setup_s"`
	// EncryptSpeedup is the median over members of raw/Protect, each pair
	// timed back to back on the same vector.
	EncryptSpeedup                  float64 `json:"encrypt_speedup_vs_raw"`
	RawLattigoAddMsPerMillion       float64 `json:"raw_lattigo_add_ms_per_million"`
	RawLattigoRevealSPerMillion     float64 `json:"raw_lattigo_reveal_s_per_million"`
	OpenSPerMillion                 float64 `json:"open_s_per_million"`
	DecryptSPerMillion              float64 `json:"decrypt_s_per_million"`
	ResultBytesPerParam             float64 `json:"result_bytes_per_param"`
	SetupBytes                      int     `json:"setup_bytes"`
	PrivateDealingBytesPerRecipient int     `json:"private_dealing_bytes_per_recipient"`

	// The public-key upload of wire version 1 (Party.ProtectPublicKey),
	// timed right after Protect on the same vector: the baseline of the
	// one-polynomial upload. EncryptVsPublicKey is the median over members
	// of Protect / ProtectPublicKey.
	PublicKeyEncryptSPerMillion float64 `json:"public_key_encrypt_s_per_million"`
	PublicKeyBytesPerParam      float64 `json:"public_key_bytes_per_param"`
	EncryptVsPublicKey          float64 `json:"encrypt_vs_public_key"`
	// RevealSPerPartyPerMillion is the reveal's critical path with the
	// randomness precomputed (Party.Precompute, timed apart as
	// PrecomputeSPerPartyPerMillion); RevealInlineSPerPartyPerMillion the
	// same Reveal without it, as every reveal was before. RevealVsInline is
	// the median over revealers of the two, timed back to back.
	RevealInlineSPerPartyPerMillion float64 `json:"reveal_inline_s_per_party_per_million"`
	PrecomputeSPerPartyPerMillion   float64 `json:"precompute_s_per_party_per_million"`
	RevealVsInline                  float64 `json:"reveal_vs_inline"`
}

// Run measures one session and one round; see Report.
func Run(cfg Config) (Report, error) {
	if cfg.Params == 0 {
		cfg.Params = 1_000_000
	}
	if cfg.Nodes == 0 {
		cfg.Nodes = 10
	}
	if cfg.Threshold == 0 {
		cfg.Threshold = cfg.Nodes/2 + 1
	}
	if cfg.Preset == nil {
		cfg.Preset = mhe.Agg128
	}
	if cfg.Workers == 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.Rand == nil {
		cfg.Rand = crand.Reader
	}
	p := cfg.Preset
	d, n, t := cfg.Params, cfg.Nodes, cfg.Threshold
	if d < 1 || d > p.Capacity().MaxDim {
		return Report{}, fmt.Errorf("mhebench: %d parameters, want 1 to %d", d, p.Capacity().MaxDim)
	}
	if n < 1 || t < 1 || t > n {
		return Report{}, fmt.Errorf("mhebench: %d nodes, threshold %d", n, t)
	}
	s, err := mhe.New(p, mhe.Workers(cfg.Workers))
	if err != nil {
		return Report{}, err
	}
	rep := Report{Cores: runtime.NumCPU(), Preset: p.Name(), Params: d, Nodes: n, Threshold: t, Workers: cfg.Workers,
		Ciphertexts: (d + p.Slots()) / p.Slots(), LogQ: p.LogQ(), LogFloodSigma: math.Log2(p.FloodSigma()),
		FloodSecurityBits: p.FloodSecurity(), MaxErrorBound: p.Capacity().MaxError}
	perM := func(dt time.Duration) float64 { return dt.Seconds() / float64(d) * 1e6 }

	// Setup.
	sess := protect.Group{ID: []byte("mhebench"), Threshold: t}
	for i := range n {
		sess.Members = append(sess.Members, fl.NodeID(fmt.Sprintf("node-%03d", i)))
	}
	start := time.Now()
	parties, helper, err := setup(s, sess, cfg.Rand, &rep)
	if err != nil {
		return Report{}, err
	}
	rep.SetupS = time.Since(start).Seconds()
	target, err := s.NewTarget(cfg.Rand)
	if err != nil {
		return Report{}, err
	}

	// Protect: every member, timed one by one, each right after raw
	// Lattigo's encode + encrypt of the same vector on one thread, so that
	// both see the same load on a shared machine.
	raw, err := newRawEncrypter(p)
	if err != nil {
		return Report{}, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6d6865))
	up := make(map[fl.NodeID][]byte, n)
	want := make(fl.Vector, d)
	var wantW float64
	var encT, rawT, pkT time.Duration
	ratios := make([]float64, 0, n)
	pkRatios := make([]float64, 0, n)
	for _, m := range sess.Members {
		v := clipped(rng, d)
		w := 1.0
		want.Add(1, v)
		wantW += w
		r, err := raw.encrypt(v)
		if err != nil {
			return Report{}, err
		}
		pa, ok := parties[m].(*mhe.Party)
		if !ok {
			return Report{}, fmt.Errorf("mhebench: party of type %T", parties[m])
		}
		// Protect and the public-key upload back to back, in alternating
		// order, so that neither always runs first (warm caches, load).
		var b, pkb []byte
		var dt, pdt time.Duration
		protectNew := func() error {
			start := time.Now()
			var err error
			b, err = pa.Protect(1, v, w)
			dt = time.Since(start)
			return err
		}
		protectPK := func() error {
			start := time.Now()
			var err error
			pkb, err = pa.ProtectPublicKey(1, v, w)
			pdt = time.Since(start)
			return err
		}
		first, second := protectNew, protectPK
		if len(ratios)%2 == 1 {
			first, second = protectPK, protectNew
		}
		if err := first(); err != nil {
			return Report{}, err
		}
		if err := second(); err != nil {
			return Report{}, err
		}
		encT += dt
		rawT += r
		pkT += pdt
		ratios = append(ratios, r.Seconds()/dt.Seconds())
		pkRatios = append(pkRatios, dt.Seconds()/pdt.Seconds())
		up[m] = b
		rep.PublicKeyBytesPerParam = float64(len(pkb)) / float64(d)
	}
	rep.PublicKeyEncryptSPerMillion = perM(pkT) / float64(n)
	rep.EncryptVsPublicKey = median(pkRatios)
	rep.EncryptSPerMillion = perM(encT) / float64(n)
	rep.RawLattigoEncryptSPerMillion = perM(rawT) / float64(n)
	rep.EncryptSpeedup = median(ratios)
	rep.BytesPerParam = float64(len(up[sess.Members[0]])) / float64(d)

	// Aggregate.
	start = time.Now()
	agg, err := helper.Aggregate(1, up)
	if err != nil {
		return Report{}, err
	}
	rep.AggregateMsPerPartyPerMillion = perM(time.Since(start)) * 1e3 / float64(n)
	rep.RawLattigoAddMsPerMillion = rawAdd(p, rep.Ciphertexts, d)

	// Reveal by the first t members.
	req := protect.RevealRequest{Round: 1, Aggregate: agg, Revealers: sess.Members[:t], Target: target.Public(), Included: sess.Members}
	// Each revealer reveals twice, with a fresh ledger each time (a bench
	// only: a node's ledger refuses the second): first with nothing
	// precomputed, then after Precompute. The second share goes to Open.
	shares := make(map[fl.NodeID][]byte, t)
	var revT, inlineT, preT time.Duration
	revRatios := make([]float64, 0, t)
	for _, m := range req.Revealers {
		start := time.Now()
		if _, err = parties[m].Reveal(req, &protect.MemLedger{}); err != nil {
			return Report{}, err
		}
		it := time.Since(start)
		start = time.Now()
		if err := parties[m].(*mhe.Party).Precompute(target.Public(), d); err != nil {
			return Report{}, err
		}
		preT += time.Since(start)
		start = time.Now()
		if shares[m], err = parties[m].Reveal(req, &protect.MemLedger{}); err != nil {
			return Report{}, err
		}
		rt := time.Since(start)
		revT += rt
		inlineT += it
		revRatios = append(revRatios, rt.Seconds()/it.Seconds())
	}
	rep.RevealSPerPartyPerMillion = perM(revT) / float64(t)
	rep.RevealInlineSPerPartyPerMillion = perM(inlineT) / float64(t)
	rep.PrecomputeSPerPartyPerMillion = perM(preT) / float64(t)
	rep.RevealVsInline = median(revRatios)
	if rep.RawLattigoRevealSPerMillion, err = rawReveal(p, rep.Ciphertexts, d); err != nil {
		return Report{}, err
	}

	// Open and decrypt.
	start = time.Now()
	res, err := helper.Open(req, shares)
	if err != nil {
		return Report{}, err
	}
	rep.OpenSPerMillion = perM(time.Since(start))
	rep.ResultBytesPerParam = float64(len(res)) / float64(d)
	start = time.Now()
	sum, err := target.Decrypt(res)
	if err != nil {
		return Report{}, err
	}
	rep.DecryptSPerMillion = perM(time.Since(start))

	if len(sum.Vector) != d {
		return Report{}, fmt.Errorf("mhebench: decrypted %d values, want %d", len(sum.Vector), d)
	}
	e := math.Abs(sum.Weight - wantW)
	for i := range want {
		e = max(e, math.Abs(sum.Vector[i]-want[i]))
	}
	rep.MaxAbsError = e
	rep.PrecisionBits = -math.Log2(e)
	return rep, nil
}

func setup(s *mhe.Scheme, sess protect.Group, rand io.Reader, rep *Report) (map[fl.NodeID]protect.Party, protect.Helper, error) {
	parties := map[fl.NodeID]protect.Party{}
	anns := map[fl.NodeID][]byte{}
	for _, m := range sess.Members {
		p, err := s.NewParty(sess, m, rand)
		if err != nil {
			return nil, nil, err
		}
		parties[m] = p
		if anns[m], err = p.Announce(); err != nil {
			return nil, nil, err
		}
	}
	publics := map[fl.NodeID][]byte{}
	private := map[fl.NodeID]map[fl.NodeID][]byte{}
	for _, m := range sess.Members {
		d, err := parties[m].Deal(anns)
		if err != nil {
			return nil, nil, err
		}
		publics[m] = d.Public
		for r, b := range d.Private {
			if private[r] == nil {
				private[r] = map[fl.NodeID][]byte{}
			}
			private[r][m] = b
			rep.PrivateDealingBytesPerRecipient = len(b)
		}
	}
	h, err := s.NewHelper(sess)
	if err != nil {
		return nil, nil, err
	}
	st, err := h.Setup(anns, publics)
	if err != nil {
		return nil, nil, err
	}
	rep.SetupBytes = len(st)
	for _, m := range sess.Members {
		if err := parties[m].Accept(st, private[m]); err != nil {
			return nil, nil, err
		}
	}
	return parties, h, nil
}

// clipped returns a Gaussian vector scaled to L2 norm 1.
func clipped(rng *rand.Rand, d int) fl.Vector {
	v := make(fl.Vector, d)
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	v.Scale(1 / v.Norm())
	return v
}

// rawKeys returns a secret and public key of the preset's ring.
func rawKeys(p *mhe.Preset) (*rlwe.SecretKey, *rlwe.PublicKey) {
	kg := rlwe.NewKeyGenerator(p.Parameters())
	sk := kg.GenSecretKeyNew()
	return sk, kg.GenPublicKeyNew(sk)
}

// rawEncrypter is the baseline of Protect: Lattigo's encode and public-key
// encrypt, with the preset's encoding, on one thread, no packing.
type rawEncrypter struct {
	p    *mhe.Preset
	ecd  *ckks.Encoder
	enc  *rlwe.Encryptor
	pt   *rlwe.Plaintext
	ct   *rlwe.Ciphertext
	vals []float64
	cplx []complex128
}

func newRawEncrypter(p *mhe.Preset) (*rawEncrypter, error) {
	params := p.Parameters()
	_, pk := rawKeys(p)
	r := &rawEncrypter{p: p, ecd: ckks.NewEncoder(params, 53), enc: rlwe.NewEncryptor(params, pk),
		pt: ckks.NewPlaintext(params, params.MaxLevel()), ct: ckks.NewCiphertext(params, 1, params.MaxLevel()),
		vals: make([]float64, p.Slots())}
	r.pt.IsBatched = p.Literal().Encoding == mhe.Slots
	r.pt.Scale = rlwe.NewScale(math.Exp2(float64(p.EncodeLogScale())))
	if r.pt.IsBatched && p.Literal().Ring == ring.Standard {
		r.cplx = make([]complex128, p.Slots()/2)
	}
	return r, nil
}

// encrypt encodes and encrypts v ‖ 1 and returns the time it took.
func (r *rawEncrypter) encrypt(v fl.Vector) (time.Duration, error) {
	S := r.p.Slots()
	k := (len(v) + S) / S
	start := time.Now()
	for i := range k {
		clear(r.vals)
		copy(r.vals, v[min(i*S, len(v)):min((i+1)*S, len(v))])
		if d := len(v); d >= i*S && d < (i+1)*S {
			r.vals[d-i*S] = 1
		}
		var err error
		if r.cplx != nil {
			for j := range r.cplx {
				r.cplx[j] = complex(r.vals[2*j], r.vals[2*j+1])
			}
			err = r.ecd.Encode(r.cplx, r.pt)
		} else {
			err = r.ecd.Encode(r.vals, r.pt)
		}
		if err != nil {
			return 0, err
		}
		if err := r.enc.Encrypt(r.pt, r.ct); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// median returns the median of xs (xs is reordered).
func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// rawAdd times k ciphertext additions (one party's contribution) on one
// thread, in ms per million values.
func rawAdd(p *mhe.Preset, k, d int) float64 {
	params := p.Parameters()
	eval := ckks.NewEvaluator(params, nil)
	acc := ckks.NewCiphertext(params, 1, params.MaxLevel())
	x := ckks.NewCiphertext(params, 1, params.MaxLevel())
	start := time.Now()
	for range k {
		if err := eval.Add(acc, x, acc); err != nil {
			return math.NaN()
		}
	}
	return time.Since(start).Seconds() / float64(d) * 1e9
}

// rawReveal times k flooded public-key-switch shares on one thread, in s
// per million values.
func rawReveal(p *mhe.Preset, k, d int) (float64, error) {
	params := p.Parameters()
	sk, _ := rawKeys(p)
	_, tpk := rawKeys(p)
	sigma := p.FloodSigma()
	pcks, err := multiparty.NewPublicKeySwitchProtocol(params, ring.DiscreteGaussian{Sigma: sigma, Bound: 16 * sigma})
	if err != nil {
		return 0, err
	}
	ct := ckks.NewCiphertext(params, 1, params.MaxLevel())
	sh := pcks.AllocateShare(params.MaxLevel())
	start := time.Now()
	for range k {
		pcks.GenShare(sk, tpk, ct, &sh)
	}
	return time.Since(start).Seconds() / float64(d) * 1e6, nil
}
