package tee_test

import (
	"crypto/hpke"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/protecttest"
	"github.com/cloisterfl/cloister/protect/tee"
	"github.com/cloisterfl/cloister/robust"
)

func mustCompress(t testing.TB, spec string) compress.Scheme {
	t.Helper()
	c, err := compress.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Compressed inside the seal, the protocol holds; the tolerance admits the
// compression's loss (see protect/plain's TestConformanceCompressed), and
// TestCompressedOpen checks the values.
func TestConformanceCompressed(t *testing.T) {
	id := identity(t, 7)
	for _, c := range []struct {
		spec string
		tol  func(maxAbs float64) float64
	}{
		{"q8", func(m float64) float64 { return 2 * m / 255 * 1.001 }},
		{"topk:0.1", func(m float64) float64 { return 2 * m * 1.001 }},
	} {
		s := tee.Scheme{Identity: id, Compress: mustCompress(t, c.spec)}
		cfg := protecttest.Config{N: 4, T: 3, Seed: 6, Dim: 101}
		cfg.Tolerance = c.tol(s.Capacity().MaxAbs)
		t.Run(fmt.Sprintf("%s/N=%d", c.spec, cfg.N), func(t *testing.T) { protecttest.Run(t, s, cfg) })
	}
}

// The aggregator decompresses inside and applies the rule to what the
// members sent: under top-k its median is the median of the members'
// sparse vectors (reference encoders beside the parties), under q8 within
// the members' bucket steps of the exact median. A sealed update is the
// compressed size, and the coordinator, which cannot open it, refuses one
// of another compression by its length.
func TestCompressedOpen(t *testing.T) {
	members := []fl.NodeID{"a", "b", "c", "d", "e"}
	const d = 600
	rng := rand.New(rand.NewPCG(9, 10))
	in := make(map[fl.NodeID]update)
	for _, m := range members {
		v := make(fl.Vector, d)
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		in[m] = update{v, 1}
	}
	for _, spec := range []string{"topk:0.1", "q8"} {
		t.Run(spec, func(t *testing.T) {
			cmp := mustCompress(t, spec)
			g := newGroupOf(t, cmp, "compressed", 3, identity(t, 3), "median:f=2", members...)
			prot := g.seal(t, 1, in)
			sz, err := tee.Scheme{Compress: cmp}.Sizes(d, len(members))
			if err != nil {
				t.Fatal(err)
			}
			full, _ := tee.Scheme{}.Sizes(d, len(members))
			for id, b := range prot {
				if len(b) != sz.Update {
					t.Errorf("%s's sealed update: %d bytes, Sizes says %d", id, len(b), sz.Update)
				}
			}
			t.Logf("a sealed update of %d values: %d bytes under %s, %d uncompressed", d, sz.Update, spec, full.Update)
			other := newGroupOf(t, compress.Scheme{}, "compressed", 3, identity(t, 3), "", members...)
			if err := protect.Check(other.coord, 1, "a", prot["a"]); !errors.Is(err, protect.ErrMalformed) {
				t.Errorf("an uncompressed session's coordinator took a %s update: %v", spec, err)
			}
			req, shares := g.request(t, 1, prot, g.target.Public())
			res, err := g.agg.Open(req, shares)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := g.target.Decrypt(res)
			if err != nil {
				t.Fatal(err)
			}
			rule, _ := robust.Parse("median:f=2", len(members))
			var sent []fl.Vector
			for _, m := range members { // sorted
				enc := cmp.NewEncoder()
				p, err := enc.Encode(in[m].delta, rand.New(rand.NewPCG(1, 1)))
				if err != nil {
					t.Fatal(err)
				}
				sent = append(sent, p.Vector())
			}
			want, _ := rule.Aggregate(sent)
			exact := make([]fl.Vector, len(members))
			for i, m := range members {
				exact[i] = in[m].delta
			}
			median, _ := rule.Aggregate(exact)
			for j := range want {
				got := sum.Vector[j] / sum.Weight
				switch spec {
				case "topk:0.1":
					if got != want[j] {
						t.Fatalf("value %d: %v, the median of what was sent is %v", j, got, want[j])
					}
				case "q8":
					// Each member's value is off by at most its bucket's
					// step, (max − min)/255 < 12/255 for these inputs, so
					// the median is too.
					if math.Abs(got-median[j]) > 12.0/255 {
						t.Fatalf("value %d: %v, the exact median is %v", j, got, median[j])
					}
				}
			}
		})
	}
}

// A member that seals a malformed compressed update (here q8 codes under
// another bucket size, at the right length, so every envelope check
// passes) gets the round aborted by the aggregator with ErrMalformed,
// naming it; the aggregator never sums what it cannot decode.
func TestCompressedMalformedInsideTheSeal(t *testing.T) {
	members := []fl.NodeID{"a", "b", "c"}
	id := identity(t, 5)
	cmp := mustCompress(t, "q8")
	g := newGroupOf(t, cmp, "hostile", 2, id, "", members...)
	in := map[fl.NodeID]update{"a": {fl.Vector{1, 2, 3}, 1}, "b": {fl.Vector{1, 2, 3}, 1}, "c": {fl.Vector{1, 2, 3}, 1}}
	prot := g.seal(t, 1, in)
	good := prot["c"]
	sealed := 1120 + 8 + cmp.WireSize(3) + 16 // encapsulated key, weight, payload, tag
	info := good[:len(good)-sealed]
	pt := binary.BigEndian.AppendUint64(nil, math.Float64bits(1))
	bad, err := cmp.NewStream(1e9).Marshal(fl.Vector{1, 2, 3}, rand.NewChaCha8([32]byte{}))
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(bad[5:9], 16) // buckets of 16, not 256
	pub, err := hpke.MLKEM768X25519().NewPublicKey(id.PublicKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	ct, err := hpke.Seal(pub, hpke.HKDFSHA256(), hpke.AES256GCM(), info, append(pt, bad...))
	if err != nil {
		t.Fatal(err)
	}
	prot["c"] = append(slices.Clone(info), ct...)
	if err := protect.Check(g.coord, 1, "c", prot["c"]); err != nil {
		t.Fatalf("the coordinator refused the well-formed envelope: %v", err)
	}
	req, shares := g.request(t, 1, prot, g.target.Public())
	_, err = g.agg.Open(req, shares)
	if !errors.Is(err, protect.ErrMalformed) || !strings.Contains(err.Error(), "sealed update from c") {
		t.Errorf("Open with c's malformed q8 update: %v, want ErrMalformed naming c", err)
	}
}
