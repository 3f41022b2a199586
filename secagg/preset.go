package secagg

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/cloisterfl/cloister/protect"
)

// ErrUnknownPreset reports a preset name that is not one of [Presets].
var ErrUnknownPreset = errors.New("secagg: unknown preset")

// Literal is an unchecked parameter set; [NewPreset] checks it.
type Literal struct {
	Name string
	// Bits is the modulus' width: values are summed modulo 2^Bits and
	// packed at Bits/8 bytes each. 32 or 64.
	Bits int
	// Frac is the number of fractional bits of the fixed-point encoding:
	// a value x is carried as round(x·2^Frac).
	Frac int
	// MaxAbs bounds every coordinate of a sum (and the summed weight).
	// Protect refuses any single value above MaxAbs/n, n the group's
	// members, so no sum of accepted inputs can exceed it.
	MaxAbs float64
	// MaxParties bounds the group size.
	MaxParties int
	// MaxDim bounds the vector length.
	MaxDim int
	// Neighbours is the masking graph's size, counted as Flower counts its
	// num_shares: each member masks with the Neighbours−1 members nearest
	// to it on the round's random ring (⌊Neighbours/2⌋ on each side).
	// 0 means the complete graph: every member masks with every other.
	Neighbours int
}

// Preset is a checked, immutable parameter set.
type Preset struct {
	lit  Literal
	caps protect.Capacity
}

// NewPreset checks l: the modulus must hold every sum of MaxParties inputs
// that Protect accepts, with its rounding, so that a sum can never wrap.
func NewPreset(l Literal) (*Preset, error) {
	switch {
	case l.Name == "":
		return nil, errors.New("secagg: preset without a name")
	case l.Bits != 32 && l.Bits != 64:
		return nil, fmt.Errorf("secagg: preset %s: modulus of %d bits, want 32 or 64", l.Name, l.Bits)
	case l.Frac < 1 || l.Frac > 52:
		return nil, fmt.Errorf("secagg: preset %s: %d fractional bits, want 1 to 52", l.Name, l.Frac)
	case l.MaxParties < 1 || l.MaxParties > fieldOrder:
		return nil, fmt.Errorf("secagg: preset %s: at most %d parties, want 1 to %d", l.Name, l.MaxParties, fieldOrder)
	case l.MaxDim < 1 || l.MaxDim > 1<<26:
		return nil, fmt.Errorf("secagg: preset %s: vectors of %d values, want 1 to 2^26", l.Name, l.MaxDim)
	case l.Neighbours != 0 && (l.Neighbours < 3 || l.Neighbours > l.MaxParties):
		return nil, fmt.Errorf("secagg: preset %s: %d neighbours, want 0 (complete graph) or 3 to %d", l.Name, l.Neighbours, l.MaxParties)
	case !(l.MaxAbs > 0) || math.IsInf(l.MaxAbs, 0):
		return nil, fmt.Errorf("secagg: preset %s: MaxAbs %v, want a positive finite number", l.Name, l.MaxAbs)
	}
	// The largest encoded sum: MaxAbs·2^Frac, plus ½ of rounding per input.
	// It must stay below 2^(Bits−1), so that the two's-complement reading
	// of the sum modulo 2^Bits is the sum itself.
	top := l.MaxAbs*math.Ldexp(1, l.Frac) + float64(l.MaxParties)/2
	if !(top < math.Ldexp(1, l.Bits-1)) || !(top < math.Ldexp(1, 62)) {
		return nil, fmt.Errorf("secagg: preset %s: sums up to %g·2^%d + %d/2 do not fit a modulus of 2^%d: %w",
			l.Name, l.MaxAbs, l.Frac, l.MaxParties, l.Bits, protect.ErrRange)
	}
	// Rounding: ½·2^-Frac per input; decoding a sum to float64: its ulp.
	maxErr := float64(l.MaxParties)*math.Ldexp(1, -l.Frac-1) + l.MaxAbs*math.Ldexp(1, -52)
	return &Preset{lit: l, caps: protect.Capacity{MaxAbs: l.MaxAbs, MaxError: maxErr, MaxParties: l.MaxParties, MaxDim: l.MaxDim}}, nil
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
	// Q32 sums modulo 2³² with 20 fractional bits: 4 bytes per value on
	// the wire. A sum stays within ±1024 (2^30 of 2^31 before the sign,
	// the rest is the rounding of up to 1000 inputs); each input within
	// ±1024/n; the error of a coordinate is at most 1000·2^-21 ≈ 4.8e-4.
	Q32 = mustPreset(Literal{Name: "secagg32", Bits: 32, Frac: 20, MaxAbs: 1 << 10, MaxParties: 1000, MaxDim: 1<<24 - 1})
	// Q64 sums modulo 2⁶⁴ with 40 fractional bits: 8 bytes per value.
	// Sums within ±2^20, error at most 1000·2^-41 + 2^20·2^-52 ≈ 4.6e-10.
	Q64 = mustPreset(Literal{Name: "secagg64", Bits: 64, Frac: 40, MaxAbs: 1 << 20, MaxParties: 1000, MaxDim: 1<<24 - 1})
)

// Default is the preset of a federation whose manifest names none:
// secagg64, whose sums are plain mode's float64 sums to within 2^-41 a
// value (8 bytes a value, as plain's updates), so that masking leaves the
// federation's models as they would be without it, to that rounding.
// secagg32 halves the bytes at a rounding of 2^-21 per value, which
// training amplifies like any other perturbation (docs/BENCHMARKS.md): a
// federation chooses it by name.
var Default = Q64

// Presets returns the named presets, the default first.
func Presets() []*Preset { return []*Preset{Q64, Q32} }

// PresetByName returns the preset a manifest names: "secagg32" or
// "secagg64" for the complete masking graph, or with "-kK" a ring of K
// neighbours (Flower's num_shares, counting the member itself), as in
// "secagg32-k7". The empty name is [Default].
func PresetByName(name string) (*Preset, error) {
	base, k, hasK := strings.Cut(name, "-k")
	if base == "" {
		base = Default.Name()
	}
	var p *Preset
	var names []string
	for _, q := range Presets() {
		if q.Name() == base {
			p = q
		}
		names = append(names, q.Name())
	}
	if p == nil {
		return nil, fmt.Errorf("%w %q (want one of %q, optionally with -kK for a ring of K neighbours)", ErrUnknownPreset, name, names)
	}
	if !hasK {
		return p, nil
	}
	n, err := strconv.Atoi(k)
	if err != nil || n < 3 || n > p.lit.MaxParties || strconv.Itoa(n) != k {
		return nil, fmt.Errorf("%w %q: %q neighbours, want an integer from 3 to %d", ErrUnknownPreset, name, k, p.lit.MaxParties)
	}
	return WithNeighbours(p, n)
}

// WithNeighbours returns p with a ring of k neighbours (k ≥ 3), named
// p's name and "-kK".
func WithNeighbours(p *Preset, k int) (*Preset, error) {
	l := p.lit
	l.Neighbours = k
	if base, _, ok := strings.Cut(l.Name, "-k"); ok {
		l.Name = base
	}
	l.Name = fmt.Sprintf("%s-k%d", l.Name, k)
	return NewPreset(l)
}

// Name returns the preset's name, as a manifest writes it.
func (p *Preset) Name() string { return p.lit.Name }

// Literal returns the preset's parameters.
func (p *Preset) Literal() Literal { return p.lit }

// Capacity returns what the preset carries.
func (p *Preset) Capacity() protect.Capacity { return p.caps }

// width is the bytes per packed word.
func (p *Preset) width() int { return p.lit.Bits / 8 }

// degree is the number of members each of a group of n masks with.
func (p *Preset) degree(n int) int {
	if p.lit.Neighbours == 0 || 2*(p.lit.Neighbours/2) >= n-1 {
		return n - 1
	}
	return 2 * (p.lit.Neighbours / 2)
}
