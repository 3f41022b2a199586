package psi

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/gtank/ristretto255"

	"github.com/cloisterfl/cloister/relay/relaytest"
)

func newKey(t testing.TB, seed uint64) *Key {
	t.Helper()
	r := mrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	k, err := NewKey([]byte("test session"), r)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// plainIntersect is the reference: the sorted IDs in every set.
func plainIntersect(sets ...[]string) []string {
	count := map[string]int{}
	for _, s := range sets {
		for _, id := range s {
			count[id]++
		}
	}
	var out []string
	for id, c := range count {
		if c == len(sets) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// randomSets draws parties' ID sets from a shared pool, each keeping an ID
// with probability keep, shuffled.
func randomSets(r *mrand.Rand, parties, pool int, keep float64) [][]string {
	sets := make([][]string, parties)
	for i := range pool {
		id := fmt.Sprintf("id-%06d", i)
		for p := range sets {
			if r.Float64() < keep {
				sets[p] = append(sets[p], id)
			}
		}
	}
	for _, s := range sets {
		r.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	}
	return sets
}

func TestRunMatchesPlainIntersection(t *testing.T) {
	r := mrand.New(mrand.NewPCG(1, 2))
	for _, tc := range []struct{ parties, pool, batch, workers int }{
		{2, 500, 0, 1}, {2, 500, 7, 3}, {3, 800, 64, 2}, {4, 300, 1000, 0},
	} {
		t.Run(fmt.Sprintf("%dparties-batch%d", tc.parties, tc.batch), func(t *testing.T) {
			sets := randomSets(r, tc.parties, tc.pool, 0.7)
			var ps []Party
			for i, s := range sets {
				ps = append(ps, Party{Name: fmt.Sprintf("p%d", i), IDs: s, Key: newKey(t, uint64(i+1))})
			}
			res, err := Run(ps[0], ps[1:], Options{Batch: tc.batch, Workers: tc.workers})
			if err != nil {
				t.Fatal(err)
			}
			want := plainIntersect(sets...)
			if !slices.Equal(res.Shared, want) {
				t.Fatalf("intersection of %d, want %d", len(res.Shared), len(want))
			}
			for p, rows := range res.Rows {
				for i, row := range rows {
					if sets[p][row] != want[i] {
						t.Fatalf("party %d row %d is %q, want %q", p, i, sets[p][row], want[i])
					}
				}
			}
			if res.Bytes <= 0 {
				t.Fatal("no bytes counted")
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	a, b := newKey(t, 1), newKey(t, 2)
	cases := []struct {
		name string
		hub  []string
		f    []string
		want error
	}{
		{"duplicate at hub", []string{"x", "y", "x"}, []string{"x"}, ErrDuplicate},
		{"duplicate at party", []string{"x"}, []string{"y", "y"}, ErrDuplicate},
		{"empty", []string{"x"}, nil, ErrEmpty},
		{"no overlap", []string{"x", "y"}, []string{"z"}, ErrNoOverlap},
	}
	for _, tc := range cases {
		_, err := Run(Party{"hub", tc.hub, a}, []Party{{"f", tc.f, b}}, Options{})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// Pairwise overlaps that have nothing in common among all three.
	c := newKey(t, 3)
	_, err := Run(Party{"hub", []string{"x", "y"}, a}, []Party{{"f", []string{"x"}, b}, {"g", []string{"y"}, c}}, Options{})
	if !errors.Is(err, ErrNoOverlap) {
		t.Errorf("three parties without a common ID: %v", err)
	}
}

func TestReblindRefusesBadPoints(t *testing.T) {
	k := newKey(t, 1)
	good := k.Blind([]string{"a", "b"}, 1)
	if _, err := k.Reblind(good, 0, 1); err != nil {
		t.Fatal(err)
	}
	nonCanonical := bytes.Repeat([]byte{0xff}, PointSize) // above the field prime
	identity := ristretto255.NewIdentityElement().Bytes()
	for name, in := range map[string][]byte{
		"short":         good[:40],
		"not canonical": append(slices.Clone(good[:PointSize]), nonCanonical...),
		"identity":      append(slices.Clone(good[:PointSize]), identity...),
		"negative":      append(slices.Clone(good[:PointSize]), append([]byte{1}, make([]byte, 31)...)...),
	} {
		_, err := k.Reblind(in, 10, 1)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
		if name != "short" && !bytes.Contains([]byte(err.Error()), []byte("point 11")) {
			t.Errorf("%s: %v does not name point 11", name, err)
		}
	}
}

func TestBlindingCommutes(t *testing.T) {
	a, b := newKey(t, 1), newKey(t, 2)
	ids := []string{"alice", "bob"}
	ab, err := b.Reblind(a.Blind(ids, 1), 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	ba, err := a.Reblind(b.Blind(ids, 2), 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ab, ba) {
		t.Fatal("k_b·k_a·H(x) != k_a·k_b·H(x)")
	}
	// Another session maps the same IDs elsewhere.
	other, _ := NewKey([]byte("another session"), mrand.NewChaCha8([32]byte{1}))
	if bytes.Equal(other.Blind(ids, 1), a.Blind(ids, 1)) {
		t.Fatal("the session does not change the points")
	}
}

// TestHashVector pins the hash to the group, our format.
func TestHashVector(t *testing.T) {
	got := fmt.Sprintf("%x", Hash([]byte("s"), "patient-17").Bytes())
	const want = "d2a6de9eb3eecd83aa5ca6e76f920ea098b0da1f7dccdbb6aed7ea8fa09ee91e"
	if got != want {
		t.Fatalf("H = %s, want %s (a change of the hash to the group breaks every party of another version)", got, want)
	}
}

func TestNewKey(t *testing.T) {
	if _, err := NewKey(nil, rand.Reader); err == nil {
		t.Error("empty session accepted")
	}
	if _, err := NewKey([]byte("s"), bytes.NewReader(make([]byte, 10))); err == nil {
		t.Error("short random source accepted")
	}
	if _, err := NewKey([]byte("s"), bytes.NewReader(make([]byte, 64))); err == nil {
		t.Error("zero scalar accepted")
	}
}

func FuzzReblind(f *testing.F) {
	k := newKey(f, 1)
	f.Add(k.Blind([]string{"a", "b"}, 1))
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := k.Reblind(in, 0, 1)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(out) != len(in) {
			t.Fatalf("%d bytes in, %d out", len(in), len(out))
		}
	})
}

var benchN = flag.Int("psi.n", 100_000, "IDs per party in BenchmarkPSI (50% overlap)")

// BenchmarkPSI runs two parties of -psi.n IDs each, half shared, and
// measures the machine's floor in the same run: the 4n variable-base
// scalar multiplications the protocol cannot avoid (each party blinds its
// own IDs and the other's), on the same workers. It reports the run's
// time, the floor's, their ratio (floor/run, 1 is the floor) and the
// bytes the parties exchanged.
// BenchmarkPSI runs Run, every message passed in memory.
func BenchmarkPSI(b *testing.B) {
	benchPSI(b, func(hub Party, f Party) (*Result, error) { return Run(hub, []Party{f}, Options{}) })
}

// BenchmarkPSIRelay runs the hub and the other party as Hub and Member,
// concurrently, over relay sessions in memory: every message sealed and
// opened (AES-GCM) as between two processes, without the sockets.
func BenchmarkPSIRelay(b *testing.B) {
	benchPSI(b, func(hub Party, f Party) (*Result, error) {
		ss := relaytest.Sessions(b, "hub", "f")
		ctx := context.Background()
		var mr *MemberResult
		var merr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			mr, merr = Member(ctx, ss["f"], f, "hub", Options{})
		}()
		res, err := Hub(ctx, ss["hub"], hub, []string{"f"}, Options{})
		<-done
		if err == nil {
			err = merr
		}
		if err != nil {
			return nil, err
		}
		if !slices.Equal(mr.Rows, res.Rows[1]) {
			return nil, errors.New("the member's rows are not the hub's")
		}
		sent, _ := ss["hub"].Bytes()
		fsent, _ := ss["f"].Bytes()
		res.Bytes = sent + fsent // on the wire, sealed
		return res, nil
	})
}

func benchPSI(b *testing.B, runPSI func(hub, f Party) (*Result, error)) {
	n := *benchN
	hubIDs := make([]string, n)
	fIDs := make([]string, n)
	for i := range n {
		hubIDs[i] = fmt.Sprintf("person-%09d", i)
		fIDs[i] = fmt.Sprintf("person-%09d", i+n/2)
	}
	mrand.New(mrand.NewPCG(1, 1)).Shuffle(n, func(i, j int) { fIDs[i], fIDs[j] = fIDs[j], fIDs[i] })
	// floorTime times m scalar multiplications on the same workers.
	k, p := newKey(b, 9), Hash([]byte("s"), "x")
	floorTime := func(m int) time.Duration {
		start := time.Now()
		parallel(m, 0, func(lo, hi int) error {
			e := ristretto255.NewElement()
			for i := lo; i < hi; i++ {
				e.ScalarMult(&k.k, p)
			}
			return nil
		})
		return time.Since(start)
	}
	for b.Loop() {
		// The floor, 4n multiplications: half before the run and half
		// after, so that a change of load on a shared machine hits both.
		floor := floorTime(2 * n)
		start := time.Now()
		res, err := runPSI(Party{"hub", hubIDs, newKey(b, 1)}, Party{"f", fIDs, newKey(b, 2)})
		if err != nil {
			b.Fatal(err)
		}
		run := time.Since(start)
		floor += floorTime(2 * n)
		if len(res.Shared) != n-n/2 {
			b.Fatalf("intersection of %d, want %d", len(res.Shared), n-n/2)
		}
		for i, id := range res.Shared { // exactly the overlap, sorted, aligned
			if want := fmt.Sprintf("person-%09d", i+n/2); id != want || hubIDs[res.Rows[0][i]] != id || fIDs[res.Rows[1][i]] != id {
				b.Fatalf("shared ID %d is %q, want %q", i, id, want)
			}
		}
		b.ReportMetric(run.Seconds(), "run-s")
		b.ReportMetric(floor.Seconds(), "floor-s")
		b.ReportMetric(floor.Seconds()/run.Seconds(), "floor/run")
		b.ReportMetric(float64(res.Bytes), "bytes")
	}
}
