package node

import (
	"strings"
	"testing"
)

// TestReattestPlan drives the re-attestation schedule through the events
// of the loop: "due" (AttestEvery), "tick" and "nonce" (the nonce asked for
// arrives), each with whether a key setup is under way ("+" in setup, "-"
// not), and checks what the node does: "ask" for a nonce, "rotate" its keys,
// or nothing ("-").
func TestReattestPlan(t *testing.T) {
	for _, c := range []struct {
		name, events, want string
	}{
		{"no setup", "due- nonce-", "ask rotate"},
		{"due during a setup: after it", "due+ tick+ tick- nonce-", "- - ask rotate"},
		// The nonce comes back once a setup has started (its SetupStart
		// arrived first): rotating now would sign the node's own dealing
		// with keys its peers and itself no longer check it against.
		{"a setup starts while the nonce is on its way", "due- nonce+ tick+ tick- nonce-", "ask - - ask rotate"},
		{"a setup longer than a period: one period late at most", "due+ tick+ due+ nonce+", "- - ask rotate"},
		{"setups in a row: one period late at most", "due- nonce+ tick+ due+ nonce+", "ask - - ask rotate"},
		{"a late one rotated: the next setup defers again", "due+ due+ nonce+ due+ tick+ tick- nonce-", "- ask rotate - - ask rotate"},
		{"no nonce came: the next schedule starts over", "due+ due+ fail due+ tick-", "- ask - - ask"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var p reattestPlan
			var got []string
			for _, ev := range strings.Fields(c.events) {
				if ev == "fail" {
					p.failed()
					got = append(got, "-")
					continue
				}
				in := strings.HasSuffix(ev, "+")
				var act bool
				switch strings.TrimRight(ev, "+-") {
				case "due":
					act = p.due(in)
				case "tick":
					act = p.tick(in)
				case "nonce":
					act = p.nonce(in)
				default:
					t.Fatalf("unknown event %q", ev)
				}
				switch {
				case !act:
					got = append(got, "-")
				case strings.HasPrefix(ev, "nonce"):
					got = append(got, "rotate")
				default:
					got = append(got, "ask")
				}
			}
			if g := strings.Join(got, " "); g != c.want {
				t.Errorf("%s: got %s, want %s (plan %+v)", c.events, g, c.want, p)
			}
		})
	}
}
