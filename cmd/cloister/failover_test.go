package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/store"
)

var failoverKills = flag.Int("failover-kills", 2, "TestFailoverKillLeader: how many times to SIGKILL the leading coordinator (docs/BENCHMARKS.md: 5)")

// postgresStore returns the URL of a fresh schema in the test database
// ($CLOISTER_TEST_POSTGRES, which .ci/run sets), dropped when t ends; it
// skips t without one.
func postgresStore(t *testing.T) string {
	t.Helper()
	base := os.Getenv("CLOISTER_TEST_POSTGRES")
	if base == "" {
		t.Skip("$CLOISTER_TEST_POSTGRES is not set: no PostgreSQL for the coordinators to share (.ci/run sets one up)")
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	schema := "t_failover_" + hex.EncodeToString(suffix)
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		admin.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
		admin.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// coordProc is one of the two coordinators of a failover test.
type coordProc struct {
	name, addr, metrics string
	store               string // its --store
	logFrom             int64  // the size of its log file when it was last started
}

// failoverFed is a federation of real processes with two coordinators
// (coord-a, coord-b) on one PostgreSQL store, --failover --lease 3s; the
// nodes are given both addresses.
type failoverFed struct {
	*testFed
	loc    string // the store
	rounds int
	a, b   *coordProc
	sc     *store.Coordinator // the test's own view of the store
	man    *pki.Kit           // the coordinator's kit
}

func newFailoverFed(t *testing.T, rounds int) *failoverFed {
	t.Helper()
	loc := postgresStore(t)
	f := &failoverFed{testFed: newTestFed(t, 3, 2, rounds, 200), loc: loc, rounds: rounds}
	f.a, f.b = &coordProc{name: "coord-a", store: loc}, &coordProc{name: "coord-b", store: loc}
	for _, p := range []*coordProc{f.a, f.b} {
		var err error
		if p.addr, err = freeAddr(); err != nil {
			t.Fatal(err)
		}
		if p.metrics, err = freeAddr(); err != nil {
			t.Fatal(err)
		}
	}
	f.addr = f.a.addr + "," + f.b.addr // what the nodes are given
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*coordProc{f.a, f.b} {
				t.Log(tail(f.logPath(p.name), 25))
			}
		}
	})
	db, err := store.Open(loc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if f.man, err = pki.LoadKit(f.kit(pki.CoordinatorDir)); err != nil {
		t.Fatal(err)
	}
	sess, _ := f.man.Manifest.Hash()
	f.sc = db.Coordinator(sess[:])
	return f
}

// startCoord starts p (to lead, or as the standby).
func (f *failoverFed) startCoord(p *coordProc) {
	f.t.Helper()
	if st, err := os.Stat(f.logPath(p.name)); err == nil {
		p.logFrom = st.Size()
	}
	args := append([]string{"coordinator", "--kit", f.kit(pki.CoordinatorDir), "--listen", p.addr, "--metrics", p.metrics,
		"--state", f.state(p.name), "--store", p.store, "--failover", "--lease", "3s", "--log-format", "json"}, f.coordArgs...)
	if err := f.start(p.name, args...); err != nil {
		f.t.Fatal(err)
	}
}

// waitLog waits for a phrase in p's log since its last start and returns
// the record's time.
func (f *failoverFed) waitLog(p *coordProc, phrase string) time.Time {
	f.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		b, _ := os.ReadFile(f.logPath(p.name))
		if int64(len(b)) > p.logFrom {
			for _, line := range bytes.Split(b[p.logFrom:], []byte("\n")) {
				if bytes.Contains(line, []byte(phrase)) {
					var rec struct{ Time time.Time }
					json.Unmarshal(line, &rec)
					return rec.Time
				}
			}
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s does not say %q within a minute\n%s", p.name, phrase, tail(f.logPath(p.name), 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startAll starts coord-a (which leads), coord-b (the standby), and the nodes.
func (f *failoverFed) startAll() {
	f.t.Helper()
	f.startCoord(f.a)
	f.waitLog(f.a, "took the lead")
	f.startCoord(f.b)
	f.waitLog(f.b, "standby: another coordinator leads")
	for _, n := range f.names {
		if err := f.startNode(n); err != nil {
			f.t.Fatal(err)
		}
	}
}

// lastCommitted reads the last round committed from the store.
func (f *failoverFed) lastCommitted() fl.Round {
	f.t.Helper()
	m, err := f.sc.LatestModel(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return m.Round
}

// check waits for the session's end and checks it: every planned round
// committed once in the store, and in the two coordinators' audit logs
// together; only the rounds caught by a failover aborted; every log
// verifies; every node holds the same final model. It returns the rounds
// aborted.
// allBack waits until every node is connected to leader again, while the
// session still runs: a node that was backing off (up to 5 s) when the last
// failover ended would otherwise miss the final rounds, and with them the
// final model that check compares. The tests plan 30 rounds more than
// their failovers need for that (0.2 s each here).
func (f *failoverFed) allBack(leader *coordProc) {
	f.t.Helper()
	f.metrics = leader.metrics
	f.wait(4*time.Minute, "every node connected to the leader after the last failover", func(s fedStatus) bool {
		if s.Phase == "done" {
			f.t.Fatalf("the session ended with only %v connected: a node still backing off misses the final model", s.Connected)
		}
		return len(s.Connected) == len(f.names)
	})
}

func (f *failoverFed) check(leader *coordProc, caught []fl.Round) []fl.Round {
	t := f.t
	t.Helper()
	f.metrics = leader.metrics
	f.finish(6 * time.Minute)
	if h := f.final; h.Phase != "done" || h.Commits != f.rounds {
		t.Fatalf("phase %s after %d commits, want done after %d", h.Phase, h.Commits, f.rounds)
	}
	recs, err := f.sc.Rounds(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var committed, aborted []fl.Round
	for _, r := range recs {
		switch r.Outcome {
		case store.Committed:
			committed = append(committed, r.Round)
			if _, err := f.sc.Commit(context.Background(), r.Round); err != nil {
				t.Errorf("round %d is committed without a commit record: %v", r.Round, err)
			}
		case store.Aborted:
			aborted = append(aborted, r.Round)
			if !slices.Contains(caught, r.Round) {
				t.Errorf("round %d aborted (%s), but no failover caught it (caught %v)", r.Round, r.Reason, caught)
			}
		}
	}
	if len(committed) != f.rounds {
		t.Errorf("%d rounds committed in the store, want %d", len(committed), f.rounds)
	}
	out, err := (&exec.Cmd{Path: f.exe, Args: []string{"cloister", "audit", "verify", f.dir}}).CombinedOutput()
	if err != nil {
		t.Fatalf("cloister audit verify: %v\n%s", err, out)
	}
	man := f.man.Manifest
	res, err := audit.VerifyDir(filepath.Join(f.dir, "state"), audit.Federation{Keys: audit.Keys(man.AuditKeys()), Coordinator: man.Coordinator.Name})
	if err != nil {
		t.Fatal(err)
	}
	logged := map[fl.Round][]string{}
	for _, r := range res {
		if r.Summary.State.Actor == man.Coordinator.Name {
			for rd := range r.Summary.State.Commits {
				logged[rd] = append(logged[rd], filepath.Base(filepath.Dir(r.Path)))
			}
		}
	}
	for _, r := range committed {
		if len(logged[r]) > 1 {
			t.Errorf("round %d committed in %v", r, logged[r])
		}
	}
	for r := range logged {
		if !slices.Contains(committed, r) {
			t.Errorf("round %d committed in %v, not in the store", r, logged[r])
		}
	}
	f.exportAll(slices.Max(committed))
	return aborted
}

// TestFailoverKillLeader is issue 14's failover with real processes: two
// coordinators with the same kit share a PostgreSQL store (--failover,
// --lease 3s); the nodes are given both addresses. The leading coordinator
// is SIGKILLed mid-round, again and again (-failover-kills): each time the
// standby takes the lead from the stored state and the next round commits,
// and the killed one is restarted, as the next standby. Training goes on to
// the end; the round under way at each kill is aborted at most; no round is
// committed twice (the store's records, and the two coordinators' audit
// logs together); every log verifies; every node holds the same final
// model. The time from each SIGKILL to the next committed round is logged
// (docs/BENCHMARKS.md).
func TestFailoverKillLeader(t *testing.T) {
	kills := *failoverKills
	f := newFailoverFed(t, 3*kills+30) // 30 for allBack
	f.startAll()
	leader, standby := f.a, f.b
	var times []time.Duration
	var caught []fl.Round // the round under way at each kill
	last := fl.Round(0)
	for k := range kills {
		f.metrics = leader.metrics
		f.wait(4*time.Minute, "a round collecting after the last failover", func(s fedStatus) bool {
			return s.Phase == "collect" && s.LastCommitted > last
		})
		f.waitLog(standby, "standby: another coordinator leads")
		t0 := time.Now()
		if err := f.kill(leader.name); err != nil {
			t.Fatal(err)
		}
		base := f.lastCommitted() // the killed leader's /status may be a step behind
		f.metrics = standby.metrics
		s := f.wait(4*time.Minute, "the next commit after the kill", func(x fedStatus) bool { return x.LastCommitted > base })
		d := time.Since(t0)
		times = append(times, d)
		caught = append(caught, base+1)
		last = s.LastCommitted
		t.Logf("failover %d: SIGKILL of %s in round %d; %s committed round %d %.2f s later", k+1, leader.name, base+1, standby.name, s.LastCommitted, d.Seconds())
		f.startCoord(leader) // back, as the standby
		leader, standby = standby, leader
	}
	f.allBack(leader)
	aborted := f.check(leader, caught)
	lease, err := f.sc.Lease(context.Background())
	if err != nil || lease.Token < uint64(kills+1) {
		t.Errorf("lease %+v, %v: want at least %d acquisitions", lease, err, kills+1)
	}
	slices.Sort(times)
	var parts []string
	for _, d := range times {
		parts = append(parts, fmt.Sprintf("%.2fs", d.Seconds()))
	}
	t.Logf("%d failovers, SIGKILL to the next committed round (sorted): %s; median %.2f s; aborted rounds %v of caught %v; lease token %d",
		kills, strings.Join(parts, " "), times[len(times)/2].Seconds(), aborted, caught, lease.Token)
}

// TestFailoverStoreCut is the network-cut variant: the leader reaches the
// store through a proxy, which starts dropping everything mid-round (a
// blackhole: connections stay open, nothing gets through, new ones connect
// and hang). The leader can neither write nor renew its lease; it must stop
// acting before its lease expires, which is when the standby may take the
// lead, and it does: its log says it stops before the standby's says it
// took the lead. The standby takes over (once the server has ended the
// transaction the leader left open, if any), the next round commits,
// training goes on, no round is committed twice. The nodes still reach the
// old leader throughout: only its store is cut.
func TestFailoverStoreCut(t *testing.T) {
	f := newFailoverFed(t, 36) // 30 for allBack
	u, err := url.Parse(f.loc)
	if err != nil {
		t.Fatal(err)
	}
	px := newBlackhole(t, u.Host)
	u.Host = px.addr()
	f.a.store = u.String()
	f.startAll()
	f.metrics = f.a.metrics
	f.wait(4*time.Minute, "round 2 collecting", func(s fedStatus) bool { return s.Phase == "collect" && s.LastCommitted >= 1 })
	t0 := time.Now()
	px.cut()
	stopped := f.waitLog(f.a, "the coordinator stops acting")
	select {
	case <-f.proc(f.a.name).done:
	case <-time.After(time.Minute):
		t.Fatalf("the cut-off leader has not exited a minute after it stopped acting\n%s", tail(f.logPath(f.a.name), 20))
	}
	if err := f.proc(f.a.name).err; err == nil {
		t.Error("the cut-off leader exited without an error")
	}
	if !strings.Contains(tail(f.logPath(f.a.name), 5), "lost the lead") {
		t.Errorf("the cut-off leader does not say it lost the lead:\n%s", tail(f.logPath(f.a.name), 5))
	}
	took := f.waitLog(f.b, "took the lead")
	if !stopped.Before(took) {
		t.Errorf("the cut-off leader stopped acting at %s, after the standby took the lead at %s", stopped, took)
	}
	base := f.lastCommitted()
	f.metrics = f.b.metrics
	s := f.wait(4*time.Minute, "the next commit after the cut", func(x fedStatus) bool { return x.LastCommitted > base })
	t.Logf("store cut in round %d: the leader stopped acting %.2f s later, the standby took the lead %.2f s later and committed round %d %.2f s after the cut",
		base+1, stopped.Sub(t0).Seconds(), took.Sub(t0).Seconds(), s.LastCommitted, time.Since(t0).Seconds())
	f.allBack(f.b)
	aborted := f.check(f.b, []fl.Round{base + 1})
	t.Logf("aborted rounds %v", aborted)
}

// blackhole is a TCP proxy that, once cut, forwards nothing: it keeps
// reading both sides and drops what it reads, and connections made after
// the cut are accepted and never answered.
type blackhole struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	isCut  bool
	conns  []net.Conn
}

func newBlackhole(t *testing.T, target string) *blackhole {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackhole{l: l, target: target}
	t.Cleanup(func() {
		l.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *blackhole) addr() string { return p.l.Addr().String() }

func (p *blackhole) cut() {
	p.mu.Lock()
	p.isCut = true
	p.mu.Unlock()
}

func (p *blackhole) dropping() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.isCut
}

func (p *blackhole) serve(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
	if p.dropping() {
		io.Copy(io.Discard, c)
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, s)
	p.mu.Unlock()
	go p.pipe(s, c)
	p.pipe(c, s)
}

// pipe copies src to dst until the cut, then drops what src sends.
func (p *blackhole) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if p.dropping() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}
