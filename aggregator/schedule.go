package aggregator

import "time"

// schedule decides when the aggregator re-attests with new keys (see
// Re-attestation in the package documentation): every period, at the next
// round boundary, at most half a period late. The daemon owns it, and sets
// its timer to the durations it returns.
type schedule struct {
	every time.Duration
	due   bool // a rotation waits for a round boundary
}

// fired is the timer. It reports whether to rotate now: when the engine
// holds no key epoch (keyed false), nothing sealed to the current key can
// be opened, and a rotation due for half a period already waits no
// longer. If not, the rotation is due, and wait is when the timer must fire
// next.
func (s *schedule) fired(keyed bool) (rotate bool, wait time.Duration) {
	if s.due || !keyed {
		return true, 0
	}
	s.due = true
	return false, s.every / 2
}

// answered reports, once the aggregator has answered a round (a round
// boundary), whether a due rotation happens now.
func (s *schedule) answered() bool { return s.due }

// failed notes that a due rotation could not happen (no fresh nonce): it
// stays due, and the timer fires next when it waits no longer.
func (s *schedule) failed() time.Duration {
	s.due = true
	return s.every / 2
}

// rotated starts a new period (after a rotation, or a failed attempt that
// waits for the next one): it returns when the timer fires next.
func (s *schedule) rotated() time.Duration {
	s.due = false
	return s.every
}

// latest is the longest the aggregator's keys go without re-attestation
// on a live stream.
func (s *schedule) latest() time.Duration { return s.every + s.every/2 }
