package mhe

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"
	"github.com/tuneinsight/lattigo/v6/ring"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"
	"github.com/tuneinsight/lattigo/v6/utils/sampling"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// Scheme is the mhe aggregation mode: it implements protect.Scheme.
type Scheme struct {
	p          *Preset
	workers    int
	precompute int // bytes Party.Precompute may keep
}

// Option configures a Scheme.
type Option func(*Scheme)

// Workers sets the number of goroutines a method may use (at least 1). The
// default is runtime.GOMAXPROCS(0). The goroutines are joined before every
// method returns.
func Workers(n int) Option {
	return func(s *Scheme) {
		if n >= 1 {
			s.workers = n
		}
	}
}

// PrecomputeLimit bounds the memory Party.Precompute keeps, in bytes (the
// default is DefaultPrecomputeLimit). The ciphertexts beyond it are
// computed in Reveal.
func PrecomputeLimit(bytes int) Option {
	return func(s *Scheme) {
		if bytes > 0 {
			s.precompute = bytes
		}
	}
}

// New returns the scheme for preset p (Agg128 in production).
func New(p *Preset, opts ...Option) (*Scheme, error) {
	if p == nil || p.hash == [16]byte{} {
		return nil, errors.New("mhe: no preset")
	}
	s := &Scheme{p: p, workers: runtime.GOMAXPROCS(0), precompute: DefaultPrecomputeLimit}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

var _ protect.Scheme = (*Scheme)(nil)

// Name returns "mhe".
func (s *Scheme) Name() string { return "mhe" }

// Capacity returns the preset's range and precision contract.
func (s *Scheme) Capacity() protect.Capacity { return s.p.limits }

// Preset returns the scheme's preset.
func (s *Scheme) Preset() *Preset { return s.p }

// NewParty returns member self's party for session sess. It samples the
// party's secret key share and its announcement nonce from rand.
func (s *Scheme) NewParty(sess protect.Group, self fl.NodeID, rand io.Reader) (protect.Party, error) {
	ss, err := newSession(s.p, sess)
	if err != nil {
		return nil, err
	}
	idx, ok := ss.index[self]
	if !ok {
		return nil, fmt.Errorf("mhe: party %q: %w", self, protect.ErrNotMember)
	}
	if rand == nil {
		return nil, errors.New("mhe: no randomness source")
	}
	pa := &Party{sch: s, p: s.p, sess: ss, self: idx, rand: rand}
	if _, err := io.ReadFull(rand, pa.nonce[:]); err != nil {
		return nil, fmt.Errorf("mhe: reading the nonce: %w", err)
	}
	prng, err := keyedPRNG(rand)
	if err != nil {
		return nil, err
	}
	pa.sk, err = sampleSecretKey(s.p.params.Parameters, prng)
	if err != nil {
		return nil, err
	}
	return pa, nil
}

// NewHelper returns the coordinator side for session sess.
func (s *Scheme) NewHelper(sess protect.Group) (protect.Helper, error) {
	ss, err := newSession(s.p, sess)
	if err != nil {
		return nil, err
	}
	return &Helper{sch: s, p: s.p, sess: ss}, nil
}

// session is a validated protect.Group with its derived values.
type session struct {
	id     []byte
	sorted []fl.NodeID
	index  map[fl.NodeID]int
	t, n   int
	hash   [16]byte
}

func newSession(p *Preset, s protect.Group) (*session, error) {
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("mhe: %w", err)
	}
	if len(s.Members) > p.lit.MaxParties {
		return nil, fmt.Errorf("mhe: session of %d members, preset %s allows %d: %w", len(s.Members), p.lit.Name, p.lit.MaxParties, protect.ErrRange)
	}
	for _, m := range s.Members {
		if len(m) > 1<<16 {
			return nil, fmt.Errorf("mhe: member name of %d bytes: %w", len(m), protect.ErrRange)
		}
	}
	ss := &session{id: append([]byte(nil), s.ID...), sorted: s.Sorted(), t: s.Threshold, n: len(s.Members)}
	ss.index = make(map[fl.NodeID]int, ss.n)
	h := sha256.New()
	h.Write([]byte("cloister/mhe session v1\x00"))
	h.Write(p.hash[:])
	writeBytes(h, s.ID)
	h.Write(binary.LittleEndian.AppendUint32(nil, uint32(ss.t)))
	h.Write(binary.LittleEndian.AppendUint32(nil, uint32(ss.n)))
	for i, m := range ss.sorted {
		ss.index[m] = i
		writeBytes(h, []byte(m))
	}
	copy(ss.hash[:], h.Sum(nil))
	return ss, nil
}

func writeBytes(h io.Writer, b []byte) {
	h.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(b))))
	h.Write(b)
}

// point is the Shamir public point of member i (its 1-based sorted index).
func point(i int) multiparty.ShamirPublicPoint { return multiparty.ShamirPublicPoint(i + 1) }

// member returns the index of id, or an error wrapping ErrNotMember.
func (ss *session) member(what string, id fl.NodeID) (int, error) {
	i, ok := ss.index[id]
	if !ok {
		return 0, fmt.Errorf("mhe: %s from %q: %w", what, id, protect.ErrNotMember)
	}
	return i, nil
}

// revealers checks that rs are exactly t distinct members and returns their
// indices in the order given.
func (ss *session) revealers(rs []fl.NodeID) ([]int, error) {
	if len(rs) != ss.t {
		return nil, fmt.Errorf("mhe: %d revealers, the threshold is %d: %w", len(rs), ss.t, protect.ErrForeign)
	}
	idx := make([]int, len(rs))
	seen := make(map[int]bool, len(rs))
	for i, r := range rs {
		j, err := ss.member("reveal request naming a revealer", r)
		if err != nil {
			return nil, err
		}
		if seen[j] {
			return nil, fmt.Errorf("mhe: revealer %q listed twice: %w", r, protect.ErrMalformed)
		}
		seen[j] = true
		idx[i] = j
	}
	return idx, nil
}

// crsSeed is H(preset ‖ session ‖ every member's nonce in sorted member
// order ‖ session ID): no single member chooses the common reference string.
func crsSeed(p *Preset, ss *session, nonces [][32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("cloister/mhe crs v1\x00"))
	h.Write(p.hash[:])
	h.Write(ss.hash[:])
	for i, m := range ss.sorted {
		writeBytes(h, []byte(m))
		h.Write(nonces[i][:])
	}
	writeBytes(h, ss.id)
	return [32]byte(h.Sum(nil))
}

// crsBinding binds the dealings and the setup to one setup run.
func crsBinding(seed [32]byte) [16]byte {
	h := sha256.Sum256(append([]byte("cloister/mhe setup run v1\x00"), seed[:]...))
	return [16]byte(h[:16])
}

// crp derives the collective public key's common random polynomial.
func crp(p *Preset, seed [32]byte) (multiparty.PublicKeyGenCRP, error) {
	crs, err := sampling.NewKeyedPRNG(seed[:])
	if err != nil {
		return multiparty.PublicKeyGenCRP{}, fmt.Errorf("mhe: CRS: %w", err)
	}
	return multiparty.NewPublicKeyGenProtocol(p.params).SampleCRP(crs), nil
}

// keyedPRNG reads a 32-byte key from rand and returns Lattigo's keyed PRNG
// (BLAKE2b XOF) on it.
func keyedPRNG(rand io.Reader) (*sampling.KeyedPRNG, error) {
	var key [32]byte
	if _, err := io.ReadFull(rand, key[:]); err != nil {
		return nil, fmt.Errorf("mhe: reading randomness: %w", err)
	}
	prng, err := sampling.NewKeyedPRNG(key[:])
	if err != nil {
		return nil, fmt.Errorf("mhe: PRNG: %w", err)
	}
	return prng, nil
}

// ctrPRNG is AES-256-CTR's keystream as a PRNG (a CTR_DRBG without
// reseeding, NIST SP 800-90A): for the samplers on Protect's path, where
// Lattigo's BLAKE2b XOF took over half the time of an upload. One key
// drives one stream; the counter starts at zero.
type ctrPRNG struct{ s cipher.Stream }

func newCTRPRNG(key [32]byte) (*ctrPRNG, error) {
	b, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("mhe: PRNG: %w", err)
	}
	return &ctrPRNG{s: cipher.NewCTR(b, make([]byte, aes.BlockSize))}, nil
}

// Read fills p with the next len(p) bytes of the keystream.
func (c *ctrPRNG) Read(p []byte) (int, error) {
	clear(p)
	c.s.XORKeyStream(p, p)
	return len(p), nil
}

// sampleSecretKey samples a secret key from the parameters' secret
// distribution with Lattigo's sampler driven by prng, in the form
// rlwe.KeyGenerator.GenSecretKey produces (NTT, Montgomery). The key
// generator itself cannot take an injected PRNG.
func sampleSecretKey(params rlwe.Parameters, prng sampling.PRNG) (*rlwe.SecretKey, error) {
	sampler, err := ring.NewSampler(prng, params.RingQ(), params.Xs(), false)
	if err != nil {
		return nil, fmt.Errorf("mhe: secret sampler: %w", err)
	}
	sk := rlwe.NewSecretKey(params)
	sampler.Read(sk.Value.Q)
	params.RingQ().NTT(sk.Value.Q, sk.Value.Q)
	params.RingQ().MForm(sk.Value.Q, sk.Value.Q)
	return sk, nil
}

// parallel runs f(w, i) for every i in [0, n) on min(workers, n) goroutines;
// w is the worker's index, so that each worker can use its own Lattigo
// objects (they are not safe for concurrent use). It returns the first error
// once all goroutines have finished; a panic in f becomes an error.
func parallel(workers, n int, f func(w, i int) error) error {
	if workers > n {
		workers = n
	}
	if workers < 1 {
		workers = 1
	}
	var next atomic.Int64
	var failed atomic.Bool
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					errs[w] = fmt.Errorf("mhe: internal error: %v", r)
					failed.Store(true)
				}
			}()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(w, i); err != nil {
					errs[w] = err
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// workersFor returns the number of workers for n items.
func (s *Scheme) workersFor(n int) int {
	return max(1, min(s.workers, n))
}

// newCiphertext allocates a ciphertext with the metadata of the preset's
// fresh updates (level ≥ 1) or results (level 0, after the rescale).
func (p *Preset) newCiphertext(level int) *rlwe.Ciphertext {
	ct := ckks.NewCiphertext(p.params, 1, level)
	p.setMeta(ct.MetaData, level)
	return ct
}

// newUpdateCiphertext allocates a ciphertext with the metadata of a fresh
// update: as newCiphertext, but in the coefficient domain.
func (p *Preset) newUpdateCiphertext(level int) *rlwe.Ciphertext {
	ct := p.newCiphertext(level)
	ct.IsNTT = false
	return ct
}

func (p *Preset) setMeta(m *rlwe.MetaData, level int) {
	m.IsNTT = true
	m.IsBatched = p.lit.Encoding == Slots
	m.LogDimensions = p.params.LogMaxDimensions()
	if level == p.params.MaxLevel() {
		m.Scale = rlwe.NewScale(math.Exp2(float64(p.lit.LogScale)))
	} else {
		m.Scale = p.resultScale()
	}
}

// resultScale is Δ divided by the primes the rescale in Open drops (as
// ckks.Evaluator.Rescale computes it).
func (p *Preset) resultScale() rlwe.Scale {
	s := rlwe.NewScale(math.Exp2(float64(p.lit.LogScale)))
	for l := p.params.MaxLevel(); l > 0; l-- {
		s = s.Div(rlwe.NewScale(p.lit.Q[l]))
	}
	return s
}

// ctSize is the packed size of one ciphertext (two polynomials) at level.
func (p *Preset) ctSize(level int) int { return 2 * p.polySize(level) }

func (p *Preset) packCiphertext(b []byte, ct *rlwe.Ciphertext) []byte {
	b = p.packPoly(b, ct.Value[0], ct.Level())
	return p.packPoly(b, ct.Value[1], ct.Level())
}

func (p *Preset) unpackCiphertext(what string, b []byte, ct *rlwe.Ciphertext) error {
	half := p.polySize(ct.Level())
	if len(b) != 2*half {
		return malformed(what, "ciphertext of %d bytes, want %d", len(b), 2*half)
	}
	if err := p.unpackPoly(what, b[:half], ct.Value[0], ct.Level()); err != nil {
		return err
	}
	return p.unpackPoly(what, b[half:], ct.Value[1], ct.Level())
}

// checkLengths checks that every element has exactly size bytes.
func checkLengths(what string, elems [][]byte, size int) error {
	for i, e := range elems {
		if len(e) != size {
			return malformed(what, "element %d has %d bytes, want %d", i, len(e), size)
		}
	}
	return nil
}

// Sizes returns the exact payload sizes for vectors of d values in a
// session of n members: with k = ⌈(d+1)/slots⌉ ciphertexts (the weight
// takes one more slot) and P the packed size of one polynomial at the top
// level, an update and an aggregate are k polynomials of P bytes (the c0 of
// each ciphertext; a is derived from the round), a reveal share and a
// result k pairs of polynomials at level 0, a setup n polynomials;
// each payload adds the 76-byte header and 4 bytes per element.
func (s *Scheme) Sizes(d, n int) (protect.Sizes, error) {
	p := s.p
	if d < 1 || d > p.limits.MaxDim {
		return protect.Sizes{}, fmt.Errorf("mhe: sizes for %d values, preset %s allows 1..%d: %w", d, p.lit.Name, p.limits.MaxDim, protect.ErrRange)
	}
	if n < 1 || n > p.lit.MaxParties {
		return protect.Sizes{}, fmt.Errorf("mhe: sizes for %d members, preset %s allows 1..%d: %w", n, p.lit.Name, p.lit.MaxParties, protect.ErrRange)
	}
	level := p.params.MaxLevel()
	poly := p.polySize(level)
	k := p.ciphertexts(d)
	elems := func(count, size int) int { return headerSize + count*(4+size) }
	return protect.Sizes{
		Announcement:   elems(1, 32),
		PublicDealing:  elems(1, poly),
		PrivateDealing: elems(1, poly),
		Setup:          elems(n, poly),
		Update:         elems(k, poly),
		Aggregate:      elems(k, poly) + 4 + (n+7)/8,
		Share:          elems(k, p.ctSize(0)),
		Result:         elems(k, p.ctSize(0)),
		TargetPublic:   elems(2, poly),
		TargetSecret:   elems(3, poly),
	}, nil
}
