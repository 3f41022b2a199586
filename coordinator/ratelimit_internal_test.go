package coordinator

import (
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/audit"
)

// TestLimiter drives the per-member limiter on a fake time.
func TestLimiter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(Rates{Hellos: 3, Refused: 2})

	// A burst of the rate passes, the rest is dropped and counted; one
	// window opens at the first drop.
	for i := range 3 {
		if ok, _ := l.hello("node-1", t0); !ok {
			t.Fatalf("Hello %d dropped within the burst", i)
		}
	}
	ok, opened := l.hello("node-1", t0)
	if ok || !opened {
		t.Fatalf("4th Hello: ok %v opened %v, want dropped, opening a window", ok, opened)
	}
	if ok, opened := l.hello("node-1", t0.Add(time.Second)); ok || opened {
		t.Fatalf("5th Hello: ok %v opened %v, want dropped in the open window", ok, opened)
	}
	// Another member has its own buckets.
	if ok, _ := l.hello("node-2", t0); !ok {
		t.Fatal("node-2's first Hello dropped")
	}
	// Refill: 3 a minute is one every 20 s.
	if ok, _ := l.hello("node-1", t0.Add(20*time.Second)); !ok {
		t.Fatal("no Hello 20 s later")
	}
	if ok, _ := l.hello("node-1", t0.Add(21*time.Second)); ok {
		t.Fatal("two Hellos 20 s later")
	}

	// Refusals: 2 recorded, then not; messages pass until the budget is spent.
	for i := range 2 {
		if ok, _ := l.message("node-1", t0); !ok {
			t.Fatalf("message %d dropped with budget left", i)
		}
		if ok, _ := l.refusal("node-1", t0); !ok {
			t.Fatalf("refusal %d not recorded within the burst", i)
		}
	}
	if ok, _ := l.message("node-1", t0.Add(time.Second)); ok {
		t.Fatal("a message passed with the refusal budget spent")
	}
	if ok, _ := l.refusal("node-1", t0.Add(time.Second)); ok {
		t.Fatal("a refusal recorded past the budget")
	}
	if ok, _ := l.message("node-1", t0.Add(31*time.Second)); !ok {
		t.Fatal("no message 30 s later (2 a minute)")
	}

	// The window ends a minute after it opened: one summary, with counts.
	if s := l.due(t0.Add(59 * time.Second)); len(s) != 0 {
		t.Fatalf("summaries before the window ended: %v", s)
	}
	s := l.due(t0.Add(time.Minute))
	if len(s) != 1 || s[0].node != "node-1" || s[0].hellos != 3 || s[0].messages != 1 || s[0].unrecorded != 1 {
		t.Fatalf("summaries %+v, want node-1 with 3 Hellos, 1 message, 1 refusal", s)
	}
	reason := s[0].reason(l.rates)
	if audit.Reason(reason) != reason || !strings.Contains(reason, "3 Hellos and 1 messages dropped, 1 refusals not recorded") {
		t.Fatalf("reason %q", reason)
	}
	if s := l.due(t0.Add(time.Hour)); len(s) != 0 {
		t.Fatalf("summaries after the window was reported: %v", s)
	}
	// A drop opens a new window.
	if ok, opened := l.hello("node-2", t0.Add(time.Hour)); !ok || opened {
		t.Fatalf("node-2 after an hour: ok %v opened %v", ok, opened)
	}

	// Negative: no limit; zero: the defaults.
	off := newLimiter(Rates{Hellos: -1, Refused: -1})
	for range 1000 {
		if ok, _ := off.hello("node-1", t0); !ok {
			t.Fatal("a Hello dropped without a limit")
		}
		if ok, _ := off.refusal("node-1", t0); !ok {
			t.Fatal("a refusal not recorded without a limit")
		}
		if ok, _ := off.message("node-1", t0); !ok {
			t.Fatal("a message dropped without a limit")
		}
	}
	if d := newLimiter(Rates{}).rates; d.Hellos != DefaultHellosPerMinute || d.Refused != DefaultRefusedPerMinute {
		t.Fatalf("defaults %+v", d)
	}
}
