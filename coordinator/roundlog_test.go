package coordinator_test

import (
	"context"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/round"
)

// logLine is one record of the daemons' text log: its message and
// attributes.
type logLine struct {
	msg   string
	attrs map[string]string
}

var logAttr = regexp.MustCompile(`([\w.]+)=("(?:[^"\\]|\\.)*"|\S*)`)

// coordinatorLog returns the coordinator's records with message msg.
func (f fed) coordinatorLog(msg string) []logLine {
	f.T.Helper()
	var out []logLine
	for _, line := range strings.Split(f.Logs.String(), "\n") {
		l := logLine{attrs: map[string]string{}}
		for _, m := range logAttr.FindAllStringSubmatch(line, -1) {
			v := m[2]
			if strings.HasPrefix(v, `"`) {
				u, err := strconv.Unquote(v)
				if err != nil {
					f.T.Fatalf("log line %q: %v", line, err)
				}
				v = u
			}
			if m[1] == "msg" {
				l.msg = v
			} else {
				l.attrs[m[1]] = v
			}
		}
		if l.msg == msg && l.attrs["who"] == "coordinator" {
			out = append(out, l)
		}
	}
	return out
}

// checkRoundLog checks the coordinator's INFO line of each round's outcome
// against the round history (/rounds): one "round committed" line per
// committed round, with its leader, included count, bytes, seconds, the
// nodes' example-weighted accuracy and loss and, with DP, its ε and the
// total; one "round aborted" line per aborted round, with its reason; no
// line for a round that did not end, and none twice (across a restart
// too); one "session over" line once the session is done. It returns the
// history.
func (f fed) checkRoundLog() *coordinator.History {
	f.T.Helper()
	t := f.T
	h, err := f.Coord.History(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byRound := func(ls []logLine) map[fl.Round][]logLine {
		m := map[fl.Round][]logLine{}
		for _, l := range ls {
			r, err := strconv.ParseUint(l.attrs["round"], 10, 64)
			if err != nil {
				t.Fatalf("log line %+v: round: %v", l, err)
			}
			m[fl.Round(r)] = append(m[fl.Round(r)], l)
		}
		return m
	}
	committed, aborted := byRound(f.coordinatorLog("round committed")), byRound(f.coordinatorLog("round aborted"))
	num := func(l logLine, key string) float64 {
		t.Helper()
		v, err := strconv.ParseFloat(l.attrs[key], 64)
		if err != nil {
			t.Errorf("round %s: %s=%q: %v", l.attrs["round"], key, l.attrs[key], err)
		}
		return v
	}
	for _, r := range h.History {
		c, a := committed[r.Round], aborted[r.Round]
		delete(committed, r.Round)
		delete(aborted, r.Round)
		switch r.Outcome {
		case "committed":
			if len(c) != 1 || len(a) != 0 {
				t.Errorf("round %d committed: %d committed lines and %d aborted, want 1 and 0", r.Round, len(c), len(a))
				continue
			}
			l := c[0]
			t.Logf("round %d: %v", r.Round, l.attrs)
			if l.attrs["leader"] != string(r.Leader) || num(l, "included") != float64(len(r.Included)) ||
				num(l, "bytes_up") != float64(r.BytesUp) || num(l, "bytes_down") != float64(r.BytesDown) ||
				math.Abs(num(l, "seconds")-r.Seconds) > 0.002 {
				t.Errorf("round %d: logged %v, /rounds has %+v", r.Round, l.attrs, r)
			}
			if r.Accuracy == nil || math.Abs(num(l, "accuracy")-*r.Accuracy) > 1e-6 || math.Abs(num(l, "loss")-*r.Loss) > 1e-6*max(1, *r.Loss) ||
				num(l, "nodes_reporting") != float64(r.Nodes) {
				t.Errorf("round %d: logged %v, want the accuracy and loss /rounds has (%v, %v from %d nodes)",
					r.Round, l.attrs, deref(r.Accuracy), deref(r.Loss), r.Nodes)
			}
			_, has := l.attrs["epsilon_total"]
			if h.Privacy == nil && has {
				t.Errorf("round %d: ε logged without DP: %v", r.Round, l.attrs)
			} else if h.Privacy != nil && (num(l, "epsilon_total") != r.EpsilonTotal || num(l, "epsilon_round") != r.Epsilon) {
				t.Errorf("round %d: logged %v, want ε %v and total %v", r.Round, l.attrs, r.Epsilon, r.EpsilonTotal)
			}
		case "aborted":
			if len(a) != 1 || len(c) != 0 {
				t.Errorf("round %d aborted: %d aborted lines and %d committed, want 1 and 0", r.Round, len(a), len(c))
				continue
			}
			t.Logf("round %d: %v", r.Round, a[0].attrs)
			if a[0].attrs["reason"] != r.Reason || r.Reason == "" || math.Abs(num(a[0], "seconds")-r.Seconds) > 0.002 {
				t.Errorf("round %d: logged %v, /rounds has reason %q, %v s", r.Round, a[0].attrs, r.Reason, r.Seconds)
			}
		default:
			if len(a)+len(c) != 0 {
				t.Errorf("round %d %s: logged as ended", r.Round, r.Outcome)
			}
		}
	}
	over := f.coordinatorLog("session over")
	if done := h.Phase == round.PhaseDone.String(); done != (len(over) == 1) || len(over) > 1 {
		t.Errorf("phase %s, %d session-over lines: %v", h.Phase, len(over), over)
	} else if done && over[0].attrs["commits"] != strconv.Itoa(h.Commits) {
		t.Errorf("session over: %v, want %d commits", over[0].attrs, h.Commits)
	}
	for r, ls := range committed {
		t.Errorf("round %d logged committed but not in /rounds: %v", r, ls)
	}
	for r, ls := range aborted {
		t.Errorf("round %d logged aborted but not in /rounds: %v", r, ls)
	}
	return h
}
