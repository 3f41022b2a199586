package aggregator

import (
	"strings"
	"testing"
	"time"
)

// TestSchedule drives the re-attestation schedule through the daemon's
// events: "fire" (its timer), with "+" if the engine holds a key epoch and
// "-" if not, "answer" (it answered a round), "fail" (no fresh nonce) and
// "rotate" (the keys were rotated), and checks what it does: rotate now
// ("rotate"), wait for the timer ("wait D"), or nothing ("-").
func TestSchedule(t *testing.T) {
	for _, c := range []struct {
		name, events, want string
	}{
		{"no key epoch: at once", "fire- rotate", "rotate 4s"},
		{"keyed: at the next round boundary", "fire+ answer rotate", "wait 2s rotate 4s"},
		{"no round ends: half a period late", "fire+ fire+ rotate", "wait 2s rotate 4s"},
		{"a round boundary before it is due: nothing", "answer fire+ answer", "- wait 2s rotate"},
		{"the epoch ends while it waits", "fire+ fire- rotate", "wait 2s rotate 4s"},
		{"no nonce: still due, half a period at most", "fire+ answer fail answer rotate", "wait 2s rotate wait 2s rotate 4s"},
		{"after a rotation a round boundary is no reason", "fire- rotate answer", "rotate 4s -"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := schedule{every: 4 * time.Second}
			var got []string
			for _, ev := range strings.Fields(c.events) {
				switch ev {
				case "fire+", "fire-":
					if rotate, wait := s.fired(ev == "fire+"); rotate {
						got = append(got, "rotate")
					} else {
						got = append(got, "wait "+wait.String())
					}
				case "answer":
					if s.answered() {
						got = append(got, "rotate")
					} else {
						got = append(got, "-")
					}
				case "fail":
					got = append(got, "wait "+s.failed().String())
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
