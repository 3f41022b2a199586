package aggregator

import (
	"strings"
	"testing"
	"time"
)

// TestSchedule drives the re-attestation schedule through the daemon's
// events: "fire" (its timer), with "+" if the engine holds a key epoch and
// "-" if not; "step" and "answer" (the engine is about to send something,
// or an answer to a round), each asking whether to rotate with the nonce in
// hand; "fail" (no fresh nonce); "rotate" (the keys were rotated). It
// checks what the daemon does: for fire, wait for the timer ("wait D") or
// rotate as soon as the nonce is in hand ("asap"); for step and answer,
// rotate ("rotate") or not ("-"), and "idle" when no rotation is due (no
// nonce asked for); for fail and rotate, the timer's next period.
func TestSchedule(t *testing.T) {
	for _, c := range []struct {
		name, events, want string
	}{
		{"no key epoch: at once", "fire- step rotate", "asap rotate 4s"},
		{"keyed: at the next round boundary", "fire+ step answer rotate", "wait 2s - rotate 4s"},
		{"no round ends: half a period late", "fire+ step fire+ step rotate", "wait 2s - asap rotate 4s"},
		{"a round boundary before it is due: nothing", "answer fire+ answer", "idle wait 2s rotate"},
		{"the epoch ends while it waits", "fire+ fire- step rotate", "wait 2s asap rotate 4s"},
		{"no nonce: still due, half a period at most", "fire+ fail answer rotate", "wait 2s 2s rotate 4s"},
		{"no nonce while late: at the next boundary, or later", "fire+ fire+ fail step fire+ step", "wait 2s asap 2s - asap rotate"},
		{"after a rotation nothing is due", "fire- rotate answer step", "asap 4s idle idle"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := schedule{every: 4 * time.Second}
			var got []string
			for _, ev := range strings.Fields(c.events) {
				switch ev {
				case "fire+", "fire-":
					if wait := s.fired(ev == "fire+"); wait > 0 {
						got = append(got, "wait "+wait.String())
					} else {
						got = append(got, "asap")
					}
				case "step", "answer":
					switch {
					case !s.wants():
						got = append(got, "idle")
					case s.rotateNow(ev == "answer"):
						got = append(got, "rotate")
					default:
						got = append(got, "-")
					}
				case "fail":
					got = append(got, s.failed().String())
				case "rotate":
					got = append(got, s.rotated().String())
				default:
					t.Fatalf("unknown event %q", ev)
				}
			}
			if g := strings.Join(got, " "); g != c.want {
				t.Errorf("%s: got %s, want %s", c.events, g, c.want)
			}
		})
	}
	if s := (schedule{every: time.Hour}); s.latest() != 90*time.Minute {
		t.Errorf("latest %v, want 1h30m", s.latest())
	}
}
