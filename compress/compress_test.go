package compress

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

func randVec(rng *rand.Rand, n int, scale float64) fl.Vector {
	v := make(fl.Vector, n)
	for i := range v {
		v[i] = rng.NormFloat64() * scale
	}
	return v
}

func TestParse(t *testing.T) {
	for spec, want := range map[string]string{
		"": "none", "none": "none", "topk:0.01": "topk:0.01", "TopK:0.5": "topk:0.5",
		"q8": "q8", "q8:256": "q8", "q8:64": "q8:64", "topk:1": "topk:1",
	} {
		s, err := Parse(spec)
		if err != nil {
			t.Errorf("Parse(%q): %v", spec, err)
			continue
		}
		if s.String() != want {
			t.Errorf("Parse(%q) = %s, want %s", spec, s, want)
		}
		if back, err := Parse(s.String()); err != nil || back != s {
			t.Errorf("Parse(%q) does not round-trip: %v %v", s, back, err)
		}
	}
	for _, spec := range []string{"topk", "topk:0", "topk:1.5", "topk:x", "q8:0", "q8:-3", "zip", "none:1", "topk:NaN"} {
		_, err := Parse(spec)
		if !errors.Is(err, ErrSpec) {
			t.Errorf("Parse(%q) = %v, want ErrSpec", spec, err)
		} else if !bytes.Contains([]byte(err.Error()), []byte(spec)) {
			t.Errorf("Parse(%q): error %q does not quote the spec", spec, err)
		}
	}
}

// Every payload's WireSize is its exact binary length, and Decode gives
// back the payload's vector.
func TestPayloadRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, spec := range []string{"none", "topk:0.1", "q8", "q8:7"} {
		s, _ := Parse(spec)
		for _, n := range []int{0, 1, 5, 300, 1000} {
			enc := s.NewEncoder()
			v := randVec(rng, n, 3)
			p, err := enc.Encode(v, rng)
			if err != nil {
				t.Fatalf("%s: Encode(len %d): %v", spec, n, err)
			}
			data, err := p.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if len(data) != p.WireSize() {
				t.Errorf("%s len %d: WireSize %d, marshalled %d bytes", spec, n, p.WireSize(), len(data))
			}
			got, err := Decode(data, n)
			if err != nil {
				t.Fatalf("%s len %d: Decode: %v", spec, n, err)
			}
			want := p.Vector()
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%s len %d: element %d decodes to %v, want %v", spec, n, i, got[i], want[i])
				}
			}
			if _, err := Decode(data, n+1); !errors.Is(err, ErrFormat) {
				t.Errorf("%s: Decode with the wrong expected length: %v", spec, err)
			}
			if len(data) > 9 {
				if _, err := Decode(data[:len(data)-1], n); !errors.Is(err, ErrFormat) {
					t.Errorf("%s: truncated payload decoded: %v", spec, err)
				}
			}
		}
	}
}

// Sizes against the dense float32 baseline, as the package guide states.
func TestWireSizes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	v := randVec(rng, 101770, 1)
	tk, _ := NewTopK(0.01)
	sp, _ := tk.Encode(v, rng)
	q, _ := Q8{}.Encode(v, rng)
	d, _ := denseEncoder{}.Encode(v, rng)
	if d.WireSize() != 5+4*101770 {
		t.Errorf("dense: %d bytes", d.WireSize())
	}
	if want := 9 + 8*1018; sp.WireSize() != want {
		t.Errorf("topk:0.01: %d bytes, want %d", sp.WireSize(), want)
	}
	if want := 9 + 101770 + 8*398; q.WireSize() != want {
		t.Errorf("q8: %d bytes, want %d", q.WireSize(), want)
	}
	if r := float64(q.WireSize()) / float64(4*len(v)); r > 0.27 || r < 0.25 {
		t.Errorf("q8 ratio %.3f", r)
	}
}

// A Scheme's Decode takes exactly its own payloads, of exactly WireSize
// bytes, and gives back what the payload encodes.
func TestSchemeDecode(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	specs := []string{"none", "topk:0.01", "topk:1", "q8", "q8:64"}
	for _, d := range []int{1, 255, 1007} {
		v := randVec(rng, d, 3)
		payloads := make(map[string][]byte)
		for _, spec := range specs {
			s, err := Parse(spec)
			if err != nil {
				t.Fatal(err)
			}
			p, err := s.NewEncoder().Encode(v, rng)
			if err != nil {
				t.Fatalf("%s: %v", spec, err)
			}
			b, _ := p.MarshalBinary()
			if len(b) != s.WireSize(d) {
				t.Errorf("%s, d=%d: payload of %d bytes, WireSize says %d", spec, d, len(b), s.WireSize(d))
			}
			got, err := s.Decode(b, d)
			if err != nil {
				t.Errorf("%s, d=%d: Decode of its own payload: %v", spec, d, err)
			} else if want := p.Vector(); !slices.Equal(got, want) {
				t.Errorf("%s, d=%d: Decode differs from the payload's vector", spec, d)
			}
			if _, err := s.Decode(b[:len(b)-1], d); !errors.Is(err, ErrFormat) {
				t.Errorf("%s, d=%d: truncated payload: %v", spec, d, err)
			}
			if _, err := s.Decode(b, d+1); !errors.Is(err, ErrFormat) {
				t.Errorf("%s, d=%d: payload for d+1: %v", spec, d, err)
			}
			payloads[spec] = b
		}
		for _, spec := range specs {
			s, _ := Parse(spec)
			for other, b := range payloads {
				if other == spec || (spec == "topk:1" || other == "topk:1") && d == 1 && (spec == "topk:0.01" || other == "topk:0.01") {
					continue // ⌈0.01⌉ = 1 = d: the same payload
				}
				if _, err := s.Decode(b, d); !errors.Is(err, ErrFormat) {
					t.Errorf("%s, d=%d: accepted a %s payload: %v", spec, d, other, err)
				}
			}
		}
	}
}

// A top-k encoder made within a limit refuses an update that would take
// update plus residual beyond it, and keeps its residual as it was.
func TestTopKLimit(t *testing.T) {
	s, _ := Parse("topk:0.5")
	e := s.NewEncoderWithin(10).(*TopK)
	p, err := e.Encode(fl.Vector{6, 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Vector(); !slices.Equal(got, fl.Vector{6, 0}) {
		t.Fatalf("sent %v, want [6 0]", got)
	}
	if _, err := e.Encode(fl.Vector{0, 9.5}, nil); !errors.Is(err, ErrRange) {
		t.Errorf("update taking the residual to 10.5 beyond 10: %v", err)
	}
	if r := e.Residual(); !slices.Equal(r, fl.Vector{0, 1}) {
		t.Errorf("residual %v after the refusal, want [0 1]", r)
	}
	if _, err := e.Encode(fl.Vector{0, 9}, nil); err != nil {
		t.Errorf("update taking the residual to 10: %v", err)
	}
}

func TestEncodeRejects(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, spec := range []string{"none", "topk:0.5", "q8"} {
		s, _ := Parse(spec)
		for _, bad := range []fl.Vector{{1, math.NaN()}, {math.Inf(-1)}, {1e300, 0}} {
			if _, err := s.NewEncoder().Encode(bad, rng); !errors.Is(err, ErrNonFinite) && !errors.Is(err, ErrRange) {
				t.Errorf("%s: Encode(%v) = %v", spec, bad, err)
			}
		}
	}
	if _, err := (Q8{}).Encode(fl.Vector{1}, nil); err == nil {
		t.Error("q8 without randomness accepted")
	}
}

// Top-k sends exactly k coordinates, the largest, and with error feedback
// the residual holds exactly what was not sent: sent + residual = Σ updates.
func TestTopKErrorFeedback(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	tk, err := NewTopK(0.05)
	if err != nil {
		t.Fatal(err)
	}
	const n = 400
	sum := make(fl.Vector, n)
	sent := make(fl.Vector, n)
	for round := 0; round < 30; round++ {
		v := randVec(rng, n, 1)
		sum.Add(1, v)
		before := tk.Residual()
		p, err := tk.Encode(v, rng)
		if err != nil {
			t.Fatal(err)
		}
		s := p.(*Sparse)
		if len(s.Index) != tk.K(n) || tk.K(n) != 20 {
			t.Fatalf("sent %d coordinates, want %d", len(s.Index), 20)
		}
		// The sent coordinates are the largest of residual + update.
		acc := v.Clone()
		if before != nil {
			acc.Add(1, before)
		}
		chosen := map[uint32]bool{}
		minSent := math.Inf(1)
		for _, i := range s.Index {
			chosen[i] = true
			minSent = min(minSent, math.Abs(acc[i]))
		}
		for i, x := range acc {
			if !chosen[uint32(i)] && math.Abs(x) > minSent {
				t.Fatalf("round %d: unsent |a[%d]| = %v exceeds a sent one, %v", round, i, math.Abs(x), minSent)
			}
		}
		sent.Add(1, p.Vector())
		res := tk.Residual()
		for i := range sum {
			if d := sum[i] - (sent[i] + res[i]); math.Abs(d) > 1e-12 {
				t.Fatalf("round %d: coordinate %d: Σ updates − (sent + residual) = %g", round, i, d)
			}
		}
		// The residual is what was left: sent coordinates keep only their
		// float32 rounding error.
		for _, i := range s.Index {
			if math.Abs(res[i]) > 1e-6*math.Abs(acc[i]) {
				t.Fatalf("residual at sent coordinate %d is %v", i, res[i])
			}
		}
	}
	// Error feedback eventually sends every coordinate's mass: with
	// 30 rounds of 20 of 400 coordinates, the residual stays bounded
	// rather than growing like the sum of the updates.
	if r, s := tk.Residual().Norm(), sum.Norm(); !(r < s) {
		t.Errorf("residual norm %v not below the norm of the sum %v", r, s)
	}
	if _, err := tk.Encode(make(fl.Vector, n+1), rng); !errors.Is(err, fl.ErrDimension) {
		t.Errorf("length change: %v", err)
	}
}

// The sent top-k with ties chooses the lowest indices and still sends k.
func TestTopKTies(t *testing.T) {
	tk, _ := NewTopK(0.5)
	p, err := tk.Encode(fl.Vector{1, -1, 1, 1, 0, 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := p.(*Sparse)
	if len(s.Index) != 3 || s.Index[0] != 0 || s.Index[1] != 1 || s.Index[2] != 2 {
		t.Errorf("sent %v", s.Index)
	}
	if res := tk.Residual(); res[3] != 1 {
		t.Errorf("residual %v", res)
	}
}

// q8 is unbiased: the mean of many decodings of the same vector converges
// to it, within the statistical tolerance, and every decoding is within
// one step of it.
func TestQ8Unbiased(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	v := randVec(rng, 64, 2)
	v[3] = 40 // a wide bucket: step ≈ 0.2
	const trials = 4000
	mean := make(fl.Vector, len(v))
	var maxStep float64
	for range trials {
		p, err := Q8{Bucket: 32}.Encode(v, rng)
		if err != nil {
			t.Fatal(err)
		}
		q := p.(*Quantized)
		for _, s := range q.Step {
			maxStep = max(maxStep, float64(s))
		}
		d := p.Vector()
		for i := range v {
			if math.Abs(d[i]-v[i]) > float64(q.Step[i/32])*(1+1e-6) {
				t.Fatalf("element %d decodes to %v, more than a step (%v) from %v", i, d[i], q.Step[i/32], v[i])
			}
		}
		mean.Add(1.0/trials, d)
	}
	// Each decoding has variance ≤ step²/4, so the mean's std is at most
	// step/(2√trials); allow 5 standard deviations.
	tol := 5 * maxStep / (2 * math.Sqrt(trials))
	for i := range v {
		if math.Abs(mean[i]-v[i]) > tol {
			t.Errorf("element %d: mean decoding %v, value %v, bias beyond %v", i, mean[i], v[i], tol)
		}
	}
	// Constant buckets are exact.
	p, _ := Q8{}.Encode(fl.Vector{0.3, 0.3, 0.3}, rng)
	if d := p.Vector(); d[0] != float64(float32(0.3)) && math.Abs(d[0]-0.3) > 1e-7 {
		t.Errorf("constant vector decodes to %v", d)
	}
}

func TestQuantizer(t *testing.T) {
	q, err := NewQuantizer(1<<16, 32, 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := q.MaxAbs(); math.Abs(got-327.68) > 0.01 {
		t.Errorf("MaxAbs = %v, want about 327.68", got)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	// 100 vectors at the bound sum without overflow, in both signs.
	sum := make([]uint64, 3)
	want := make(fl.Vector, 3)
	for i := range 100 {
		v := fl.Vector{q.MaxAbs(), -q.MaxAbs(), float64(i) / 7}
		e, err := q.Encode(v, rng)
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Add(sum, e); err != nil {
			t.Fatal(err)
		}
		want.Add(1, v)
	}
	got, err := q.Decode(sum)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 100/q.Scale() {
			t.Errorf("sum element %d = %v, want %v", i, got[i], want[i])
		}
	}
	if _, err := q.Encode(fl.Vector{q.MaxAbs() * 1.0001}, rng); !errors.Is(err, ErrRange) {
		t.Errorf("value beyond MaxAbs: %v", err)
	}
	if _, err := q.Encode(fl.Vector{math.NaN()}, rng); !errors.Is(err, ErrNonFinite) {
		t.Errorf("NaN: %v", err)
	}
	if _, err := q.Decode([]uint64{1 << 32}); !errors.Is(err, ErrFormat) {
		t.Errorf("encoding beyond 32 bits: %v", err)
	}
	if err := q.Add(sum, []uint64{1}); !errors.Is(err, fl.ErrDimension) {
		t.Errorf("Add of mismatched lengths: %v", err)
	}
	// Nearest rounding without rng, and negative values in two's complement.
	e, _ := q.Encode(fl.Vector{-1.5 / (1 << 16), 2.4 / (1 << 16)}, nil)
	if e[0] != 1<<32-2 || e[1] != 2 {
		t.Errorf("nearest encodings %v", e)
	}
	// Stochastic rounding is unbiased.
	x := 0.3 / (1 << 16)
	var mean float64
	for range 20000 {
		e, _ := q.Encode(fl.Vector{x}, rng)
		d, _ := q.Decode(e)
		mean += d[0] / 20000
	}
	if math.Abs(mean-x)*(1<<16) > 0.02 {
		t.Errorf("stochastic rounding mean %v, want %v", mean*(1<<16), 0.3)
	}
	// 64 bits.
	q64, err := NewQuantizer(1<<24, 64, 10000)
	if err != nil {
		t.Fatal(err)
	}
	e, _ = q64.Encode(fl.Vector{-2.5, 1000}, nil)
	d, _ := q64.Decode(e)
	if d[0] != -2.5 || d[1] != 1000 {
		t.Errorf("64-bit round trip %v", d)
	}
	for _, c := range []struct {
		scale      float64
		bits, summ int
	}{{0, 32, 1}, {math.Inf(1), 32, 1}, {1, 1, 1}, {1, 65, 1}, {1, 32, 0}, {1, 8, 1000}} {
		if _, err := NewQuantizer(c.scale, c.bits, c.summ); err == nil {
			t.Errorf("NewQuantizer(%v, %d, %d) accepted", c.scale, c.bits, c.summ)
		}
	}
}

func FuzzDecode(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, spec := range []string{"none", "topk:0.3", "q8:2"} {
		s, _ := Parse(spec)
		p, _ := s.NewEncoder().Encode(fl.Vector{1, -2, 3, 0.5}, rng)
		data, _ := p.MarshalBinary()
		f.Add(data)
	}
	f.Add([]byte{'S', 4, 0, 0, 0, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(data, 4)
		if err != nil {
			return
		}
		if len(v) != 4 || !v.Finite() {
			t.Fatalf("decoded %v", v)
		}
	})
}
