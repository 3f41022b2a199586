package psi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/relay"
	"github.com/cloisterfl/cloister/relay/relaytest"
)

// netTimeout bounds every networked run, so that a protocol bug (a party
// waiting for a message that never comes) fails the test instead of
// hanging it. Generous: the CPU may be shared.
const netTimeout = 30 * time.Second

// netOutcome is what each party of a networked run returned.
type netOutcome struct {
	hub        *Result
	hubErr     error
	members    []*MemberResult
	memberErrs []error
}

// netRun runs Hub for ps[0] and Member for each of ps[1:], each in its own
// goroutine over its own relay session.
func netRun(t *testing.T, ps []Party, hubOpts, memberOpts Options) netOutcome {
	t.Helper()
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	ss := relaytest.Sessions(t, names...)
	ctx, cancel := context.WithTimeout(t.Context(), netTimeout)
	defer cancel()
	out := netOutcome{members: make([]*MemberResult, len(ps)-1), memberErrs: make([]error, len(ps)-1)}
	var wg sync.WaitGroup
	wg.Go(func() { out.hub, out.hubErr = Hub(ctx, ss[names[0]], ps[0], names[1:], hubOpts) })
	for j, p := range ps[1:] {
		wg.Go(func() { out.members[j], out.memberErrs[j] = Member(ctx, ss[p.Name], p, names[0], memberOpts) })
	}
	wg.Wait()
	return out
}

func TestNetMatchesRun(t *testing.T) {
	r := mrand.New(mrand.NewPCG(3, 4))
	for _, tc := range []struct{ parties, pool, hubBatch, memberBatch, workers int }{
		{2, 3000, 100, 100, 2},
		{3, 2500, 100, 37, 1},
		{3, 300, 0, 0, 0},
	} {
		t.Run(fmt.Sprintf("%dparties-batch%d-%d", tc.parties, tc.hubBatch, tc.memberBatch), func(t *testing.T) {
			sets := randomSets(r, tc.parties, tc.pool, 0.7)
			var ps []Party
			for i, s := range sets {
				ps = append(ps, Party{Name: fmt.Sprintf("p%d", i), IDs: s, Key: newKey(t, uint64(i+1))})
			}
			want, err := Run(ps[0], ps[1:], Options{Batch: tc.hubBatch, Workers: tc.workers})
			if err != nil {
				t.Fatal(err)
			}
			got := netRun(t, ps, Options{Batch: tc.hubBatch, Workers: tc.workers}, Options{Batch: tc.memberBatch, Workers: tc.workers})
			if got.hubErr != nil {
				t.Fatalf("hub: %v", got.hubErr)
			}
			if !slices.Equal(got.hub.Shared, want.Shared) {
				t.Fatalf("hub: intersection of %d, Run's of %d", len(got.hub.Shared), len(want.Shared))
			}
			if !slices.EqualFunc(got.hub.Rows, want.Rows, slices.Equal) {
				t.Fatal("hub: rows differ from Run's")
			}
			k, shared := int64(len(ps)-1), int64(len(want.Shared))
			if wantBytes := k * (8 + PointSize*int64(len(ps[0].IDs)) + 4*shared); got.hub.Bytes != wantBytes {
				t.Errorf("hub sent %d bytes, want %d", got.hub.Bytes, wantBytes)
			}
			for j, m := range got.members {
				if err := got.memberErrs[j]; err != nil {
					t.Fatalf("member %d: %v", j+1, err)
				}
				if !slices.Equal(m.Rows, want.Rows[j+1]) {
					t.Fatalf("member %d: rows differ from Run's", j+1)
				}
				if wantBytes := 8 + PointSize*int64(len(ps[0].IDs)+len(ps[j+1].IDs)); m.Bytes != wantBytes {
					t.Errorf("member %d sent %d bytes, want %d", j+1, m.Bytes, wantBytes)
				}
			}
		})
	}
}

// ids returns n IDs from first on.
func ids(first, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("id-%06d", first+i)
	}
	return out
}

func TestNetNoOverlap(t *testing.T) {
	a, b, c := newKey(t, 1), newKey(t, 2), newKey(t, 3)
	for _, tc := range []struct {
		name    string
		parties []Party
		batch   int
	}{
		{"disjoint", []Party{{"hub", ids(0, 300), a}, {"f", ids(300, 300), b}}, 50},
		// f shares nothing with the hub; g, read after f and many
		// batches long, waits for acks and must be stopped.
		{"first party shares nothing", []Party{{"hub", ids(0, 300), a}, {"f", ids(300, 100), b}, {"g", ids(0, 300), c}}, 10},
		// Pairwise overlaps, but nothing common to all three.
		{"nothing common to all", []Party{{"hub", ids(0, 2), a}, {"f", ids(0, 1), b}, {"g", ids(1, 1), c}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Batch: tc.batch}
			got := netRun(t, tc.parties, o, o)
			if !errors.Is(got.hubErr, ErrNoOverlap) {
				t.Errorf("hub: %v, want ErrNoOverlap", got.hubErr)
			}
			for j, err := range got.memberErrs {
				if !errors.Is(err, ErrNoOverlap) {
					t.Errorf("member %q: %v, want ErrNoOverlap", tc.parties[j+1].Name, err)
				}
			}
		})
	}
}

// sizesOf encodes sizes as a party sends them.
func sizesOf(count, batch uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, count), batch)
}

// hostileMember plays member "mallory" against a real hub over s: it
// sends the given sizes, returns the hub's points blinded by key (passed
// through reply, which may spoil them), then sends the given batches of
// points. It stops at the first error, the hub's having ended the run.
func hostileMember(ctx context.Context, s *relay.Session, key *Key, sz []byte, reply func(b int, double []byte) []byte, points [][]byte) {
	if s.Send(ctx, "hub", tagSizes, 0, sz) != nil {
		return
	}
	b, err := s.Recv(ctx, "hub", tagSizes, 0)
	if err != nil {
		return
	}
	hub, err := parseSizes(b)
	if err != nil {
		return
	}
	for i := range hub.batches() {
		single, err := s.Recv(ctx, "hub", tagHub, uint64(i))
		if err != nil {
			return
		}
		lo, _ := hub.span(i)
		double, err := key.Reblind(single, lo, 1)
		if err != nil {
			return
		}
		if s.Send(ctx, "hub", tagReblinded, uint64(i), reply(i, double)) != nil {
			return
		}
	}
	for i, p := range points {
		if s.Send(ctx, "hub", tagPoints, uint64(i), p) != nil {
			return
		}
	}
}

func TestNetHostileMember(t *testing.T) {
	hubKey, key := newKey(t, 1), newKey(t, 2)
	honest := func(_ int, d []byte) []byte { return d }
	blind := func(first, n int) []byte { return key.Blind(ids(first, n), 1) }
	for _, tc := range []struct {
		name   string
		sizes  []byte
		reply  func(b int, double []byte) []byte
		points [][]byte
	}{
		{"points not in the group", sizesOf(200, 100), honest, [][]byte{bytes.Repeat([]byte{0xff}, 100*PointSize), blind(100, 100)}},
		{"a good batch, then a bad point", sizesOf(200, 100), honest, [][]byte{blind(0, 100), append(blind(100, 99), make([]byte, PointSize)...)}},
		{"a short reblinded batch", sizesOf(200, 100), func(b int, d []byte) []byte {
			if b == 1 {
				return d[:len(d)-PointSize]
			}
			return d
		}, nil},
		{"a long batch of points", sizesOf(200, 100), honest, [][]byte{blind(0, 101)}},
		{"a ragged batch of points", sizesOf(200, 100), honest, [][]byte{blind(0, 100)[:100*PointSize-1]}},
		{"no IDs", sizesOf(0, 1), honest, nil},
		{"2^31 IDs", sizesOf(1<<31, 100), honest, nil},
		{"a batch larger than the set", sizesOf(10, 11), honest, nil},
		{"a batch of 0", sizesOf(10, 0), honest, nil},
		{"short sizes", sizesOf(10, 10)[:7], honest, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss := relaytest.Sessions(t, "hub", "mallory")
			ctx, cancel := context.WithTimeout(t.Context(), netTimeout)
			defer cancel()
			var wg sync.WaitGroup
			defer wg.Wait()
			wg.Go(func() { hostileMember(ctx, ss["mallory"], key, tc.sizes, tc.reply, tc.points) })
			_, err := Hub(ctx, ss["hub"], Party{"hub", ids(0, 250), hubKey}, []string{"mallory"}, Options{Batch: 100})
			cancel() // end the fake member, wherever it waits
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("hub: %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), `"mallory"`) {
				t.Errorf("hub: %v does not name the member", err)
			}
			t.Log(err)
		})
	}
}

// hostileHub plays hub "mallory" against a real member over s, with the
// given sizes (its own set being ids(0, 100) in batches of 20), hub
// points passed through spoil, acks of the given body, and the given rows.
// It stops at the first error, the member's having ended the run.
func hostileHub(ctx context.Context, s *relay.Session, key *Key, sz []byte, spoil func(b int, single []byte) []byte, ack, rows []byte) {
	if s.Send(ctx, "f", tagSizes, 0, sz) != nil {
		return
	}
	b, err := s.Recv(ctx, "f", tagSizes, 0)
	if err != nil {
		return
	}
	member, err := parseSizes(b)
	if err != nil {
		return
	}
	own := sizes{count: 100, batch: 20}
	for i := range own.batches() {
		lo, hi := own.span(i)
		if s.Send(ctx, "f", tagHub, uint64(i), spoil(i, key.Blind(ids(lo, hi-lo), 1))) != nil {
			return
		}
	}
	for i := range own.batches() {
		if _, err := s.Recv(ctx, "f", tagReblinded, uint64(i)); err != nil {
			return
		}
	}
	n := member.batches()
	for i := range n {
		if _, err := s.Recv(ctx, "f", tagPoints, uint64(i)); err != nil {
			return
		}
		if i+window < n && s.Send(ctx, "f", tagAck, uint64(i), ack) != nil {
			return
		}
	}
	s.Send(ctx, "f", tagRows, 0, rows)
}

func TestNetHostileHub(t *testing.T) {
	hubKey, key := newKey(t, 1), newKey(t, 2)
	honest := func(_ int, p []byte) []byte { return p }
	rows := func(rs ...uint32) []byte {
		var b []byte
		for _, r := range rs {
			b = binary.BigEndian.AppendUint32(b, r)
		}
		return b
	}
	good := sizesOf(100, 20)
	for _, tc := range []struct {
		name  string
		sizes []byte
		spoil func(b int, single []byte) []byte
		ack   []byte
		rows  []byte
	}{
		{"a row past the set", good, honest, nil, rows(0, 150)},
		{"a repeated row", good, honest, nil, rows(3, 7, 3)},
		{"more rows than IDs", good, honest, nil, make([]byte, 4*151)},
		{"ragged rows", good, honest, nil, rows(1, 2)[:5]},
		{"hub points not in the group", good, func(b int, p []byte) []byte {
			if b == 2 {
				copy(p[PointSize:], bytes.Repeat([]byte{0xff}, PointSize))
			}
			return p
		}, nil, rows(1)},
		{"a short hub batch", good, func(b int, p []byte) []byte { return p[:len(p)-PointSize] }, nil, rows(1)},
		{"hub sizes out of range", sizesOf(1<<31, 20), honest, nil, rows(1)},
		{"a bad ack", good, honest, []byte{7}, rows(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss := relaytest.Sessions(t, "mallory", "f")
			ctx, cancel := context.WithTimeout(t.Context(), netTimeout)
			defer cancel()
			var wg sync.WaitGroup
			defer wg.Wait()
			wg.Go(func() { hostileHub(ctx, ss["mallory"], hubKey, tc.sizes, tc.spoil, tc.ack, tc.rows) })
			_, err := Member(ctx, ss["f"], Party{"f", ids(50, 150), key}, "mallory", Options{Batch: 20})
			cancel() // end the fake hub, wherever it waits
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("member: %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), `"mallory"`) {
				t.Errorf("member: %v does not name the hub", err)
			}
			t.Log(err)
		})
	}
}

func TestNetArguments(t *testing.T) {
	ss := relaytest.Sessions(t, "hub", "f")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	hub, f := Party{"hub", ids(0, 10), newKey(t, 1)}, Party{"f", ids(0, 10), newKey(t, 2)}
	if _, err := Hub(ctx, ss["hub"], hub, nil, Options{}); err == nil {
		t.Error("a hub without other parties")
	}
	if _, err := Hub(ctx, ss["hub"], hub, []string{"f", "hub"}, Options{}); err == nil {
		t.Error("the hub among the other parties")
	}
	if _, err := Member(ctx, ss["f"], f, "f", Options{}); err == nil {
		t.Error("a party its own hub")
	}
	if _, err := Member(ctx, ss["f"], Party{"f", []string{"x", "x"}, f.Key}, "hub", Options{}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("duplicate IDs: %v", err)
	}
	// A hub that never answers: the member gives up when ctx ends.
	if _, err := Member(ctx, ss["f"], f, "hub", Options{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a silent hub: %v, want the context's deadline", err)
	}
}

func FuzzParseSizes(f *testing.F) {
	f.Add([]byte{0, 0, 0, 10, 0, 0, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSizes(b)
		if err != nil {
			return
		}
		if got, err := parseSizes(s.encode()); err != nil || got != s {
			t.Fatalf("%+v does not survive its encoding: %+v %v", s, got, err)
		}
	})
}

func FuzzParseRows(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 3}, uint16(10))
	f.Fuzz(func(t *testing.T, b []byte, count uint16) {
		if count == 0 {
			return
		}
		rows, err := parseRows(b, int(count))
		if err != nil {
			return
		}
		seen := map[int]bool{}
		for _, r := range rows {
			if r < 0 || r >= int(count) || seen[r] {
				t.Fatalf("row %d accepted for %d IDs (or twice)", r, count)
			}
			seen[r] = true
		}
	})
}
