package paillier

import (
	"errors"
	"fmt"
	"math"
	"math/big"

	"github.com/cloisterfl/cloister/protect"
)

// ErrUnknownPreset reports a preset name that is not one of [Presets].
var ErrUnknownPreset = errors.New("paillier: unknown preset")

// ErrInsecure reports a parameter set outside the allow-list.
var ErrInsecure = errors.New("paillier: parameters outside the allow-list")

// Literal is an unchecked parameter set; [NewPreset] checks it.
type Literal struct {
	Name string
	// KeyBits is the modulus' length: n has exactly KeyBits bits.
	KeyBits int
	// SlotBits is the width of one packed value: a plaintext carries
	// Slots = ⌊(KeyBits − 1 − CheckBits)/SlotBits⌋ signed digits.
	SlotBits int
	// CheckBits is the headroom left unused above the slots: a wrong
	// decryption share gives a random plaintext, which has all of them
	// clear with probability about 2^-CheckBits, so the combiner detects it.
	CheckBits int
	// Frac is the number of fractional bits of the fixed-point encoding:
	// a value x is carried as round(x·2^Frac).
	Frac int
	// MaxAbs bounds every coordinate of a sum (and the summed weight).
	// Protect refuses a single value above MaxAbs/n, n the group's
	// members, so no sum of accepted inputs leaves it.
	MaxAbs float64
	// MaxParties bounds the group size (at most MaxShares).
	MaxParties int
	// MaxDim bounds the vector length.
	MaxDim int
	// Insecure allows a modulus below 2048 bits, for tests only; the name
	// must then start with "Insecure".
	Insecure bool
}

// Preset is a checked, immutable parameter set.
type Preset struct {
	lit   Literal
	slots int
	caps  protect.Capacity
	bound *big.Int // the largest |digit| of a valid sum
}

// NewPreset checks l: the slots must hold every sum of MaxParties inputs
// that Protect accepts, with its rounding, so that no sum overflows into
// the next slot.
func NewPreset(l Literal) (*Preset, error) {
	fail := func(format string, a ...any) (*Preset, error) {
		return nil, fmt.Errorf("paillier: preset %q: %s", l.Name, fmt.Sprintf(format, a...))
	}
	switch {
	case l.Name == "":
		return fail("no name")
	case l.Insecure && (len(l.Name) < 8 || l.Name[:8] != "Insecure"):
		return fail("an insecure preset's name must start with \"Insecure\"")
	case !l.Insecure && l.KeyBits < 2048:
		return nil, fmt.Errorf("paillier: preset %q: a %d-bit modulus: %w (at least 2048 bits)", l.Name, l.KeyBits, ErrInsecure)
	case l.KeyBits < 128 || l.KeyBits%16 != 0 || l.KeyBits > 8192:
		return fail("modulus of %d bits, want a multiple of 16 from 128 to 8192", l.KeyBits)
	case l.SlotBits < 8 || l.SlotBits > 62:
		return fail("slots of %d bits, want 8 to 62", l.SlotBits)
	case l.CheckBits < 40:
		return fail("%d check bits, want at least 40", l.CheckBits)
	case l.Frac < 1 || l.Frac >= l.SlotBits:
		return fail("%d fractional bits, want 1 to %d", l.Frac, l.SlotBits-1)
	case l.MaxParties < 1 || l.MaxParties > MaxShares:
		return fail("%d parties, want 1 to %d", l.MaxParties, MaxShares)
	case l.MaxDim < 1 || l.MaxDim > 1<<26:
		return fail("vectors of %d values, want 1 to 2^26", l.MaxDim)
	case !(l.MaxAbs > 0) || math.IsInf(l.MaxAbs, 0):
		return fail("MaxAbs %v, want a positive finite number", l.MaxAbs)
	}
	slots := (l.KeyBits - 1 - l.CheckBits) / l.SlotBits
	if slots < 1 {
		return fail("no room for a slot")
	}
	// The largest digit of a sum: MaxAbs·2^Frac plus ½ of rounding per
	// input; a balanced digit of SlotBits bits holds |x| < 2^(SlotBits−1).
	top := l.MaxAbs*math.Ldexp(1, l.Frac) + float64(l.MaxParties)/2
	if !(top < math.Ldexp(1, l.SlotBits-1)) {
		return nil, fmt.Errorf("paillier: preset %q: sums up to %g·2^%d + %d/2 do not fit a slot of %d bits: %w",
			l.Name, l.MaxAbs, l.Frac, l.MaxParties, l.SlotBits, protect.ErrRange)
	}
	bound, _ := new(big.Float).SetFloat64(math.Ceil(top)).Int(nil)
	maxErr := float64(l.MaxParties)*math.Ldexp(1, -l.Frac-1) + l.MaxAbs*math.Ldexp(1, -52)
	return &Preset{lit: l, slots: slots, bound: bound,
		caps: protect.Capacity{MaxAbs: l.MaxAbs, MaxError: maxErr, MaxParties: l.MaxParties, MaxDim: l.MaxDim}}, nil
}

func mustPreset(l Literal) *Preset {
	p, err := NewPreset(l)
	if err != nil {
		panic(err) // the presets below are checked by TestPresets
	}
	return p
}

// The named presets.
var (
	// P2048 is the production preset: a 2048-bit modulus (about 112-bit
	// security, as RSA-2048), 64 slots of 31 bits per plaintext (1,984
	// bits, leaving 63 check bits), so a 512-byte ciphertext carries 64
	// values: 8 bytes per value. Sums within ±1024 at 19 fractional bits
	// (2^29 of the 2^30 a slot holds, the rest is the rounding of up to
	// 1000 inputs); error at most 1000·2^-20 ≈ 9.5e-4.
	P2048 = mustPreset(Literal{Name: "paillier2048", KeyBits: 2048, SlotBits: 31, CheckBits: 60, Frac: 19,
		MaxAbs: 1 << 10, MaxParties: 1000, MaxDim: 1<<24 - 1})
	// InsecureTest is P2048's packing on a 512-bit modulus: 14 slots per
	// plaintext. NOT SECURE: tests under -short use it.
	InsecureTest = mustPreset(Literal{Name: "InsecureTest", KeyBits: 512, SlotBits: 31, CheckBits: 60, Frac: 19,
		MaxAbs: 1 << 10, MaxParties: 1000, MaxDim: 1<<20 - 1, Insecure: true})
)

// Presets returns the named presets, the default first.
func Presets() []*Preset { return []*Preset{P2048, InsecureTest} }

// PresetByName returns the named preset; the empty name is paillier2048.
func PresetByName(name string) (*Preset, error) {
	if name == "" {
		return P2048, nil
	}
	var names []string
	for _, p := range Presets() {
		if p.lit.Name == name {
			return p, nil
		}
		names = append(names, p.lit.Name)
	}
	return nil, fmt.Errorf("%w %q (want one of %q)", ErrUnknownPreset, name, names)
}

// Name returns the preset's name, as a manifest writes it.
func (p *Preset) Name() string { return p.lit.Name }

// Literal returns the preset's parameters.
func (p *Preset) Literal() Literal { return p.lit }

// Capacity returns what the preset carries.
func (p *Preset) Capacity() protect.Capacity { return p.caps }

// Slots is the number of values one ciphertext carries.
func (p *Preset) Slots() int { return p.slots }

// keySize is the modulus' length in bytes.
func (p *Preset) keySize() int { return p.lit.KeyBits / 8 }

// ciphertexts is the number of ciphertexts for d values plus the weight.
func (p *Preset) ciphertexts(d int) int { return (d + 1 + p.slots - 1) / p.slots }
