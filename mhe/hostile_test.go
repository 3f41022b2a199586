package mhe

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"runtime"
	"sync"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// lattigoOOM is 9 bytes that make Lattigo v6.2.0's
// rlwe.Ciphertext.UnmarshalBinary allocate 24 TiB and die with an
// unrecoverable "fatal error: out of memory": a zero "has metadata" byte and
// a little-endian polynomial count of 2^40, which Lattigo trusts. None of
// our decoders hands network bytes to Lattigo; this input must be an
// ordinary ErrMalformed everywhere.
const lattigoOOM = "\x00\x00\x00\x00\x00\x00\x01\x00\x00"

// hostileEnv is a set-up session with one payload of every kind and an
// entry point per decoder, shared by the hostile tests and fuzz targets.
type hostileEnv struct {
	f       *fixture
	valid   map[string][]byte               // kind → a valid payload
	entries map[string]func(b []byte) error // kind → the decoder under test
}

var (
	hostileOnce sync.Once
	hostile     *hostileEnv
)

// newHostileEnv builds the environment once (InsecureTest, n = 3, t = 2).
func newHostileEnv(tb testing.TB) *hostileEnv {
	hostileOnce.Do(func() { hostile = buildHostileEnv(tb) })
	if hostile == nil {
		tb.Fatal("hostile environment failed to build")
	}
	return hostile
}

func buildHostileEnv(tb testing.TB) *hostileEnv {
	f := newFixture(tb, InsecureTest, 3, 2)
	ids := f.sess.Members
	in := map[fl.NodeID]fl.Vector{}
	w := map[fl.NodeID]float64{}
	up := map[fl.NodeID][]byte{}
	for _, m := range ids {
		in[m], w[m] = fl.Vector{0.5, -0.25, 1, 2}, 1
		b, err := f.parties[m].Protect(1, in[m], w[m])
		if err != nil {
			tb.Fatal(err)
		}
		up[m] = b
	}
	agg, err := f.helper.Aggregate(1, up)
	if err != nil {
		tb.Fatal(err)
	}
	req := protect.RevealRequest{Round: 1, Aggregate: agg, Revealers: ids[:2], Target: f.target.Public(), Included: keysOf(up)}
	shares := map[fl.NodeID][]byte{}
	for _, m := range req.Revealers {
		if shares[m], err = f.parties[m].Reveal(req, &protect.MemLedger{}); err != nil {
			tb.Fatal(err)
		}
	}
	res, err := f.helper.Open(req, shares)
	if err != nil {
		tb.Fatal(err)
	}
	state, err := f.parties[ids[0]].MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	secret, err := f.target.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	e := &hostileEnv{f: f, valid: map[string][]byte{
		"announcement":    f.anns[ids[1]],
		"public dealing":  f.publics[ids[1]],
		"private dealing": f.private[ids[0]][ids[1]],
		"setup":           f.setup,
		"update":          up[ids[1]],
		"aggregate":       agg,
		"reveal share":    shares[ids[1]],
		"result":          res,
		"party state":     state,
		"target public":   f.target.Public(),
		"target secret":   secret,
	}}
	sch := f.sch
	e.entries = map[string]func([]byte) error{
		"announcement": func(b []byte) error {
			// Deal of a fresh party of the same session with ids[1]'s announcement replaced.
			pa, err := sch.NewParty(f.sess, ids[0], seeded(1000))
			if err != nil {
				return err
			}
			a := clone(f.anns)
			a[ids[1]] = b
			_, err = pa.Deal(a)
			return err
		},
		"public dealing": func(b []byte) error {
			p := clone(f.publics)
			p[ids[1]] = b
			_, err := f.helper.Setup(f.anns, p)
			return err
		},
		"private dealing": func(b []byte) error {
			pa, err := sch.LoadParty(f.sess, ids[0], f.dealt[ids[0]], seeded(1))
			if err != nil {
				return err
			}
			p := clone(f.private[ids[0]])
			p[ids[1]] = b
			return pa.Accept(f.setup, p)
		},
		"setup": func(b []byte) error {
			pa, err := sch.LoadParty(f.sess, ids[0], f.dealt[ids[0]], seeded(1))
			if err != nil {
				return err
			}
			return pa.Accept(b, f.private[ids[0]])
		},
		"update": func(b []byte) error {
			u := clone(up)
			u[ids[1]] = b
			_, err := f.helper.Aggregate(1, u)
			return err
		},
		"aggregate": func(b []byte) error {
			r := req
			r.Aggregate = b
			_, err := f.parties[ids[0]].Reveal(r, &protect.MemLedger{})
			return err
		},
		"target public": func(b []byte) error {
			r := req
			r.Target = b
			_, err := f.parties[ids[0]].Reveal(r, &protect.MemLedger{})
			return err
		},
		"reveal share": func(b []byte) error {
			s := clone(shares)
			s[ids[1]] = b
			_, err := f.helper.Open(req, s)
			return err
		},
		"result": func(b []byte) error {
			_, err := f.target.Decrypt(b)
			return err
		},
		"party state": func(b []byte) error {
			_, err := sch.LoadParty(f.sess, ids[0], b, seeded(1))
			return err
		},
		"target secret": func(b []byte) error {
			_, err := sch.LoadTarget(b)
			return err
		},
	}
	return e
}

func clone(m map[fl.NodeID][]byte) map[fl.NodeID][]byte {
	c := make(map[fl.NodeID][]byte, len(m))
	for k, v := range m {
		c[k] = append([]byte(nil), v...)
	}
	return c
}

// acceptable reports whether err is what a decoder may return for hostile
// bytes.
func acceptable(err error) bool {
	return errors.Is(err, protect.ErrMalformed) || errors.Is(err, protect.ErrForeign) || errors.Is(err, protect.ErrNotMember)
}

// allocated returns the bytes allocated by f.
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

func TestHostile(t *testing.T) {
	e := newHostileEnv(t)
	for _, kind := range sortedKeys(e.entries) {
		call := e.entries[kind]
		valid := e.valid[kind]
		t.Run(kind, func(t *testing.T) {
			if err := call(append([]byte(nil), valid...)); err != nil {
				t.Fatalf("the valid payload is refused: %v", err)
			}
			huge := append([]byte(nil), valid[:headerSize]...)
			binary.LittleEndian.PutUint32(huge[72:], 0xffffffff)
			huge = append(huge, make([]byte, 64)...)
			truncated := valid[:len(valid)-1]
			short := valid[:headerSize+3]
			// a residue ≥ q0 in the first polynomial of the last element
			badResidue := append([]byte(nil), valid...)
			for i := max(headerSize+8, len(badResidue)-e.f.sch.p.polySize(0)/2); i < len(badResidue); i++ {
				badResidue[i] = 0xff
			}
			for _, c := range []struct {
				name  string
				b     []byte
				typed any // *FormatError or *ParamsMismatchError, nil: any acceptable error
			}{
				{"Lattigo's 9-byte OOM input", []byte(lattigoOOM), new(*FormatError)},
				{"a valid header with a count of 2^32−1", huge, new(*FormatError)},
				{"truncated by one byte", truncated, new(*FormatError)},
				{"truncated in the length table", short, new(*FormatError)},
				{"another preset", withPreset(valid, Agg128), new(*ParamsMismatchError)},
				{"another ring degree", withByte(valid, 6, valid[6]+1), new(*ParamsMismatchError)},
				{"another level", withByte(valid, 7, valid[7]^1), new(*ParamsMismatchError)},
				{"another degree", withByte(valid, 8, valid[8]^1), new(*ParamsMismatchError)},
				{"an unknown version", withByte(valid, 4, 3), new(*FormatError)},
				{"wire version 1 (public-key uploads)", withByte(valid, 4, 1), new(*ParamsMismatchError)},
				{"another kind", withByte(valid, 5, valid[5]%11+1), new(*ParamsMismatchError)},
				{"an out-of-range residue", badResidue, nil},
			} {
				var err error
				n := allocated(func() { err = call(c.b) })
				if err == nil {
					if c.name == "an out-of-range residue" && kind == "announcement" {
						continue // an announcement carries no polynomial
					}
					t.Errorf("%s: accepted", c.name)
					continue
				}
				if !acceptable(err) {
					t.Errorf("%s: %v, want ErrMalformed or ErrForeign", c.name, err)
				}
				if c.typed != nil {
					switch target := c.typed.(type) {
					case **FormatError:
						if !errors.As(err, target) {
							t.Errorf("%s: %v is not a *FormatError", c.name, err)
						}
					case **ParamsMismatchError:
						if !errors.As(err, target) {
							t.Errorf("%s: %v is not a *ParamsMismatchError", c.name, err)
						}
					}
				}
				// Bounded memory: the hostile framings allocate nothing
				// close to what they declare.
				if len(c.b) < 1024 && n > 8<<20 {
					t.Errorf("%s: %d bytes allocated for a %d-byte input", c.name, n, len(c.b))
				}
			}
			if err := call(append([]byte(nil), valid...)); err != nil {
				t.Fatalf("the valid payload is refused after the hostile ones: %v", err)
			}
		})
	}
}

func withByte(b []byte, i int, v byte) []byte {
	c := append([]byte(nil), b...)
	c[i] = v
	return c
}

func withPreset(b []byte, p *Preset) []byte {
	c := append([]byte(nil), b...)
	copy(c[12:28], p.hash[:])
	return c
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	for i := range k {
		for j := i + 1; j < len(k); j++ {
			if k[j] < k[i] {
				k[i], k[j] = k[j], k[i]
			}
		}
	}
	return k
}

func TestPackRoundTrip(t *testing.T) {
	for _, w := range []uint{1, 7, 13, 57, 58, 60, 61, 63, 64} {
		n := 64
		if w == 60 {
			n = 66 // also the generic path below, on an odd count
		}
		c := make([]uint64, n)
		for i := range c {
			c[i] = (uint64(i)*0x9e3779b97f4a7c15 + 12345) >> (64 - w)
		}
		b := make([]byte, n*int(w)/8)
		packResidues(b, c, w)
		got := make([]uint64, n)
		q := ^uint64(0)
		if !unpackResidues(got, b, w, q) {
			t.Fatalf("w=%d: a residue reported out of range", w)
		}
		for i := range c {
			if got[i] != c[i] {
				t.Fatalf("w=%d: value %d = %x, want %x", w, i, got[i], c[i])
			}
		}
		if w == 60 { // the generic path agrees with pack60/unpack60
			g := make([]byte, len(b))
			packResiduesGeneric(g, c, w)
			if string(g) != string(b) {
				t.Fatalf("w=60: pack60 and the generic packing differ")
			}
			odd := make([]uint64, n-1)
			ob := make([]byte, (n-2)*60/8)
			packResidues(ob, c[:n-2], w)
			if !unpackResidues(odd[:n-2], ob, w, q) || odd[n-3] != c[n-3] {
				t.Fatalf("w=60: round trip of %d values failed", n-2)
			}
		}
		if w < 64 && bits.Len64(c[n-1]) > int(w) {
			t.Fatal("test values too wide")
		}
	}
}

func BenchmarkUnpack(b *testing.B) {
	p := Agg128
	ct := p.newCiphertext(1)
	buf := p.packCiphertext(nil, ct)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if err := p.unpackCiphertext("bench", buf, ct); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPack(b *testing.B) {
	p := Agg128
	ct := p.newCiphertext(1)
	buf := make([]byte, 0, p.ctSize(1))
	b.SetBytes(int64(p.ctSize(1)))
	for b.Loop() {
		p.packCiphertext(buf[:0], ct)
	}
}
