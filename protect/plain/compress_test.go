package plain_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/protect/protecttest"
)

func mustCompress(t testing.TB, spec string) compress.Scheme {
	t.Helper()
	c, err := compress.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The compressed schemes keep the protocol: setup, thresholds, reveal once,
// exact sizes, hostile bytes. Their sums are checked exactly by the tests
// below; here the tolerance only has to admit the compression's loss: q8
// is off by at most a bucket's step, 2·scale/255, per input (scale =
// MaxAbs/N in the suite), top-k by up to the input plus the residual it
// carried over, 2·scale.
func TestConformanceCompressed(t *testing.T) {
	for _, c := range []struct {
		spec string
		tol  func(maxAbs float64) float64
	}{
		{"q8", func(m float64) float64 { return 2 * m / 255 * 1.001 }},
		{"q8:16", func(m float64) float64 { return 2 * m / 255 * 1.001 }},
		{"topk:0.1", func(m float64) float64 { return 2 * m * 1.001 }},
	} {
		s := plain.Scheme{Compress: mustCompress(t, c.spec)}
		for _, cfg := range []protecttest.Config{{N: 5, T: 3, Seed: 4}, {N: 1, T: 1, Seed: 5}} {
			cfg.Tolerance = c.tol(s.Capacity().MaxAbs)
			t.Run(fmt.Sprintf("%s/N=%d", c.spec, cfg.N), func(t *testing.T) { protecttest.Run(t, s, cfg) })
		}
	}
}

// weighted returns n updates of d values around 0 with weights, seeded.
func weighted(rng *rand.Rand, members []fl.NodeID, d int) map[fl.NodeID]update {
	in := make(map[fl.NodeID]update, len(members))
	for _, id := range members {
		v := make(fl.Vector, d)
		for i := range v {
			v[i] = rng.NormFloat64() * 0.01
		}
		in[id] = update{delta: v, weight: float64(100 + rng.IntN(900))}
	}
	return in
}

// Under top-k, each round's sum is exactly the sum of what every member's
// encoder sends (a reference encoder run beside each party, fed the same
// weighted updates), no more than k coordinates per member, and over the
// rounds what was sent plus the residuals is what was trained: nothing is
// lost, only delayed.
func TestCompressedTopK(t *testing.T) {
	members := []fl.NodeID{"a", "b", "c"}
	c := mustCompress(t, "topk:0.05")
	g := newGroupOf(t, plain.Scheme{Compress: c}, "topk", 2, members...)
	const d = 1000
	ref := make(map[fl.NodeID]*compress.TopK)
	for _, id := range members {
		ref[id], _ = compress.NewTopK(0.05)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	trained, sent := make(fl.Vector, d), make(fl.Vector, d)
	for r := fl.Round(1); r <= 4; r++ {
		in := weighted(rng, members, d)
		got := reveal(t, g, g.helper, r, in)
		want := make(fl.Vector, d)
		var weight float64
		for _, id := range members {
			v := in[id].delta.Clone()
			v.Scale(in[id].weight)
			trained.Add(1, v)
			p, err := ref[id].Encode(v, nil)
			if err != nil {
				t.Fatal(err)
			}
			x := p.Vector()
			if nz := nonzero(x); nz > 50 {
				t.Errorf("round %d, %s: %d coordinates sent, k = 50", r, id, nz)
			}
			want.Add(1, x)
			weight += in[id].weight
		}
		for i := range want {
			if got.Vector[i] != want[i] {
				t.Fatalf("round %d: value %d = %v, the members' encoders sent %v", r, i, got.Vector[i], want[i])
			}
		}
		if got.Weight != weight {
			t.Errorf("round %d: weight %v, want %v (weights travel uncompressed)", r, got.Weight, weight)
		}
		sent.Add(1, got.Vector)
	}
	for _, id := range members {
		sent.Add(1, ref[id].Residual())
	}
	for i := range sent {
		if math.Abs(sent[i]-trained[i]) > 1e-9*(1+math.Abs(trained[i])) {
			t.Fatalf("value %d: sent plus residuals %v, trained %v", i, sent[i], trained[i])
		}
	}
}

func nonzero(v fl.Vector) int {
	n := 0
	for _, x := range v {
		if x != 0 {
			n++
		}
	}
	return n
}

// Under q8, each value of the sum is within the members' bucket steps of
// the exact sum, the error is unbiased (its mean over many values is near
// zero), and the upload is a quarter of float32's size and an eighth of
// plain's float64.
func TestCompressedQ8(t *testing.T) {
	members := []fl.NodeID{"a", "b", "c", "d", "e"}
	c := mustCompress(t, "q8")
	s := plain.Scheme{Compress: c}
	g := newGroupOf(t, s, "q8", 3, members...)
	const d = 4096
	rng := rand.New(rand.NewPCG(3, 4))
	in := weighted(rng, members, d)
	got := reveal(t, g, g.helper, 1, in)
	var bias float64
	for i := range d {
		var exact, bound float64
		for _, id := range members {
			u := in[id]
			exact += u.delta[i] * u.weight
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, x := range u.delta[i/256*256 : i/256*256+256] {
				lo, hi = math.Min(lo, x*u.weight), math.Max(hi, x*u.weight)
			}
			bound += (hi - lo) / 255 * (1 + 1e-6)
		}
		e := got.Vector[i] - exact
		if math.Abs(e) > bound {
			t.Fatalf("value %d: off by %v, the members' steps allow %v", i, e, bound)
		}
		bias += e / bound
	}
	if m := bias / d; math.Abs(m) > 0.05 {
		t.Errorf("mean error %.3f of the bound: biased", m)
	}
	sz, err := s.Sizes(d, len(members))
	if err != nil {
		t.Fatal(err)
	}
	full, _ := plain.Scheme{}.Sizes(d, len(members))
	if r := float64(sz.Update) / float64(4*d); r < 0.25 || r > 0.27 {
		t.Errorf("q8 update of %d bytes for %d values: %.3f of float32", sz.Update, d, r)
	}
	t.Logf("update of %d values: %d bytes under q8, %d uncompressed", d, sz.Update, full.Update)
}

// A helper takes only updates of its own compression.
func TestCompressedRefusals(t *testing.T) {
	members := []fl.NodeID{"a", "b"}
	v := fl.Vector{1, -2, 3, 0.5}
	payloads := make(map[string][]byte)
	helpers := make(map[string]protect.Helper)
	for _, spec := range []string{"none", "q8", "topk:0.5"} {
		g := newGroupOf(t, plain.Scheme{Compress: mustCompress(t, spec)}, "refuse", 1, members...)
		b, err := g.parties["a"].Protect(1, v, 2)
		if err != nil {
			t.Fatal(err)
		}
		payloads[spec], helpers[spec] = b, g.helper
	}
	for hs, h := range helpers {
		for ps, b := range payloads {
			err := protect.Check(h, 1, "a", b)
			switch {
			case hs == ps && err != nil:
				t.Errorf("the %s helper refused its own update: %v", hs, err)
			case hs != ps && !errors.Is(err, protect.ErrMalformed) && !errors.Is(err, protect.ErrForeign):
				t.Errorf("the %s helper took a %s update: %v", hs, ps, err)
			}
		}
	}
	// A q8 update whose codes were cut short, and one whose values decode
	// beyond ±2⁵³ (a lower end of 1e30), are malformed.
	b := payloads["q8"]
	if err := protect.Check(helpers["q8"], 1, "a", b[:len(b)-1]); !errors.Is(err, protect.ErrMalformed) {
		t.Errorf("truncated q8 update: %v", err)
	}
	huge := append([]byte(nil), b...)
	lo := len(huge) - len(v) - 8                    // the one bucket's lower end
	copy(huge[lo:], []byte{0xca, 0xf2, 0x49, 0x71}) // 1e30 as little-endian float32
	if err := protect.Check(helpers["q8"], 1, "a", huge); !errors.Is(err, protect.ErrMalformed) {
		t.Errorf("q8 update decoding to 1e30: %v", err)
	}
}
