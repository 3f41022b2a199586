package mhe

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"

	"github.com/cloisterfl/cloister/protect"
)

// Encoding says where Protect puts the values of a vector.
type Encoding uint8

const (
	// Coefficients puts value i, as a fixed-point number, in coefficient i of
	// the plaintext polynomial (Lattigo's IsBatched=false CKKS encoding). An
	// aggregate only adds, and addition is coefficient-wise, so no FFT is
	// needed; the flooding noise lands on each value once instead of being
	// spread over all slots by the FFT (see README: this is worth about
	// log2(sqrt N) bits of precision).
	Coefficients Encoding = iota + 1
	// Slots uses the CKKS canonical embedding (Lattigo's batched encoding).
	// On the standard ring two reals share one complex slot, so both rings
	// carry N reals per ciphertext. Kept for the measurements in README.md.
	Slots
)

func (e Encoding) String() string {
	switch e {
	case Coefficients:
		return "coefficients"
	case Slots:
		return "slots"
	}
	return fmt.Sprintf("Encoding(%d)", uint8(e))
}

// PresetLiteral is an unchecked parameter set. NewPresetFromLiteral checks
// it and returns an immutable Preset. Users pick a named preset (Agg128);
// literals exist for measurements and tests.
type PresetLiteral struct {
	// Name identifies the preset in errors and reports.
	Name string
	// LogN is log2 of the ring degree N.
	LogN int
	// Ring is ring.Standard or ring.ConjugateInvariant.
	Ring ring.Type
	// Q lists the ciphertext primes, NTT-friendly for the ring, each below
	// 2^60. There is no special modulus P: aggregation needs no key switching
	// keys (no relinearization, no rotations).
	Q []uint64
	// Encoding is where values go in the plaintext.
	Encoding Encoding
	// LogScale is log2 of the fixed-point scale Δ at which fresh updates are
	// encrypted.
	LogScale int
	// LogFlood is log2 of σ, the standard deviation of the discrete Gaussian
	// flooding (smudging) noise each revealer adds to its key-switch share.
	LogFlood float64
	// DecodePrec is the number of fractional bits DecodePublic keeps.
	DecodePrec int
	// MaxAbs bounds every coordinate of a sum (and the summed weight).
	MaxAbs float64
	// MaxParties bounds the session size, hence the number of summed inputs
	// and the number of revealers.
	MaxParties int
	// MaxDim bounds the vector length.
	MaxDim int
	// Insecure marks a preset for fast tests only. Only such a preset may
	// leave the allow-list (LogN < 13). Its name must start with "Insecure".
	Insecure bool
}

// Preset is a checked, immutable parameter set. The zero value is not
// usable; get one from a named preset or NewPresetFromLiteral.
type Preset struct {
	lit    PresetLiteral
	params ckks.Parameters
	hash   [16]byte
	limits protect.Capacity
	flood  ring.DiscreteGaussian
	// Encoding is done at scale 2^encodeLogScale (so that value·scale fits a
	// uint64 and Lattigo takes its fast path) and the plaintext is then
	// multiplied by the integer 2^(LogScale−encodeLogScale).
	encodeLogScale int
	// floodBits is −log2 of the statistical distance, per revealed
	// coefficient, between a flooded and an ideal result (see README).
	floodBits float64
	slots     int
}

// Constants of the analysis (see README.md, "Noise flooding").
const (
	// tailSigmas bounds a Gaussian coordinate: P(|x| > 8σ) < 2^-49.
	tailSigmas = 8.0
	// tailSigmasKey bounds the key-dependent noise for the flooding
	// argument: P(|x| > 10.5σ) < 2^-80.
	tailSigmasKey = 10.5
)

var (
	// Agg128 is the production preset: 128-bit secure (HE standard,
	// logQ = 120 ≤ 218 for N = 2^13), aggregation only.
	//
	//   - N = 2^13 on the standard ring, values in coefficients: 8192 values
	//     per ciphertext, no FFT.
	//   - Q = q0·q1, two 60-bit primes, the shallowest chain that holds a sum
	//     of 1000 updates under 2^79 flooding at 20 bits of precision (one
	//     prime cannot: see README). No P.
	//   - Δ = 2^107: |sum| ≤ 2048 uses 2^118 < Q/2 ≈ 2^119.
	//   - Flooding σ = 2^79 per revealer: the statistical distance per revealed
	//     coefficient is below 2^-58 for 1000 parties (2^-61 for 100).
	//   - After Open rescales by q1, Δ' = 2^107/q1 ≈ 2^47 and the result lives
	//     mod q0.
	Agg128 = mustPreset(PresetLiteral{
		Name: "Agg128",
		LogN: 13,
		Ring: ring.Standard,
		Q: []uint64{
			1152921504606830593, // q0 = 2^60 − 2^14 + 1, ≡ 1 mod 2N; holds the result after Open
			1152921504606748673, // q1 = 2^60 − 3·2^15 + 1, ≡ 1 mod 2N; dropped by the rescale in Open
		},
		Encoding:   Coefficients,
		LogScale:   107,
		LogFlood:   79,
		DecodePrec: 26,
		MaxAbs:     2048,
		MaxParties: 1000,
		MaxDim:     1<<24 - 1,
	})

	// InsecureTest is Agg128 on a ring of degree 2^10: the same moduli, scale
	// and flooding, so the same code paths and precision, but NOT SECURE
	// (N = 2^10 supports logQ ≤ 27 at 128 bits). Tests under -short use it.
	InsecureTest = mustPreset(PresetLiteral{
		Name: "InsecureTest",
		LogN: 10,
		Ring: ring.Standard,
		Q: []uint64{
			1152921504606830593, // q0 = 2^60 − 2^14 + 1, ≡ 1 mod 2N
			1152921504606791681, // q1 = 2^60 − 27·2^11 + 1, ≡ 1 mod 2N
		},
		Encoding:   Coefficients,
		LogScale:   107,
		LogFlood:   79,
		DecodePrec: 26,
		MaxAbs:     2048,
		MaxParties: 1000,
		MaxDim:     1<<20 - 1,
		Insecure:   true,
	})
)

func mustPreset(lit PresetLiteral) *Preset {
	p, err := NewPresetFromLiteral(lit)
	if err != nil {
		panic(err) // package initialization of a literal defined above
	}
	return p
}

// heStandardMaxLogQP is the 128-bit bound on log2(QP) of the Homomorphic
// Encryption Standard (ternary secrets, σ = 3.2), by log2 N.
var heStandardMaxLogQP = map[int]float64{13: 218, 14: 438, 15: 881}

// ErrInsecure is returned for a parameter set outside the allow-list.
var ErrInsecure = errors.New("mhe: parameters outside the 128-bit allow-list")

// NewPresetFromLiteral checks lit and returns the immutable preset.
//
// The allow-list: unless lit.Insecure, LogN is 13, 14 or 15 and
// log2(Q) ≤ 218, 438, 881 respectively; the secret is uniform ternary and the
// error a discrete Gaussian with σ = 3.2 (Lattigo's defaults, the HE
// standard's assumptions). The moduli must leave room for MaxAbs at scale Δ
// plus the flooding of MaxParties revealers.
func NewPresetFromLiteral(lit PresetLiteral) (*Preset, error) {
	fail := func(format string, a ...any) (*Preset, error) {
		return nil, fmt.Errorf("mhe: preset %q: %s", lit.Name, fmt.Sprintf(format, a...))
	}
	if lit.Name == "" {
		return fail("no name")
	}
	if lit.Insecure && len(lit.Name) < 8 || lit.Insecure && lit.Name[:8] != "Insecure" {
		return fail("an insecure preset's name must start with \"Insecure\"")
	}
	if lit.Ring != ring.Standard && lit.Ring != ring.ConjugateInvariant {
		return fail("unknown ring type %v", lit.Ring)
	}
	if lit.Encoding != Coefficients && lit.Encoding != Slots {
		return fail("unknown encoding %v", lit.Encoding)
	}
	if len(lit.Q) < 2 || len(lit.Q) > 4 {
		return fail("need 2 to 4 primes, have %d", len(lit.Q))
	}
	if lit.LogN < 10 || lit.LogN > 15 {
		return fail("LogN %d outside 10..15", lit.LogN)
	}
	params, err := ckks.NewParametersFromLiteral(ckks.ParametersLiteral{
		LogN:            lit.LogN,
		Q:               lit.Q,
		RingType:        lit.Ring,
		Xs:              rlwe.DefaultXs,
		Xe:              rlwe.DefaultXe,
		LogDefaultScale: 52,
	})
	if err != nil {
		return fail("%v", err)
	}
	if params.PCount() != 0 {
		return fail("has a special modulus P")
	}
	if !lit.Insecure {
		bound, ok := heStandardMaxLogQP[lit.LogN]
		if !ok {
			return nil, fmt.Errorf("%w: preset %q has LogN %d, want 13, 14 or 15", ErrInsecure, lit.Name, lit.LogN)
		}
		if logQP := params.LogQP(); logQP > bound {
			return nil, fmt.Errorf("%w: preset %q has log2(QP) = %.1f > %.0f for N = 2^%d", ErrInsecure, lit.Name, logQP, bound, lit.LogN)
		}
	}
	if lit.LogScale < 53 || lit.LogScale > 119 {
		return fail("LogScale %d outside 53..119", lit.LogScale)
	}
	if !(lit.LogFlood >= 10 && lit.LogFlood <= 100) {
		return fail("LogFlood %v outside 10..100", lit.LogFlood)
	}
	if lit.DecodePrec < 8 || lit.DecodePrec > 50 {
		return fail("DecodePrec %d outside 8..50", lit.DecodePrec)
	}
	if !(lit.MaxAbs >= 1 && lit.MaxAbs <= 1<<20) {
		return fail("MaxAbs %v outside 1..2^20", lit.MaxAbs)
	}
	if lit.MaxParties < 1 || lit.MaxParties > 1<<14 {
		return fail("MaxParties %d outside 1..2^14", lit.MaxParties)
	}
	p := &Preset{lit: lit, params: params}
	p.slots = params.N()
	if lit.MaxDim < 1 || (lit.MaxDim+1+p.slots-1)/p.slots > maxCiphertexts {
		return fail("MaxDim %d needs more than %d ciphertexts", lit.MaxDim, maxCiphertexts)
	}
	p.lit.Q = append([]uint64(nil), lit.Q...)

	// Encode at scale 2^encodeLogScale with MaxAbs·scale < 2^63.
	p.encodeLogScale = 62 - int(math.Ceil(math.Log2(lit.MaxAbs)))
	if p.encodeLogScale > lit.LogScale {
		p.encodeLogScale = lit.LogScale
	}
	if p.encodeLogScale < 40 {
		return fail("MaxAbs too large for the fixed-point encoder")
	}
	for _, q := range lit.Q {
		if lit.LogScale-p.encodeLogScale >= bits.Len64(q)-1 {
			return fail("scale step 2^%d is not below prime %d", lit.LogScale-p.encodeLogScale, q)
		}
	}

	// Flooding distribution: σ, bounded at 16σ. floodSampler draws it (a
	// Gaussian of σ/2^k times 2^k plus uniform low bits: see flood.go), not
	// Lattigo's sampler, whose samples at such σ lie on a coarse lattice.
	sigma := math.Exp2(lit.LogFlood)
	p.flood = ring.DiscreteGaussian{Sigma: sigma, Bound: 16 * sigma}

	// Room: MaxAbs·Δ plus the flooding of MaxParties revealers below Q/2,
	// and MaxAbs·Δ' below q0/2 after the rescale in Open.
	logQ := params.LogQ()
	n := float64(lit.MaxParties)
	logNoise := lit.LogFlood + math.Log2(tailSigmas*math.Sqrt(n))
	logMsg := float64(lit.LogScale) + math.Log2(lit.MaxAbs)
	if math.Log2(math.Exp2(logMsg-logQ)+math.Exp2(logNoise-logQ)) > -1.5 {
		return fail("MaxAbs·Δ + flooding = 2^%.1f does not fit below Q/2 = 2^%.1f", logMsg, logQ-1)
	}
	qLast := float64(lit.Q[len(lit.Q)-1])
	logScaleOut := float64(lit.LogScale) - math.Log2(qLast)
	logQOut := logQ - math.Log2(qLast)
	if logScaleOut+math.Log2(lit.MaxAbs) > logQOut-1.5 {
		return fail("after the rescale MaxAbs·Δ' = 2^%.1f does not fit below 2^%.1f", logScaleOut+math.Log2(lit.MaxAbs), logQOut-1)
	}

	// MaxError: flooding of MaxParties revealers, amplified by the FFT for
	// slot encoding; the rescale's rounding (‖s_target‖ small); the fixed
	// point encodings of MaxParties inputs; the rounding of DecodePublic.
	N := float64(params.N())
	amp := 1.0
	if lit.Encoding == Slots {
		amp = math.Sqrt(N)
	}
	flood := tailSigmas * math.Sqrt(n) * sigma * amp / math.Exp2(float64(lit.LogScale))
	rescale := tailSigmas * math.Sqrt(1+N*2/3.0) / 2 * amp / math.Exp2(logScaleOut)
	encoding := n * math.Exp2(-float64(p.encodeLogScale)-1) * amp
	maxErr := flood + rescale + encoding + math.Exp2(-float64(lit.DecodePrec)-1)
	p.limits = protect.Capacity{
		MaxAbs:     lit.MaxAbs,
		MaxError:   maxErr,
		MaxParties: lit.MaxParties,
		MaxDim:     lit.MaxDim,
		SetBound:   true,
	}

	// Key-dependent noise of an aggregate of MaxParties fresh uploads, per
	// coefficient: each is a secret-key encryption c0 = −a·s_i + e_i + m_i
	// (wire version 2), so the sum carries Σe_i: Var = n·σe². (Public-key
	// uploads carried u·e_pk + e0 + e1·s, Var ≈ σe²(1 + 4/3·N·n) per input:
	// about 12 bits more for n = 1000, N = 2^13.)
	se := rlwe.DefaultNoise
	sdCt := math.Sqrt(n) * se
	// Statistical distance of N(0,σ²) and N(B,σ²) is ≤ B/(σ·sqrt(2π)).
	p.floodBits = -math.Log2(tailSigmasKey * sdCt / (sigma * math.Sqrt(2*math.Pi)))

	h := sha256.New()
	h.Write([]byte("cloister/mhe preset v1\x00"))
	h.Write([]byte(lit.Name))
	h.Write([]byte{0, byte(lit.LogN), byte(lit.Ring), byte(lit.Encoding), byte(len(lit.Q))})
	for _, q := range lit.Q {
		h.Write(binary.LittleEndian.AppendUint64(nil, q))
	}
	for _, v := range []uint64{uint64(lit.LogScale), math.Float64bits(lit.LogFlood), uint64(lit.DecodePrec),
		math.Float64bits(lit.MaxAbs), uint64(lit.MaxParties), uint64(lit.MaxDim), b2u(lit.Insecure)} {
		h.Write(binary.LittleEndian.AppendUint64(nil, v))
	}
	copy(p.hash[:], h.Sum(nil))
	return p, nil
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// Name returns the preset's name.
func (p *Preset) Name() string { return p.lit.Name }

// Literal returns a copy of the literal the preset was built from.
func (p *Preset) Literal() PresetLiteral {
	l := p.lit
	l.Q = append([]uint64(nil), p.lit.Q...)
	return l
}

// Parameters returns the Lattigo parameters, for baselines and tools that
// measure raw Lattigo primitives on the same ring.
func (p *Preset) Parameters() ckks.Parameters { return p.params }

// EncodeLogScale returns log2 of the scale at which Protect encodes values
// before it multiplies the plaintext up to Δ = 2^LogScale by an integer.
func (p *Preset) EncodeLogScale() int { return p.encodeLogScale }

// Capacity returns the range and precision contract of the preset.
func (p *Preset) Capacity() protect.Capacity { return p.limits }

// Slots returns the number of values one ciphertext carries.
func (p *Preset) Slots() int { return p.slots }

// LogQ returns log2 of the ciphertext modulus (there is no P, so it is also
// log2(QP)).
func (p *Preset) LogQ() float64 { return p.params.LogQ() }

// FloodSigma returns σ of the flooding noise each revealer adds.
func (p *Preset) FloodSigma() float64 { return p.flood.Sigma }

// FloodSecurity returns s such that the flooded result of an aggregate of
// MaxParties inputs is within statistical distance 2^-s, per revealed
// coefficient, of one that depends on the secret key only through the sum
// (see README.md). A reveal of d values discloses ⌈(d+1)/Slots⌉·N
// coefficients; the distance adds up over them.
func (p *Preset) FloodSecurity() float64 { return p.floodBits }

// Insecure reports whether the preset is for tests only.
func (p *Preset) Insecure() bool { return p.lit.Insecure }

// ciphertexts returns the number of ciphertexts a vector of length d uses.
func (p *Preset) ciphertexts(d int) int { return (d + 1 + p.slots - 1) / p.slots }

// String describes the preset.
func (p *Preset) String() string {
	return fmt.Sprintf("%s (N=2^%d %s ring, %s, logQ=%.1f, Δ=2^%d, σ_flood=2^%v)",
		p.lit.Name, p.lit.LogN, ringName(p.lit.Ring), p.lit.Encoding, p.params.LogQ(), p.lit.LogScale, p.lit.LogFlood)
}

func ringName(t ring.Type) string {
	if t == ring.ConjugateInvariant {
		return "conjugate-invariant"
	}
	return "standard"
}
