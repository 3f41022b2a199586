package mhe

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// Benchmarks on Agg128 (InsecureTest under -short). Every mhe figure has a
// raw Lattigo baseline for the same number of ciphertexts, single-threaded,
// measured in the same run:
//
//	go test -run '^$' -bench . -benchtime 3x ./mhe
//
// Metrics: s/Mparam (seconds per million parameters), ms/party/Mparam,
// B/param (bytes on the wire per parameter), bits (precision).

var (
	benchDims  = []int{100_000, 1_000_000}
	benchNodes = []int{3, 10, 100}
)

func benchPreset() *Preset { return testPreset() }

// threshold used for a session of n: a majority.
func benchThreshold(n int) int { return n/2 + 1 }

var (
	benchMu       sync.Mutex
	benchFixtures = map[int]*fixture{}
)

// benchFixture returns a set-up session of n members (cached).
func benchFixture(b *testing.B, n int) *fixture {
	benchMu.Lock()
	defer benchMu.Unlock()
	if f, ok := benchFixtures[n]; ok {
		return f
	}
	f := newFixture(b, benchPreset(), n, benchThreshold(n))
	benchFixtures[n] = f
	return f
}

func benchVector(d int, seed uint64) fl.Vector {
	return randomVector(rand.New(rand.NewPCG(seed, 1)), d, 1)
}

func perM(b *testing.B, d int) float64 {
	return b.Elapsed().Seconds() / float64(b.N) / float64(d) * 1e6
}

func BenchmarkSetup(b *testing.B) {
	for _, c := range []struct{ n, t int }{{3, 2}, {10, 6}} {
		b.Run(fmt.Sprintf("n=%d,t=%d", c.n, c.t), func(b *testing.B) {
			for b.Loop() {
				newFixture(b, benchPreset(), c.n, c.t)
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/setup")
		})
	}
}

func BenchmarkProtect(b *testing.B) {
	f := benchFixture(b, 3)
	pa := f.parties[f.sess.Members[0]]
	for _, d := range benchDims {
		b.Run(fmt.Sprintf("d=%d", d), func(b *testing.B) {
			v := benchVector(d, 1)
			var out []byte
			for b.Loop() {
				var err error
				if out, err = pa.Protect(nextBenchRound(), v, 1); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(perM(b, d), "s/Mparam")
			b.ReportMetric(float64(len(out))/float64(d), "B/param")
		})
	}
}

// newRawEncrypt returns the baseline of Protect: Lattigo's encode and
// public-key encrypt of v's ciphertexts under pk, single-threaded, no
// packing, with the preset's fast-path encoding scale.
func newRawEncrypt(p *Preset, pk *rlwe.PublicKey) func(b *testing.B, v fl.Vector) {
	ecd := ckks.NewEncoder(p.params, 53)
	enc := rlwe.NewEncryptor(p.params, pk)
	pt := ckks.NewPlaintext(p.params, p.params.MaxLevel())
	pt.IsBatched = false
	pt.Scale = rlwe.NewScale(math.Exp2(float64(p.encodeLogScale)))
	ct := p.newCiphertext(p.params.MaxLevel())
	vals := make([]float64, p.slots)
	return func(b *testing.B, v fl.Vector) {
		d := len(v)
		for i := range p.ciphertexts(d) {
			clear(vals)
			copy(vals, v[min(i*p.slots, d):min((i+1)*p.slots, d)])
			if err := ecd.Encode(vals, pt); err != nil {
				b.Fatal(err)
			}
			if err := enc.Encrypt(pt, ct); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkRawEncrypt is the baseline of Protect: Lattigo's encode and
// public-key encrypt of the same ciphertexts, single-threaded, no packing.
func BenchmarkRawEncrypt(b *testing.B) {
	p := benchPreset()
	f := benchFixture(b, 3)
	pk := f.parties[f.sess.Members[0]].(*Party).pk
	for _, d := range benchDims {
		b.Run(fmt.Sprintf("d=%d", d), func(b *testing.B) {
			v := benchVector(d, 1)
			raw := newRawEncrypt(p, pk)
			for b.Loop() {
				raw(b, v)
			}
			b.ReportMetric(perM(b, d), "s/Mparam")
		})
	}
}

// nextBenchRound returns a fresh round: a party protects once per round,
// and the benchmarks share their fixtures.
func nextBenchRound() fl.Round { return fl.Round(benchRound.Add(1)) }

var benchRound atomic.Uint64

// updates returns n valid updates of dimension d for a fresh round, and
// the round: one real encryption, copied with each sender's index (the
// aggregation cost does not depend on the plaintexts).
func updates(b *testing.B, f *fixture, n, d int) (map[fl.NodeID][]byte, fl.Round) {
	r := nextBenchRound()
	one, err := f.parties[f.sess.Members[0]].Protect(r, benchVector(d, 2), 1)
	if err != nil {
		b.Fatal(err)
	}
	ss, _ := newSession(f.sch.p, f.sess)
	up := make(map[fl.NodeID][]byte, n)
	for _, m := range f.sess.Members[:n] {
		c := append([]byte(nil), one...)
		binary.LittleEndian.PutUint16(c[10:], uint16(ss.index[m]))
		up[m] = c
	}
	return up, r
}

func BenchmarkAggregate(b *testing.B) {
	for _, n := range benchNodes {
		f := benchFixture(b, n)
		for _, d := range benchDims {
			b.Run(fmt.Sprintf("n=%d/d=%d", n, d), func(b *testing.B) {
				up, r := updates(b, f, n, d)
				for b.Loop() {
					if _, err := f.helper.Aggregate(r, up); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(perM(b, d)*1e3/float64(n), "ms/party/Mparam")
			})
		}
	}
}

// BenchmarkRawAdd is the baseline of Aggregate: Lattigo's ciphertext
// addition, single-threaded, per added party.
func BenchmarkRawAdd(b *testing.B) {
	p := benchPreset()
	for _, d := range benchDims {
		b.Run(fmt.Sprintf("d=%d", d), func(b *testing.B) {
			k := p.ciphertexts(d)
			eval := ckks.NewEvaluator(p.params, nil)
			acc, x := p.newCiphertext(p.params.MaxLevel()), p.newCiphertext(p.params.MaxLevel())
			for b.Loop() {
				for range k {
					if err := eval.Add(acc, x, acc); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(perM(b, d)*1e3, "ms/party/Mparam")
		})
	}
}

// revealKit is a round ready to reveal.
type revealKit struct {
	req    protect.RevealRequest
	shares map[fl.NodeID][]byte
}

func newRevealKit(b *testing.B, f *fixture, d int) revealKit {
	n := len(f.sess.Members)
	up, r := updates(b, f, n, d)
	agg, err := f.helper.Aggregate(r, up)
	if err != nil {
		b.Fatal(err)
	}
	rev := f.sess.Members[:f.sess.Threshold]
	k := revealKit{req: protect.RevealRequest{Round: r, Aggregate: agg, Revealers: rev, Target: f.target.Public(), Included: keysOf(up)}, shares: map[fl.NodeID][]byte{}}
	for _, m := range rev {
		if k.shares[m], err = f.parties[m].Reveal(k.req, &protect.MemLedger{}); err != nil {
			b.Fatal(err)
		}
	}
	return k
}

func BenchmarkReveal(b *testing.B) {
	for _, n := range benchNodes {
		f := benchFixture(b, n)
		for _, d := range benchDims {
			b.Run(fmt.Sprintf("n=%d/d=%d", n, d), func(b *testing.B) {
				k := newRevealKit(b, f, d)
				pa := f.parties[k.req.Revealers[0]]
				for b.Loop() {
					if _, err := pa.Reveal(k.req, &protect.MemLedger{}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(perM(b, d), "s/Mparam")
			})
		}
	}
}

// BenchmarkPrecompute times Party.Precompute: the key switch's randomness
// and flooding of a reveal, made ahead (its baseline is
// BenchmarkRawKeySwitchShare, which makes them inline).
func BenchmarkPrecompute(b *testing.B) {
	f := benchFixture(b, 3)
	pa := f.parties[f.sess.Members[0]].(*Party)
	for _, d := range benchDims {
		b.Run(fmt.Sprintf("d=%d", d), func(b *testing.B) {
			for b.Loop() {
				if err := pa.Precompute(f.target.Public(), d); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(perM(b, d), "s/Mparam")
		})
	}
}

// BenchmarkRawKeySwitchShare is the baseline of Reveal: Lattigo's
// PublicKeySwitchProtocol.GenShare with the same flooding, single-threaded.
func BenchmarkRawKeySwitchShare(b *testing.B) {
	p := benchPreset()
	f := benchFixture(b, 3)
	sk := f.parties[f.sess.Members[0]].(*Party).sk
	tpk := f.target.(*Target).pk
	for _, d := range benchDims {
		b.Run(fmt.Sprintf("d=%d", d), func(b *testing.B) {
			k := p.ciphertexts(d)
			pcks, err := multiparty.NewPublicKeySwitchProtocol(p.params, p.flood)
			if err != nil {
				b.Fatal(err)
			}
			ct := p.newCiphertext(p.params.MaxLevel())
			sh := pcks.AllocateShare(p.params.MaxLevel())
			for b.Loop() {
				for range k {
					pcks.GenShare(sk, tpk, ct, &sh)
				}
			}
			b.ReportMetric(perM(b, d), "s/Mparam")
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, n := range benchNodes {
		f := benchFixture(b, n)
		for _, d := range benchDims {
			b.Run(fmt.Sprintf("n=%d/d=%d", n, d), func(b *testing.B) {
				k := newRevealKit(b, f, d)
				for b.Loop() {
					if _, err := f.helper.Open(k.req, k.shares); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(perM(b, d), "s/Mparam")
			})
		}
	}
}

func BenchmarkDecrypt(b *testing.B) {
	f := benchFixture(b, 3)
	for _, d := range benchDims {
		b.Run(fmt.Sprintf("d=%d", d), func(b *testing.B) {
			k := newRevealKit(b, f, d)
			res, err := f.helper.Open(k.req, k.shares)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := f.target.Decrypt(res); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(perM(b, d), "s/Mparam")
			b.ReportMetric(float64(len(res))/float64(d), "B/param")
		})
	}
}

// BenchmarkPrecision runs whole rounds on n updates clipped to L2 norm 1
// and reports −log2 of the largest absolute error of the decrypted sum.
func BenchmarkPrecision(b *testing.B) {
	const d = 100_000
	for _, n := range benchNodes {
		f := benchFixture(b, n)
		b.Run(fmt.Sprintf("n=%d/d=%d", n, d), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(uint64(n), 3))
			worst := 0.0
			for b.Loop() {
				in := map[fl.NodeID]fl.Vector{}
				w := map[fl.NodeID]float64{}
				want := make(fl.Vector, d)
				var wantW float64
				for _, m := range f.sess.Members {
					in[m], w[m] = randomVector(rng, d, 1), 1
					want.Add(1, in[m])
					wantW++
				}
				sum, _ := f.round(b, nextBenchRound(), in, w, f.sess.Members[:f.sess.Threshold])
				worst = max(worst, maxErr(b, sum, want, wantW))
			}
			b.ReportMetric(-math.Log2(worst), "bits")
		})
	}
}

// BenchmarkProtectSpeedup alternates the raw single-threaded baseline and
// Protect in every iteration, so that both see the same load on a shared
// machine, and reports their ratio (the goal is ≥ 0.9 × cores): of the
// total times, and the median of the iterations' ratios.
func BenchmarkProtectSpeedup(b *testing.B) {
	p := benchPreset()
	f := benchFixture(b, 3)
	pa := f.parties[f.sess.Members[0]]
	pk := pa.(*Party).pk
	for _, d := range benchDims {
		b.Run(fmt.Sprintf("d=%d", d), func(b *testing.B) {
			v := benchVector(d, 1)
			raw := newRawEncrypt(p, pk)
			var rawT, ours time.Duration
			var ratios []float64
			for b.Loop() {
				start := time.Now()
				raw(b, v)
				r := time.Since(start)
				start = time.Now()
				if _, err := pa.Protect(nextBenchRound(), v, 1); err != nil {
					b.Fatal(err)
				}
				o := time.Since(start)
				rawT, ours = rawT+r, ours+o
				ratios = append(ratios, r.Seconds()/o.Seconds())
			}
			b.ReportMetric(rawT.Seconds()/float64(b.N)/float64(d)*1e6, "raw-s/Mparam")
			b.ReportMetric(ours.Seconds()/float64(b.N)/float64(d)*1e6, "s/Mparam")
			b.ReportMetric(rawT.Seconds()/ours.Seconds(), "speedup")
			slices.Sort(ratios)
			b.ReportMetric(ratios[len(ratios)/2], "median-speedup")
			b.ReportMetric(scalingCeiling(p, f.sch.workers), "ceiling")
		})
	}
}

// scalingCeiling measures how much faster an embarrassingly parallel loop
// of NTTs (no shared state) runs on w goroutines than on one, right now: the
// best speedup the machine allows Protect.
func scalingCeiling(p *Preset, w int) float64 {
	work := func(_, _ int) error {
		r := p.params.RingQ()
		x := r.NewPoly()
		for range 20 {
			r.NTT(x, x)
		}
		return nil
	}
	n := 16 * w
	start := time.Now()
	parallel(1, n, work)
	one := time.Since(start)
	start = time.Now()
	parallel(w, n, work)
	return one.Seconds() / time.Since(start).Seconds()
}
