package store

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"math"
	mrand "math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
)

func testKey(t *testing.T, seed byte) *Key {
	t.Helper()
	k, err := NewKey(bytes.Repeat([]byte{seed}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestNodeRestart(t *testing.T) { forEachBackend(t, testNodeRestart) }

func testNodeRestart(t *testing.T, be backend) {
	db, path := newDB(t, be)
	key := testKey(t, 1)
	n := db.Node(session, key)
	if b, err := n.Load(ctx); err != nil || !reflect.DeepEqual(b, NodeBatch{}) {
		t.Fatalf("Load of a new session = %+v, %v", b, err)
	}
	want := NodeBatch{State: []byte("state 1"), Keys: &Keys{Party: []byte("party"), GroupKey: []byte("group key"), Target: []byte("target")}, Epoch: 2,
		Model: &Model{Round: 3, Sealed: []byte("sealed model 3")}}
	if err := n.Save(ctx, want); err != nil {
		t.Fatal(err)
	}
	// Nil fields leave the stored values alone.
	if err := n.Save(ctx, NodeBatch{State: []byte("state 2")}); err != nil {
		t.Fatal(err)
	}
	want.State = []byte("state 2")
	want.Model.Digest = sha256.Sum256(want.Model.Sealed)

	db = reopen(t, db, path)
	got, err := db.Node(session, key).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load =\n%+v\nwant\n%+v", got, want)
	}
}

func TestNodeModelNotOlder(t *testing.T) { forEachBackend(t, testNodeModelNotOlder) }

func testNodeModelNotOlder(t *testing.T, be backend) {
	db, _ := newDB(t, be)
	n := db.Node(session, testKey(t, 1))
	m5 := &Model{Round: 5, Sealed: []byte("m5")}
	if err := n.Save(ctx, NodeBatch{Model: m5}); err != nil {
		t.Fatal(err)
	}
	if err := n.Save(ctx, NodeBatch{State: []byte("s"), Model: &Model{Round: 4, Sealed: []byte("m4")}}); err == nil ||
		!strings.Contains(err.Error(), "older") {
		t.Errorf("saving an older model: %v", err)
	}
	if err := n.Save(ctx, NodeBatch{Model: &Model{Round: 5, Sealed: []byte("other")}}); !errors.Is(err, ErrExists) {
		t.Errorf("another model for the same round: %v, want ErrExists", err)
	}
	if err := n.Save(ctx, NodeBatch{Model: m5}); err != nil {
		t.Errorf("saving the same model again: %v", err)
	}
	b, err := n.Load(ctx)
	if err != nil || b.State != nil || b.Model.Round != 5 || string(b.Model.Sealed) != "m5" {
		t.Errorf("Load = %+v, %v: the failed batches changed something", b, err)
	}
	// The same round re-sealed under a new group key replaces it.
	if err := n.Save(ctx, NodeBatch{Model: &Model{Round: 5, Sealed: []byte("m5 resealed")}, Resealed: true}); err != nil {
		t.Fatalf("saving the re-sealed model: %v", err)
	}
	if err := n.Save(ctx, NodeBatch{Model: &Model{Round: 4, Sealed: []byte("m4")}, Resealed: true}); err == nil {
		t.Error("Resealed saved an older model")
	}
	if b, err = n.Load(ctx); err != nil || b.Model.Round != 5 || string(b.Model.Sealed) != "m5 resealed" {
		t.Errorf("Load after the re-seal = %+v, %v", b, err)
	}
}

func TestLedgerAcrossReopen(t *testing.T) { forEachBackend(t, testLedgerAcrossReopen) }

func testLedgerAcrossReopen(t *testing.T, be backend) {
	db, path := newDB(t, be)
	d1, d2 := [32]byte{1}, [32]byte{2}
	if err := db.Node(session, nil).Record(3, d1); err != nil {
		t.Fatal(err)
	}
	for _, d := range [][32]byte{d1, d2} {
		db = reopen(t, db, path)
		n := db.Node(session, nil)
		err := n.Record(3, d)
		if !errors.Is(err, ErrRevealed) || !errors.Is(err, protect.ErrRevealed) {
			t.Fatalf("second reveal of round 3 (digest %x) after reopen: %v, want ErrRevealed", d[:1], err)
		}
		if msg := err.Error(); !strings.Contains(msg, "round 3") || !strings.Contains(msg, "010000000000") {
			t.Errorf("error %q names neither the round nor the recorded digest", msg)
		}
	}
	n := db.Node(session, nil)
	if got, err := n.Revealed(ctx, 3); err != nil || got != d1 {
		t.Errorf("Revealed(3) = %x, %v; want the first digest", got[:1], err)
	}
	if _, err := n.Revealed(ctx, 4); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revealed(4): %v", err)
	}
	if err := n.Record(4, d2); err != nil {
		t.Errorf("reveal of round 4: %v", err)
	}
	// Another session has its own rounds.
	other := []byte("session-2")
	if err := db.CreateSession(ctx, Session{ID: other, Created: t0}); err != nil {
		t.Fatal(err)
	}
	if err := db.Node(other, nil).Record(3, d2); err != nil {
		t.Errorf("round 3 of another session: %v", err)
	}
	if err := n.Record(math.MaxUint64, d1); err == nil || errors.Is(err, ErrRevealed) {
		t.Errorf("round 2^64-1: %v", err)
	}
}

// TestLedgerConcurrent races reveals of the same round, with different
// digests, from goroutines sharing a DB and from two DBs on the same file
// (as two processes would): exactly one wins each round.
func TestLedgerConcurrent(t *testing.T) { forEachBackend(t, testLedgerConcurrent) }

func testLedgerConcurrent(t *testing.T, be backend) {
	db, path := newDB(t, be)
	db2 := openAt(t, path)
	const rounds, racers = 20, 4
	for r := fl.Round(1); r <= rounds; r++ {
		var wg sync.WaitGroup
		errs := make([]error, racers)
		for i := range racers {
			wg.Go(func() {
				d := db
				if i%2 == 1 {
					d = db2
				}
				errs[i] = d.Node(session, nil).Record(r, [32]byte{byte(i)})
			})
		}
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil && won >= 0:
				t.Fatalf("round %d: racers %d and %d both revealed", r, won, i)
			case err == nil:
				won = i
			case !errors.Is(err, ErrRevealed):
				t.Fatalf("round %d: racer %d: %v", r, i, err)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: nobody revealed", r)
		}
		if d, err := db2.Node(session, nil).Revealed(ctx, r); err != nil || d != [32]byte{byte(won)} {
			t.Fatalf("round %d: Revealed = %x, %v; racer %d won", r, d[:1], err, won)
		}
	}
}

// TestLedgerParty drives a real protect.Party (mode plain) with the store
// as its ledger and its state sealed in the store, across a restart.
func TestLedgerParty(t *testing.T) { forEachBackend(t, testLedgerParty) }

func testLedgerParty(t *testing.T, be backend) {
	db, path := newDB(t, be)
	key := testKey(t, 1)
	scheme := plain.Scheme{}
	sess := protect.Group{ID: session, Members: []fl.NodeID{"a", "b"}, Threshold: 1}
	rng := mrand.NewChaCha8([32]byte{})
	helper, _ := scheme.NewHelper(sess)
	target, _ := scheme.NewTarget(rng)
	parties := map[fl.NodeID]protect.Party{}
	anns, publics := map[fl.NodeID][]byte{}, map[fl.NodeID][]byte{}
	private := map[fl.NodeID]map[fl.NodeID][]byte{"a": {}, "b": {}}
	for _, id := range sess.Members {
		parties[id], _ = scheme.NewParty(sess, id, rng)
		anns[id], _ = parties[id].Announce()
	}
	for dealer, p := range parties {
		d, err := p.Deal(anns)
		if err != nil {
			t.Fatal(err)
		}
		publics[dealer] = d.Public
		for to, b := range d.Private {
			private[to][dealer] = b
		}
	}
	setup, err := helper.Setup(anns, publics)
	if err != nil {
		t.Fatal(err)
	}
	for id, p := range parties {
		if err := p.Accept(setup, private[id]); err != nil {
			t.Fatal(err)
		}
	}
	state, err := parties["a"].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Node(session, key).Save(ctx, NodeBatch{Keys: &Keys{Party: state}, Epoch: 1}); err != nil {
		t.Fatal(err)
	}

	up, _ := parties["a"].Protect(1, fl.Vector{1, 2}, 1)
	agg, err := helper.Aggregate(1, map[fl.NodeID][]byte{"a": up})
	if err != nil {
		t.Fatal(err)
	}
	req := protect.RevealRequest{Round: 1, Aggregate: agg, Revealers: []fl.NodeID{"a"}, Target: target.Public()}
	if _, err := parties["a"].Reveal(req, db.Node(session, key)); err != nil {
		t.Fatal(err)
	}

	// Restart: the party comes back from the store and may not reveal again.
	db = reopen(t, db, path)
	n := db.Node(session, key)
	b, err := n.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := scheme.LoadParty(sess, "a", b.Keys.Party, rng)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Reveal(req, n); !errors.Is(err, protect.ErrRevealed) {
		t.Errorf("reveal after restart: %v, want ErrRevealed", err)
	}
	if d, err := n.Revealed(ctx, 1); err != nil || d != req.Digest() {
		t.Errorf("Revealed(1) = %x, %v; want the aggregate's digest", d[:4], err)
	}
}

// TestSealedAtRest writes random secrets and looks for them in everything
// the store holds (SQLite: every file, database, WAL and shared memory;
// PostgreSQL: every value), while open and after close.
// A positive control, the coordinator's (unsealed) state, must be found.
func TestSealedAtRest(t *testing.T) { forEachBackend(t, testSealedAtRest) }

func testSealedAtRest(t *testing.T, be backend) {
	db, path := newDB(t, be)
	secrets := NodeBatch{State: random(3000), Keys: &Keys{Party: random(5000), GroupKey: random(64), Target: random(64)}}
	control := random(64)
	if err := db.Node(session, testKey(t, 1)).Save(ctx, secrets); err != nil {
		t.Fatal(err)
	}
	if err := db.Coordinator(session).Save(ctx, CoordinatorBatch{State: control}); err != nil {
		t.Fatal(err)
	}
	scan := func(when string) {
		all := be.contents(t, path)
		if !bytes.Contains(all, control) {
			t.Fatalf("%s: the scan of the %s store does not find the unsealed control", when, be.name)
		}
		for _, secret := range [][]byte{secrets.State, secrets.Keys.Party, secrets.Keys.GroupKey, secrets.Keys.Target} {
			for i := 0; i+16 <= len(secret); i += 16 {
				if bytes.Contains(all, secret[i:i+16]) {
					t.Fatalf("%s: 16 plaintext bytes of a %d-byte secret (offset %d) are in the %s store", when, len(secret), i, be.name)
				}
			}
		}
	}
	scan("open")
	db.Close()
	scan("closed")
}

func TestWrongKey(t *testing.T) { forEachBackend(t, testWrongKey) }

func testWrongKey(t *testing.T, be backend) {
	db, path := newDB(t, be)
	k1, k2 := testKey(t, 1), testKey(t, 2)
	if err := db.Node(session, k1).Save(ctx, NodeBatch{Keys: &Keys{Party: []byte("shares")}}); err != nil {
		t.Fatal(err)
	}
	db = reopen(t, db, path)
	_, err := db.Node(session, k2).Load(ctx)
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Load with another key: %v, want ErrWrongKey", err)
	}
	for _, want := range []string{k1.KeyID(), k2.KeyID(), "party"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if _, err := db.Node(session, nil).Load(ctx); err == nil {
		t.Error("Load without an AtRest opened a secret")
	}
	if err := db.Node(session, nil).Save(ctx, NodeBatch{Keys: &Keys{Party: []byte("x")}}); err == nil {
		t.Error("Save without an AtRest stored a secret")
	}
	if b, err := db.Node(session, k1).Load(ctx); err != nil || b.Keys == nil || string(b.Keys.Party) != "shares" {
		t.Errorf("Load with the right key = %+v, %v", b.Keys, err)
	}
}

// sameID is an AtRest that claims another key's ID.
type sameID struct {
	*Key
	id string
}

func (s sameID) KeyID() string { return s.id }

func TestCorruptSecret(t *testing.T) { forEachBackend(t, testCorruptSecret) }

func testCorruptSecret(t *testing.T, be backend) {
	k1 := testKey(t, 1)
	cases := map[string]func(t *testing.T, db *DB) AtRest{
		"flipped byte": func(t *testing.T, db *DB) AtRest {
			var b []byte
			if err := db.sql.QueryRow(`SELECT sealed FROM node_secrets WHERE slot = 'party'`).Scan(&b); err != nil {
				t.Fatal(err)
			}
			b[20] ^= 1
			if _, err := db.sql.Exec(`UPDATE node_secrets SET sealed = $1 WHERE slot = 'party'`, b); err != nil {
				t.Fatal(err)
			}
			return k1
		},
		"swapped slots": func(t *testing.T, db *DB) AtRest {
			exec(t, db, `UPDATE node_secrets SET sealed = (SELECT sealed FROM node_secrets WHERE slot = 'group-key') WHERE slot = 'party'`)
			return k1
		},
		"another key under the same ID": func(t *testing.T, db *DB) AtRest {
			return sameID{testKey(t, 2), k1.KeyID()}
		},
	}
	for name, corrupt := range cases {
		t.Run(name, func(t *testing.T) {
			db, _ := newDB(t, be)
			if err := db.Node(session, k1).Save(ctx, NodeBatch{Keys: &Keys{Party: random(100), GroupKey: random(100)}}); err != nil {
				t.Fatal(err)
			}
			s := corrupt(t, db)
			if _, err := db.Node(session, s).Load(ctx); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Load: %v, want ErrCorrupt", err)
			}
		})
	}
}

func exec(t *testing.T, db *DB, q string) {
	t.Helper()
	if _, err := db.sql.Exec(q); err != nil {
		t.Fatal(err)
	}
}
