package plain_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/protect/protecttest"
)

func TestConformance(t *testing.T) {
	for _, c := range []protecttest.Config{
		{N: 10, T: 6, Seed: 1},
		{N: 3, T: 2, Seed: 2},
		{N: 1, T: 1, Seed: 3},
	} {
		t.Run(fmt.Sprintf("N=%d,T=%d", c.N, c.T), func(t *testing.T) {
			protecttest.Run(t, plain.Scheme{}, c)
		})
	}
}

// group is a set-up plain session, for the tests below.
type group struct {
	sess    protect.Group
	parties map[fl.NodeID]protect.Party
	helper  protect.Helper
	target  protect.Target
}

// newGroup sets up a session with the given members, with randomness from
// a fixed stream.
func newGroup(tb testing.TB, id string, t int, members ...fl.NodeID) *group {
	tb.Helper()
	return newGroupOf(tb, plain.Scheme{}, id, t, members...)
}

// newGroupOf is newGroup for the scheme s.
func newGroupOf(tb testing.TB, s plain.Scheme, id string, t int, members ...fl.NodeID) *group {
	tb.Helper()
	g := &group{
		sess:    protect.Group{ID: []byte(id), Members: members, Threshold: t},
		parties: make(map[fl.NodeID]protect.Party),
	}
	rng := rand.NewChaCha8([32]byte{1})
	var err error
	if g.helper, err = s.NewHelper(g.sess); err != nil {
		tb.Fatal(err)
	}
	if g.target, err = s.NewTarget(rng); err != nil {
		tb.Fatal(err)
	}
	anns := make(map[fl.NodeID][]byte)
	for _, m := range members {
		if g.parties[m], err = s.NewParty(g.sess, m, rng); err != nil {
			tb.Fatal(err)
		}
		if anns[m], err = g.parties[m].Announce(); err != nil {
			tb.Fatal(err)
		}
	}
	publics := make(map[fl.NodeID][]byte)
	private := make(map[fl.NodeID]map[fl.NodeID][]byte)
	for _, m := range members {
		d, err := g.parties[m].Deal(anns)
		if err != nil {
			tb.Fatal(err)
		}
		publics[m] = d.Public
		for to, b := range d.Private {
			if private[to] == nil {
				private[to] = make(map[fl.NodeID][]byte)
			}
			private[to][m] = b
		}
	}
	setup, err := g.helper.Setup(anns, publics)
	if err != nil {
		tb.Fatal(err)
	}
	for _, m := range members {
		if err := g.parties[m].Accept(setup, private[m]); err != nil {
			tb.Fatal(err)
		}
	}
	return g
}

func TestName(t *testing.T) {
	if got := (plain.Scheme{}).Name(); got != "plain" || plain.Name != "plain" {
		t.Errorf("Name() = %q, want \"plain\"", got)
	}
	if !strings.Contains(plain.Warning, "protects nothing") {
		t.Errorf("Warning %q does not say that the mode protects nothing", plain.Warning)
	}
}

// TestFormat is a known-answer test of the protected-update layout.
func TestFormat(t *testing.T) {
	g := newGroup(t, "kat", 1, "b", "a")
	got, err := g.parties["b"].Protect(7, fl.Vector{1.5, -2}, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := "434c504c" + "01" + "05" + // magic, version, kind 5
		// session: SHA-256("cloister/protect/plain/v1/session\x00" ‖ u32 3 ‖ "kat" ‖ u32 1 ‖ u32 2 ‖ u32 1 ‖ "a" ‖ u32 1 ‖ "b")
		sessionHash(t, "kat", 1, "a", "b") +
		"0000000000000007" + // round
		"00000001" + // member: "b" is second in sorted order
		"00000002" + // count
		"4008000000000000" + // weight 3
		"3ff8000000000000" + "c000000000000000" // 1.5, -2
	if hex.EncodeToString(got) != want {
		t.Errorf("protected update:\n got %x\nwant %s", got, want)
	}
}

func sessionHash(t *testing.T, id string, threshold int, sorted ...string) string {
	t.Helper()
	b := []byte("cloister/protect/plain/v1/session\x00")
	b = binary.BigEndian.AppendUint32(b, uint32(len(id)))
	b = append(b, id...)
	b = binary.BigEndian.AppendUint32(b, uint32(threshold))
	b = binary.BigEndian.AppendUint32(b, uint32(len(sorted)))
	for _, m := range sorted {
		b = binary.BigEndian.AppendUint32(b, uint32(len(m)))
		b = append(b, m...)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// TestHostileCounts checks that declared counts are checked against the
// bytes that follow before anything is allocated.
func TestHostileCounts(t *testing.T) {
	g := newGroup(t, "counts", 1, "a", "b")
	valid, err := g.parties["a"].Protect(1, fl.Vector{1, 2, 3}, 1)
	if err != nil {
		t.Fatal(err)
	}
	const countAt = 6 + 32 + 8 + 4 // header, session, round, member
	for _, count := range []uint32{1 << 24, 1<<24 + 1, 1<<31 - 1, 1 << 31, 1<<32 - 1} {
		b := bytes.Clone(valid)
		binary.BigEndian.PutUint32(b[countAt:], count)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := g.helper.Aggregate(1, map[fl.NodeID][]byte{"a": b})
		runtime.ReadMemStats(&after)
		if !errors.Is(err, protect.ErrMalformed) {
			t.Errorf("Aggregate of an update declaring %d values in %d bytes: got %v, want ErrMalformed", count, len(b), err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<16 {
			t.Errorf("Aggregate of an update declaring %d values allocated %d bytes", count, n)
		}
	}
}

func TestRevealOrder(t *testing.T) {
	// A reveal is recorded before the share is returned, and a request that
	// is not for this party is neither recorded nor answered.
	g := newGroup(t, "order", 2, "a", "b", "c")
	r := fl.Round(1)
	in := make(map[fl.NodeID][]byte)
	for id, p := range g.parties {
		var err error
		if in[id], err = p.Protect(r, fl.Vector{1}, 1); err != nil {
			t.Fatal(err)
		}
	}
	agg, err := g.helper.Aggregate(r, in)
	if err != nil {
		t.Fatal(err)
	}
	req := protect.RevealRequest{Round: r, Aggregate: agg, Revealers: []fl.NodeID{"a", "b"}, Target: g.target.Public()}
	var l protect.MemLedger
	if _, err := g.parties["c"].Reveal(req, &l); !errors.Is(err, protect.ErrForeign) {
		t.Errorf("Reveal by a party not in the revealer set: got %v, want ErrForeign", err)
	}
	if err := l.Record(r, req.Digest()); err != nil {
		t.Errorf("the refused reveal was recorded: %v", err)
	}
}

// FuzzEntryPoints feeds arbitrary bytes to every entry point that reads
// them. None may panic, and every error wraps ErrMalformed or ErrForeign.
func FuzzEntryPoints(f *testing.F) {
	g := newGroup(f, "fuzz", 2, "a", "b", "c")
	r := fl.Round(3)
	in := make(map[fl.NodeID][]byte)
	for id, p := range g.parties {
		var err error
		if in[id], err = p.Protect(r, fl.Vector{1, -2, 3}, 4); err != nil {
			f.Fatal(err)
		}
	}
	agg, err := g.helper.Aggregate(r, in)
	if err != nil {
		f.Fatal(err)
	}
	req := protect.RevealRequest{Round: r, Aggregate: agg, Revealers: []fl.NodeID{"a", "b"}, Target: g.target.Public()}
	shares := make(map[fl.NodeID][]byte)
	for _, id := range req.Revealers {
		if shares[id], err = g.parties[id].Reveal(req, &protect.MemLedger{}); err != nil {
			f.Fatal(err)
		}
	}
	result, err := g.helper.Open(req, shares)
	if err != nil {
		f.Fatal(err)
	}
	state, _ := g.parties["a"].MarshalBinary()
	secret, _ := g.target.MarshalBinary()
	for _, b := range [][]byte{in["a"], agg, shares["a"], result, state, secret, req.Target, {}, []byte("CLPL\x01")} {
		f.Add(b)
	}
	s := plain.Scheme{}
	median, err := plain.Scheme{Rule: "median:f=1"}.NewHelper(g.sess)
	if err != nil {
		f.Fatal(err)
	}
	// The compressed updates' decoders (package compress, inside plain's
	// kind 12): a q8 and a top-k session of the same members.
	compressed := make(map[string]*group)
	for _, spec := range []string{"q8:2", "topk:0.5"} {
		c, _ := compress.Parse(spec)
		cg := newGroupOf(f, plain.Scheme{Compress: c}, "fuzz", 2, "a", "b", "c")
		b, err := cg.parties["a"].Protect(r, fl.Vector{1, -2, 3}, 4)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		compressed[spec] = cg
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		with := func(m map[fl.NodeID][]byte, id fl.NodeID) map[fl.NodeID][]byte {
			c := maps.Clone(m)
			c[id] = b
			return c
		}
		reqAgg, reqTarget := req, req
		reqAgg.Aggregate, reqTarget.Target = b, b
		calls := map[string]func() error{
			"Aggregate":         func() error { _, err := g.helper.Aggregate(r, with(in, "a")); return err },
			"Aggregate(median)": func() error { _, err := median.Aggregate(r, with(in, "a")); return err },
			"Check":             func() error { return protect.Check(median, r, "a", b) },
			"Check(q8)":         func() error { return protect.Check(compressed["q8:2"].helper, r, "a", b) },
			"Check(topk)":       func() error { return protect.Check(compressed["topk:0.5"].helper, r, "a", b) },
			"Reveal(aggregate)": func() error {
				_, err := g.parties["a"].Reveal(reqAgg, &protect.MemLedger{})
				return err
			},
			"Reveal(target)": func() error {
				_, err := g.parties["a"].Reveal(reqTarget, &protect.MemLedger{})
				return err
			},
			"Open(share)":     func() error { _, err := g.helper.Open(req, with(shares, "a")); return err },
			"Open(aggregate)": func() error { _, err := g.helper.Open(reqAgg, shares); return err },
			"Decrypt":         func() error { _, err := g.target.Decrypt(b); return err },
			"LoadParty":       func() error { _, err := s.LoadParty(g.sess, "a", b, rand.NewChaCha8([32]byte{})); return err },
			"LoadTarget":      func() error { _, err := s.LoadTarget(b); return err },
		}
		for name, call := range calls {
			if err := call(); err != nil && !errors.Is(err, protect.ErrMalformed) && !errors.Is(err, protect.ErrForeign) {
				t.Errorf("%s: %v wraps neither ErrMalformed nor ErrForeign", name, err)
			}
		}
	})
}
