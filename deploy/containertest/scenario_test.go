package containertest

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/store"
)

// TestSiteCutOff: a site's container is disconnected from its network
// while the round collects. The coordinator's keepalive drops its
// connection and the round commits without it; reconnected, the node
// redials, says Hello and is in the next round that starts.
func TestSiteCutOff(t *testing.T) {
	f := provision(t, fedOptions{rounds: 8, localEpochs: 1000, coordArgs: []string{"--keepalive=3s"}})
	f.start()
	s := f.wait(3*time.Minute, "round 2 collecting", func(s status) bool { return s.Round == 2 && s.Phase == "collect" })
	victim, site := f.victim(s)
	network := f.name(fmt.Sprintf("site-%d", site))
	docker(t, "network", "disconnect", network, f.name(victim))
	t.Logf("round 2 (leader %s): %s cut off from %s", s.Leader, victim, network)
	f.waitConnected(victim, false, time.Minute)
	docker(t, "network", "connect", network, f.name(victim))
	t.Logf("the coordinator dropped %s's connection; %s reconnected to %s", victim, victim, network)
	back := f.waitLive(victim, 2*time.Minute)
	h := f.finish(4 * time.Minute)
	logHistory(t, h)
	checkDropped(t, h, 2, victim)
	r := checkBack(t, h, victim, back)
	t.Logf("%s dropped from round 2, back in round %d", victim, r)
	f.verifyAudit()
}

// TestSitePaused: a site's container is frozen (docker pause) while the
// round collects: a straggler. The round commits at its deadline without
// it. Its connection answers no keepalive, so the coordinator drops it;
// unpaused, the node redials, says Hello and is in the next round that
// starts.
//
// A node that misses a deadline but keeps its connection (a stall shorter
// than twice the keepalive) stays down for the rest of the session: the
// coordinator counts a member back only when it says Hello again.
func TestSitePaused(t *testing.T) {
	// The deadline passes before the keepalive (a ping after 4 s without a
	// frame from the node, 4 s for its answer) drops the connection.
	const collect = 5 * time.Second
	// 30 rounds: on a quiet machine a round takes half a second, and the
	// unpaused node redials with a backoff of up to 5 s; with 10 rounds the
	// session ended before it was back.
	f := provision(t, fedOptions{rounds: 30, localEpochs: 600, coordArgs: []string{"--keepalive=4s", "--collect-timeout=" + collect.String()}})
	f.start()
	s := f.wait(3*time.Minute, "round 2 collecting", func(s status) bool { return s.Round == 2 && s.Phase == "collect" })
	victim, _ := f.victim(s)
	docker(t, "pause", f.name(victim))
	t.Logf("round 2 (leader %s): %s paused", s.Leader, victim)
	f.wait(2*time.Minute, "round 2's collection to end", func(s status) bool { return s.Round > 2 || s.Phase != "collect" })
	f.waitConnected(victim, false, time.Minute)
	docker(t, "unpause", f.name(victim))
	t.Logf("the coordinator dropped %s's connection; %s unpaused", victim, victim)
	back := f.waitLive(victim, 2*time.Minute)
	h := f.finish(4 * time.Minute)
	logHistory(t, h)
	ri := checkDropped(t, h, 2, victim)
	if c := ri.Phases["collect"]; c < collect.Seconds()-0.5 {
		t.Errorf("round 2 collected for %.1fs: it closed before its %s deadline", c, collect)
	}
	r := checkBack(t, h, victim, back)
	t.Logf("%s missed round 2's deadline, back in round %d", victim, r)
	f.verifyAudit()
}

// TestCoordinatorKilled: the coordinator's container is killed (SIGKILL)
// while a round collects and started again on its state volume. At most
// the round in flight aborts; every round commits once; training ends.
func TestCoordinatorKilled(t *testing.T) {
	f := provision(t, fedOptions{rounds: 4, localEpochs: 1000})
	f.start()
	s := f.wait(3*time.Minute, "round 2 collecting", func(s status) bool { return s.Round == 2 && s.Phase == "collect" })
	docker(t, "kill", f.name("coordinator"))
	t.Logf("killed the coordinator in round %d (%s)", s.Round, s.Phase)
	f.startCoordinator()
	h := f.finish(5 * time.Minute)
	logHistory(t, h)
	committed := map[int]int{}
	aborted := 0
	for _, ri := range h.History {
		switch ri.Outcome {
		case "committed":
			committed[int(ri.Round)]++
		case "aborted":
			aborted++
		}
	}
	if h.Phase != "done" || h.Commits != f.rounds || len(committed) != f.rounds || aborted > 1 {
		t.Errorf("after the restart: phase %s, %d commits, committed rounds %v, %d aborted; want done, %d, %d distinct, at most 1 aborted",
			h.Phase, h.Commits, committed, aborted, f.rounds, f.rounds)
	}
	for r, n := range committed {
		if n != 1 {
			t.Errorf("round %d committed %d times", r, n)
		}
	}
	f.verifyAudit()
}

// TestReadOnlyKitNeedsAtRestKey: a node whose kit is mounted read-only
// without its at-rest key stops at once and says how to make one.
func TestReadOnlyKitNeedsAtRestKey(t *testing.T) {
	f := provision(t, fedOptions{rounds: 1, localEpochs: 1})
	if err := os.Remove(f.path("fed", "node-1", store.KeyFile)); err != nil {
		t.Fatal(err)
	}
	uid, gid, _ := strings.Cut(f.user, ":")
	args := append([]string{"run", "--rm", "--network", "none"}, f.hardening()...)
	args = append(args, "-v", f.path("fed", "node-1")+":/etc/cloister:ro", "-v", f.path("data")+":/data:ro",
		"--tmpfs", "/var/lib/cloister:uid="+uid+",gid="+gid+",mode=0700", image(),
		"node", "--kit=/etc/cloister", "--state=/var/lib/cloister", "--data=csv:/data/blobs.csv:label=y")
	out, err := dockerOut(args...)
	if err == nil {
		t.Fatalf("the node started with a read-only kit and no at-rest key:\n%s", out)
	}
	for _, want := range []string{
		"cloister: error: /etc/cloister is read-only and has no " + store.KeyFile,
		"cloister: hint: create it once where the kit is kept, before mounting it read-only",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the node's error lacks %q:\n%s", want, out)
		}
	}
}
