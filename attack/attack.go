package attack

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/spec"
)

var (
	// ErrSpec reports an attack spec that Parse cannot read, or parameters
	// out of range.
	ErrSpec = errors.New("attack: bad spec")
	// ErrData reports a data set an attack cannot poison: a backdoor on
	// features that are not a square image, a label flip with no classes.
	ErrData = errors.New("attack: unusable data")
	// ErrUpdates reports updates an attack cannot forge from: none at all,
	// no honest update to learn from, or lengths that differ.
	ErrUpdates = errors.New("attack: unusable updates")
)

// Attack is what the malicious nodes of a simulated federation do.
type Attack interface {
	// Name returns the attack's name: "label-flip", "alie", …
	Name() string
	// String returns the canonical spec, which Parse accepts back.
	String() string
	// Poison returns the data a malicious node trains on: a modified copy
	// of set for data-poisoning attacks, set itself otherwise. It never
	// modifies set.
	Poison(set *dataset.Set, rng *rand.Rand) (*dataset.Set, error)
	// Forge returns the updates the malicious nodes send, one for each of
	// own, the updates they computed by training on their (poisoned) data.
	// honest holds the honest nodes' updates of the same round, which the
	// omniscient attacks read. It returns new vectors and modifies nothing.
	Forge(own, honest []fl.Vector, rng *rand.Rand) ([]fl.Vector, error)
}

// Parse returns the attack a spec names (see the package documentation)
// for a cohort of n nodes of which f are malicious: "none", "label-flip",
// "sign-flip", "gaussian", "scale", "alie", "ipm", "backdoor", each with
// optional arguments such as "sign-flip:scale=10" or "backdoor:target=2".
func Parse(text string, n, f int) (Attack, error) {
	s, err := spec.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%w %w", ErrSpec, err)
	}
	name := s.Name
	fail := func(format string, a ...any) (Attack, error) {
		return nil, fmt.Errorf("%w %w", ErrSpec, s.Errorf(format, a...))
	}
	if n < 1 || f < 0 || f > n {
		return fail("%d malicious nodes out of %d", f, n)
	}
	var main string
	var keys []string
	switch name {
	case "none", "label-flip":
	case "sign-flip", "gaussian":
		main, keys = "scale", []string{"scale"}
	case "scale":
		main, keys = "factor", []string{"factor"}
	case "alie":
		main, keys = "z", []string{"z"}
	case "ipm":
		main, keys = "eps", []string{"eps"}
	case "backdoor":
		main, keys = "target", []string{"target", "frac", "boost", "size", "value"}
	default:
		return fail("unknown attack %q (want none, label-flip, sign-flip, gaussian, scale, alie, ipm or backdoor)", name)
	}
	vals, err := s.Args(main, keys...)
	if err != nil {
		return nil, fmt.Errorf("%w %w", ErrSpec, err)
	}
	get := func(key string, def float64) float64 {
		if x, ok := vals[key]; ok {
			return x
		}
		return def
	}
	positive := func(key string, def float64) (float64, error) {
		x := get(key, def)
		if !(x > 0) || math.IsInf(x, 0) {
			return 0, fmt.Errorf("%w %w", ErrSpec, s.Errorf("%s=%v, want a finite value > 0", key, x))
		}
		return x, nil
	}
	switch name {
	case "none":
		return None{}, nil
	case "label-flip":
		return LabelFlip{}, nil
	case "sign-flip":
		s, err := positive("scale", 4)
		return wrapAttack(SignFlip{Scale: s}, err)
	case "gaussian":
		s, err := positive("scale", 1)
		return wrapAttack(Gaussian{Scale: s}, err)
	case "scale":
		s, err := positive("factor", float64(n))
		return wrapAttack(Scale{Factor: s}, err)
	case "alie":
		z, ok := vals["z"]
		if !ok {
			z, err = ALIEZ(n, f)
			if err != nil {
				return fail("%v", err)
			}
		}
		if math.IsNaN(z) || math.IsInf(z, 0) {
			return fail("z=%v is not finite", z)
		}
		return ALIE{Z: z}, nil
	case "ipm":
		e, err := positive("eps", 0.1)
		return wrapAttack(IPM{Eps: e}, err)
	}
	// backdoor
	b := Backdoor{Target: 0, Frac: 0.5, Boost: float64(n), Size: 3, Value: 1}
	if x, ok := vals["target"]; ok {
		if x != math.Trunc(x) || x < 0 || x > 1<<20 {
			return fail("target=%v is not a class number", x)
		}
		b.Target = int(x)
	}
	if x, ok := vals["frac"]; ok {
		if !(x > 0 && x <= 1) {
			return fail("frac=%v outside (0, 1]", x)
		}
		b.Frac = x
	}
	if b.Boost, err = positive("boost", b.Boost); err != nil {
		return nil, err
	}
	if x, ok := vals["size"]; ok {
		if x != math.Trunc(x) || x < 1 || x > 1<<10 {
			return fail("size=%v is not a positive trigger size in pixels", x)
		}
		b.Size = int(x)
	}
	if x, ok := vals["value"]; ok {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fail("value=%v is not finite", x)
		}
		b.Value = x
	}
	return b, nil
}

func wrapAttack(a Attack, err error) (Attack, error) {
	if err != nil {
		return nil, err
	}
	return a, nil
}

func fmtNum(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

// checkOwn validates the attackers' own updates.
func checkOwn(own []fl.Vector) error {
	for i, v := range own {
		if len(v) != len(own[0]) {
			return fmt.Errorf("%w: malicious update %d has length %d, update 0 has %d", ErrUpdates, i, len(v), len(own[0]))
		}
	}
	return nil
}

// None is the absence of an attack: the malicious nodes behave honestly.
type None struct{}

func (None) Name() string   { return "none" }
func (None) String() string { return "none" }

// Poison returns set.
func (None) Poison(set *dataset.Set, _ *rand.Rand) (*dataset.Set, error) { return set, nil }

// Forge returns copies of own.
func (None) Forge(own, _ []fl.Vector, _ *rand.Rand) ([]fl.Vector, error) {
	return mapOwn(own, func(v fl.Vector) fl.Vector { return v.Clone() })
}

func mapOwn(own []fl.Vector, f func(fl.Vector) fl.Vector) ([]fl.Vector, error) {
	if err := checkOwn(own); err != nil {
		return nil, err
	}
	out := make([]fl.Vector, len(own))
	for i, v := range own {
		out[i] = f(v)
	}
	return out, nil
}

// LabelFlip trains on flipped labels, y → C−1−y, and sends the result
// unchanged.
type LabelFlip struct{}

func (LabelFlip) Name() string   { return "label-flip" }
func (LabelFlip) String() string { return "label-flip" }

// Poison returns a copy of set with every label y replaced by C−1−y.
func (LabelFlip) Poison(set *dataset.Set, _ *rand.Rand) (*dataset.Set, error) {
	if set == nil || set.Classes < 2 {
		return nil, fmt.Errorf("%w: label flipping needs at least 2 classes", ErrData)
	}
	out := copySet(set)
	for i, y := range out.Y {
		if y < 0 || y >= set.Classes {
			return nil, fmt.Errorf("%w: label %d of example %d outside [0, %d)", ErrData, y, i, set.Classes)
		}
		out.Y[i] = set.Classes - 1 - y
	}
	return out, nil
}

// Forge returns copies of own.
func (LabelFlip) Forge(own, _ []fl.Vector, _ *rand.Rand) ([]fl.Vector, error) {
	return None{}.Forge(own, nil, nil)
}

func copySet(s *dataset.Set) *dataset.Set {
	out := *s
	out.X = slices.Clone(s.X)
	out.Y = slices.Clone(s.Y)
	out.Name = s.Name + " (poisoned)"
	return &out
}

// SignFlip sends −Scale·Δ.
type SignFlip struct{ Scale float64 }

func (SignFlip) Name() string     { return "sign-flip" }
func (a SignFlip) String() string { return "sign-flip:scale=" + fmtNum(a.Scale) }

// Poison returns set.
func (SignFlip) Poison(set *dataset.Set, _ *rand.Rand) (*dataset.Set, error) { return set, nil }

// Forge returns −Scale times each of own.
func (a SignFlip) Forge(own, _ []fl.Vector, _ *rand.Rand) ([]fl.Vector, error) {
	return mapOwn(own, func(v fl.Vector) fl.Vector { w := v.Clone(); w.Scale(-a.Scale); return w })
}

// Scale sends Factor·Δ: honest work, amplified.
type Scale struct{ Factor float64 }

func (Scale) Name() string     { return "scale" }
func (a Scale) String() string { return "scale:factor=" + fmtNum(a.Factor) }

// Poison returns set.
func (Scale) Poison(set *dataset.Set, _ *rand.Rand) (*dataset.Set, error) { return set, nil }

// Forge returns Factor times each of own.
func (a Scale) Forge(own, _ []fl.Vector, _ *rand.Rand) ([]fl.Vector, error) {
	return mapOwn(own, func(v fl.Vector) fl.Vector { w := v.Clone(); w.Scale(a.Factor); return w })
}

// Gaussian sends, in place of Δ, a vector in a uniformly random direction
// with norm Scale·‖Δ‖: noise that no norm check can tell from an update.
type Gaussian struct{ Scale float64 }

func (Gaussian) Name() string     { return "gaussian" }
func (a Gaussian) String() string { return "gaussian:scale=" + fmtNum(a.Scale) }

// Poison returns set.
func (Gaussian) Poison(set *dataset.Set, _ *rand.Rand) (*dataset.Set, error) { return set, nil }

// Forge draws each forged update from rng.
func (a Gaussian) Forge(own, _ []fl.Vector, rng *rand.Rand) ([]fl.Vector, error) {
	if rng == nil {
		return nil, fmt.Errorf("%w: the gaussian attack needs a *rand.Rand", ErrUpdates)
	}
	return mapOwn(own, func(v fl.Vector) fl.Vector {
		w := make(fl.Vector, len(v))
		for i := range w {
			w[i] = rng.NormFloat64()
		}
		if n := w.Norm(); n > 0 {
			w.Scale(a.Scale * v.Norm() / n)
		}
		return w
	})
}

// ALIE is "a little is enough" (Baruch et al. 2019): every malicious node
// sends μ − Z·σ, with μ and σ the coordinate-wise mean and sample standard
// deviation of the honest updates.
type ALIE struct{ Z float64 }

func (ALIE) Name() string     { return "alie" }
func (a ALIE) String() string { return "alie:z=" + fmtNum(a.Z) }

// ALIEZ returns Baruch et al.'s default Z for n nodes of which f are
// malicious: Φ⁻¹((n − s)/n) with s = ⌊n/2 + 1⌋ − f. It needs 0 < s, that is
// f ≤ ⌊n/2⌋.
func ALIEZ(n, f int) (float64, error) {
	s := n/2 + 1 - f
	if n < 1 || f < 0 || s < 1 {
		return 0, fmt.Errorf("ALIE's default z needs f ≤ ⌊n/2⌋, have f = %d of n = %d; give z explicitly", f, n)
	}
	p := float64(n-s) / float64(n)
	return math.Sqrt2 * math.Erfinv(2*p-1), nil
}

// Poison returns set.
func (ALIE) Poison(set *dataset.Set, _ *rand.Rand) (*dataset.Set, error) { return set, nil }

// Forge returns len(own) copies of μ − Z·σ over honest. It needs at least
// one honest update (σ is 0 for exactly one).
func (a ALIE) Forge(own, honest []fl.Vector, _ *rand.Rand) ([]fl.Vector, error) {
	mu, err := mean(honest, "alie")
	if err != nil {
		return nil, err
	}
	out := mu.Clone()
	if m := len(honest); m > 1 {
		for j := range out {
			var ss float64
			for _, h := range honest {
				d := h[j] - mu[j]
				ss += d * d
			}
			out[j] -= a.Z * math.Sqrt(ss/float64(m-1))
		}
	}
	return replicate(out, len(own)), nil
}

// IPM is inner product manipulation (Xie et al. 2020): every malicious node
// sends −Eps times the mean of the honest updates.
type IPM struct{ Eps float64 }

func (IPM) Name() string     { return "ipm" }
func (a IPM) String() string { return "ipm:eps=" + fmtNum(a.Eps) }

// Poison returns set.
func (IPM) Poison(set *dataset.Set, _ *rand.Rand) (*dataset.Set, error) { return set, nil }

// Forge returns len(own) copies of −Eps·mean(honest).
func (a IPM) Forge(own, honest []fl.Vector, _ *rand.Rand) ([]fl.Vector, error) {
	mu, err := mean(honest, "ipm")
	if err != nil {
		return nil, err
	}
	mu.Scale(-a.Eps)
	return replicate(mu, len(own)), nil
}

func mean(vs []fl.Vector, who string) (fl.Vector, error) {
	if len(vs) == 0 {
		return nil, fmt.Errorf("%w: %s needs at least one honest update", ErrUpdates, who)
	}
	mu := make(fl.Vector, len(vs[0]))
	for i, v := range vs {
		if len(v) != len(mu) {
			return nil, fmt.Errorf("%w: honest update %d has length %d, update 0 has %d", ErrUpdates, i, len(v), len(mu))
		}
		mu.Add(1/float64(len(vs)), v)
	}
	return mu, nil
}

func replicate(v fl.Vector, n int) []fl.Vector {
	out := make([]fl.Vector, n)
	for i := range out {
		out[i] = v.Clone()
	}
	return out
}
