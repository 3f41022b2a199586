package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/fl"
)

const ttl = 10 * time.Second

// TestLease walks a lease through its life: the first Acquire, a refused
// one, expiry, fencing of the old holder's writes, renewal, release, and a
// holder taking its own lease again.
func TestLease(t *testing.T) { forEachBackend(t, testLease) }

func testLease(t *testing.T, be backend) {
	db, loc := newDB(t, be)
	c := db.Coordinator(session)
	if _, err := c.Lease(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lease of a new session: %v", err)
	}
	// Without a lease, an unfenced view writes (a store without failover).
	if err := c.Save(ctx, CoordinatorBatch{State: []byte("unfenced")}); err != nil {
		t.Fatal(err)
	}
	a, err := c.Acquire(ctx, "host-a:/state", t0, ttl)
	if err != nil || a.Token != 1 || a.Holder != "host-a:/state" || !a.Expires.Equal(t0.Add(ttl)) || !a.Acquired.Equal(t0) {
		t.Fatalf("first Acquire = %+v, %v", a, err)
	}
	ca := db.Coordinator(session).Fenced(a.Token)
	if err := ca.Save(ctx, CoordinatorBatch{State: []byte("a1"), Commits: []Commit{testCommit(1, "by a")}}); err != nil {
		t.Fatalf("the holder's Save: %v", err)
	}
	if err := c.Save(ctx, CoordinatorBatch{State: []byte("unfenced again")}); !errors.Is(err, ErrFenced) {
		t.Errorf("an unfenced Save once a lease exists: %v, want ErrFenced", err)
	}

	// Another holder before expiry: refused, told who holds it until when.
	_, err = c.Acquire(ctx, "host-b:/state", t0.Add(ttl-time.Millisecond), ttl)
	var held *LeaseHeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrLeaseHeld) || held.Lease.Holder != "host-a:/state" || held.Lease.Token != 1 {
		t.Fatalf("Acquire by b before expiry: %v, want a LeaseHeldError naming a", err)
	}
	for _, want := range []string{"host-a:/state", "token 1", "2026-03-01T12:00:10.000Z", sid(session)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	// At expiry b takes it; a's writes are fenced and store nothing.
	b, err := c.Acquire(ctx, "host-b:/state", t0.Add(ttl), ttl)
	if err != nil || b.Token != 2 {
		t.Fatalf("Acquire by b at expiry = %+v, %v", b, err)
	}
	err = ca.Save(ctx, CoordinatorBatch{State: []byte("a2"), Rounds: []Round{testRound(2, Committed)}, Commits: []Commit{testCommit(2, "by a")}})
	if !errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), "host-b:/state") || !strings.Contains(err.Error(), "token 2") {
		t.Errorf("the old holder's Save: %v, want ErrFenced naming b and its token", err)
	}
	if _, err := ca.Renew(ctx, t0.Add(ttl), ttl); !errors.Is(err, ErrFenced) {
		t.Errorf("the old holder's Renew: %v, want ErrFenced", err)
	}
	if err := ca.Release(ctx); !errors.Is(err, ErrFenced) {
		t.Errorf("the old holder's Release: %v, want ErrFenced", err)
	}
	cb := c.Fenced(b.Token)
	if st, err := cb.State(ctx); err != nil || string(st) != "a1" {
		t.Errorf("State = %q, %v; want a's last accepted write", st, err)
	}
	if _, err := cb.Commit(ctx, 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("the fenced commit of round 2 is stored: %v", err)
	}
	if err := cb.Save(ctx, CoordinatorBatch{State: []byte("b2"), Commits: []Commit{testCommit(2, "by b")}}); err != nil {
		t.Fatalf("the new holder's Save: %v", err)
	}

	// Renewal keeps a out; a lease that expired but was not taken renews.
	if r, err := cb.Renew(ctx, t0.Add(3*ttl), ttl); err != nil || r.Token != 2 || !r.Expires.Equal(t0.Add(4*ttl)) {
		t.Errorf("Renew after expiry = %+v, %v", r, err)
	}
	if _, err := c.Acquire(ctx, "host-a:/state", t0.Add(4*ttl-time.Millisecond), ttl); !errors.Is(err, ErrLeaseHeld) {
		t.Errorf("Acquire by a while b's renewed lease runs: %v", err)
	}
	// Release: a takes it at once.
	if err := cb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	a3, err := c.Acquire(ctx, "host-a:/state", t0.Add(3*ttl), ttl)
	if err != nil || a3.Token != 3 {
		t.Fatalf("Acquire after Release = %+v, %v", a3, err)
	}
	// The same holder again, unexpired: a new token fences its earlier one.
	a4, err := c.Acquire(ctx, "host-a:/state", t0.Add(3*ttl+time.Second), ttl)
	if err != nil || a4.Token != 4 {
		t.Fatalf("Acquire by the holder itself = %+v, %v", a4, err)
	}
	if err := c.Fenced(a3.Token).Save(ctx, CoordinatorBatch{State: []byte("a3")}); !errors.Is(err, ErrFenced) {
		t.Errorf("Save with the holder's earlier token: %v, want ErrFenced", err)
	}

	// The lease survives a reopen.
	db = reopen(t, db, loc)
	if l, err := db.Coordinator(session).Lease(ctx); err != nil || l.Token != 4 || l.Holder != "host-a:/state" || !l.Expires.Equal(t0.Add(4*ttl+time.Second)) {
		t.Errorf("Lease after reopen = %+v, %v", l, err)
	}
	if cm, err := db.Coordinator(session).Commit(ctx, 2); err != nil || string(cm.Record) != "by b" {
		t.Errorf("Commit(2) = %q, %v; want b's", cm.Record, err)
	}

	for _, bad := range []struct {
		holder string
		ttl    time.Duration
	}{{"", ttl}, {strings.Repeat("h", maxHolder+1), ttl}, {"h", 0}} {
		if _, err := db.Coordinator(session).Acquire(ctx, bad.holder, t0, bad.ttl); err == nil || errors.Is(err, ErrLeaseHeld) {
			t.Errorf("Acquire(%d-byte holder, %v): %v", len(bad.holder), bad.ttl, err)
		}
	}
	if _, err := db.Coordinator([]byte("other")).Acquire(ctx, "h", t0, ttl); !errors.Is(err, ErrNotFound) {
		t.Errorf("Acquire for an unknown session: %v", err)
	}
}

// TestLeaseRace has two handles on one store (two processes) race for an
// expired lead: exactly one wins each time.
func TestLeaseRace(t *testing.T) { forEachBackend(t, testLeaseRace) }

func testLeaseRace(t *testing.T, be backend) {
	db, loc := newDB(t, be)
	dbs := []*DB{db, openAt(t, loc)}
	now := t0
	for term := uint64(1); term <= 10; term++ {
		var wg sync.WaitGroup
		got := make([]Lease, 4)
		errs := make([]error, 4)
		for i := range got {
			wg.Go(func() {
				got[i], errs[i] = dbs[i%2].Coordinator(session).Acquire(ctx, fmt.Sprintf("holder-%d", i), now, ttl)
			})
		}
		wg.Wait()
		winners := 0
		for i, err := range errs {
			switch {
			case err == nil:
				winners++
				if got[i].Token != term {
					t.Errorf("term %d: holder-%d got token %d", term, i, got[i].Token)
				}
			case !errors.Is(err, ErrLeaseHeld):
				t.Fatalf("term %d: holder-%d: %v", term, i, err)
			}
		}
		if winners != 1 {
			t.Fatalf("term %d: %d holders took the lead", term, winners)
		}
		now = now.Add(ttl)
	}
}

// TestFencedCommitRace is failover at the store: coordinator A commits
// round after round under its token while B, on another handle (another
// process), takes the expired lead, resumes from the state it reads, and
// commits the next round. Every commit A's Save reported is in the state B
// resumed from (no write of A lands after B's takeover), every later one of
// A's is refused with ErrFenced and stores nothing, and no round is
// committed twice.
func TestFencedCommitRace(t *testing.T) { forEachBackend(t, testFencedCommitRace) }

func testFencedCommitRace(t *testing.T, be backend) {
	for trial := range 8 {
		db, loc := newDB(t, be)
		dbB := openAt(t, loc)
		a, err := db.Coordinator(session).Acquire(ctx, "a", t0, ttl)
		if err != nil {
			t.Fatal(err)
		}
		ca := db.Coordinator(session).Fenced(a.Token)
		var ok []fl.Round // A's commits that Save reported
		var aErr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			for r := fl.Round(1); ; r++ {
				err := ca.Save(ctx, CoordinatorBatch{State: fmt.Appendf(nil, "%d", r),
					Rounds: []Round{testRound(r, Committed)}, Commits: []Commit{testCommit(r, "a")}})
				if err != nil {
					aErr = err
					return
				}
				ok = append(ok, r)
				time.Sleep(time.Millisecond) // a round's worth of work, short: let B in
			}
		}()
		time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
		b, err := dbB.Coordinator(session).Acquire(ctx, "b", t0.Add(ttl), ttl)
		if err != nil {
			t.Fatal(err)
		}
		cb := dbB.Coordinator(session).Fenced(b.Token)
		st, err := cb.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var resumed fl.Round
		if st != nil {
			fmt.Sscan(string(st), &resumed)
		}
		// B commits the round after the one it resumed from; committing
		// that one again is refused.
		if resumed > 0 {
			err := cb.Save(ctx, CoordinatorBatch{Commits: []Commit{testCommit(resumed, "b")}})
			if !errors.Is(err, ErrCommitted) {
				t.Fatalf("trial %d: B committing round %d again: %v, want ErrCommitted", trial, resumed, err)
			}
		}
		if err := cb.Save(ctx, CoordinatorBatch{State: fmt.Appendf(nil, "%d", resumed+1),
			Rounds: []Round{testRound(resumed+1, Committed)}, Commits: []Commit{testCommit(resumed+1, "b")}}); err != nil {
			t.Fatalf("trial %d: B's commit of round %d: %v", trial, resumed+1, err)
		}
		<-done
		if !errors.Is(aErr, ErrFenced) {
			t.Fatalf("trial %d: A stopped with %v, want ErrFenced", trial, aErr)
		}
		if n := fl.Round(len(ok)); n != resumed {
			t.Fatalf("trial %d: A's Save reported %d commits, B resumed from round %d", trial, n, resumed)
		}
		for r := fl.Round(1); r <= resumed+2; r++ {
			cm, err := cb.Commit(ctx, r)
			want := map[bool]string{true: "a", false: "b"}[r <= resumed]
			switch {
			case r == resumed+2 && !errors.Is(err, ErrNotFound):
				t.Errorf("trial %d: round %d: %q, %v; want no commit (A's fenced write)", trial, r, cm.Record, err)
			case r <= resumed+1 && (err != nil || string(cm.Record) != want):
				t.Errorf("trial %d: round %d committed by %q, %v; want %s", trial, r, cm.Record, err, want)
			}
		}
		t.Logf("trial %d: A committed rounds 1-%d, B took over and committed %d", trial, resumed, resumed+1)
	}
}
