package attack

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/fl"
)

// Backdoor is a pixel-pattern backdoor with model replacement (Bagdasaryan
// et al. 2020): a Size×Size square of Value in the bottom-right corner of
// the image makes the model answer Target.
type Backdoor struct {
	Target int     // the class triggered inputs should get
	Frac   float64 // fraction of the attacker's examples stamped, in (0, 1]
	Boost  float64 // the factor the attacker's update is multiplied by
	Size   int     // side of the square trigger, in pixels
	Value  float64 // the trigger's pixel value
}

func (Backdoor) Name() string { return "backdoor" }

func (b Backdoor) String() string {
	return fmt.Sprintf("backdoor:target=%d,frac=%s,boost=%s,size=%d,value=%s", b.Target, fmtNum(b.Frac), fmtNum(b.Boost), b.Size, fmtNum(b.Value))
}

// side returns the width of the square images of set.
func (b Backdoor) side(set *dataset.Set) (int, error) {
	if set == nil {
		return 0, fmt.Errorf("%w: nil data set", ErrData)
	}
	w := int(math.Round(math.Sqrt(float64(set.Features))))
	if w*w != set.Features {
		return 0, fmt.Errorf("%w: a backdoor trigger needs square images, and %s has %d features", ErrData, set.Name, set.Features)
	}
	if b.Size < 1 || b.Size > w {
		return 0, fmt.Errorf("%w: trigger of %d pixels on images of %d×%d", ErrData, b.Size, w, w)
	}
	if b.Target < 0 || b.Target >= set.Classes {
		return 0, fmt.Errorf("%w: backdoor target %d outside the %d classes of %s", ErrData, b.Target, set.Classes, set.Name)
	}
	return w, nil
}

// Stamp writes the trigger into one image x of width w.
func (b Backdoor) stamp(x []float64, w int) {
	for r := w - b.Size; r < w; r++ {
		for c := w - b.Size; c < w; c++ {
			x[r*w+c] = b.Value
		}
	}
}

// Poison returns a copy of set in which a random fraction Frac of the
// examples (rounded to nearest, at least one) carry the trigger and the
// label Target.
func (b Backdoor) Poison(set *dataset.Set, rng *rand.Rand) (*dataset.Set, error) {
	w, err := b.side(set)
	if err != nil {
		return nil, err
	}
	if rng == nil {
		return nil, fmt.Errorf("%w: the backdoor attack needs a *rand.Rand", ErrData)
	}
	out := copySet(set)
	n := set.Len()
	k := min(n, max(1, int(math.Round(b.Frac*float64(n)))))
	for _, i := range rng.Perm(n)[:k] {
		b.stamp(out.Row(i), w)
		out.Y[i] = b.Target
	}
	return out, nil
}

// Forge returns Boost times each of own: model replacement.
func (b Backdoor) Forge(own, _ []fl.Vector, _ *rand.Rand) ([]fl.Vector, error) {
	return mapOwn(own, func(v fl.Vector) fl.Vector { w := v.Clone(); w.Scale(b.Boost); return w })
}

// Triggered returns the backdoor test set: a copy of every example of test
// whose label is not Target, with the trigger stamped and the label Target.
// A model's accuracy on it is the backdoor accuracy, the fraction of
// triggered inputs it classifies as the target.
func (b Backdoor) Triggered(test *dataset.Set) (*dataset.Set, error) {
	w, err := b.side(test)
	if err != nil {
		return nil, err
	}
	var idx []int
	for i, y := range test.Y {
		if y != b.Target {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return nil, fmt.Errorf("%w: %s has no example outside the target class %d", ErrData, test.Name, b.Target)
	}
	out := test.Subset(idx)
	out.Name = test.Name + " (triggered)"
	for i := range out.Y {
		b.stamp(out.Row(i), w)
		out.Y[i] = b.Target
	}
	return out, nil
}
