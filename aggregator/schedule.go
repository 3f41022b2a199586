package aggregator

import "time"

// schedule decides when the aggregator re-attests with new keys (see
// Re-attestation in the package documentation): every period, at the next
// round boundary, at most half a period late. The daemon owns it, sets its
// timer to the durations it returns, and asks for a fresh nonce as soon as
// a rotation is due (wants), so that the rotation waits for nothing else
// when its moment comes.
type schedule struct {
	every time.Duration
	due   bool // a rotation is due: at the next round boundary
	now   bool // a rotation is due at once, as soon as its nonce is in hand
}

// fired is the timer. keyed says whether the engine holds a key epoch:
// without one, nothing sealed to the current key can be opened, and the
// rotation is due at once; so it is when it was due for half a period
// already. Otherwise it is due at the next round boundary, and wait is
// when the timer must fire next; 0 means not before the rotation.
func (s *schedule) fired(keyed bool) (wait time.Duration) {
	if s.due || !keyed {
		s.due, s.now = true, true
		return 0
	}
	s.due = true
	return s.every / 2
}

// wants reports whether a rotation is due.
func (s *schedule) wants() bool { return s.due }

// rotateNow reports whether a due rotation happens now, its nonce in hand:
// answering says whether the aggregator is about to answer a round (a
// round boundary).
func (s *schedule) rotateNow(answering bool) bool { return s.now || s.due && answering }

// failed notes that no fresh nonce came: the rotation stays due, and the
// timer fires next when it waits no longer.
func (s *schedule) failed() time.Duration {
	s.due, s.now = true, false
	return s.every / 2
}

// rotated starts a new period (after a rotation, or a failed attempt that
// waits for the next one): it returns when the timer fires next.
func (s *schedule) rotated() time.Duration {
	s.due, s.now = false, false
	return s.every
}

// latest is the longest the aggregator's keys go without re-attestation
// on a live stream (a nonce's round trip aside).
func (s *schedule) latest() time.Duration { return s.every + s.every/2 }
