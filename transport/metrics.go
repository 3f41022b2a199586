package transport

import "sync/atomic"

// Metrics are a server's or a connection's counters. They are safe for
// concurrent use; export them (to Prometheus, expvar, logs) from one place
// by reading the fields.
//
// Bytes count frames as gRPC messages (the serialized frames), not HTTP/2
// or TLS overhead.
type Metrics struct {
	BytesIn, BytesOut       atomic.Uint64 // frame bytes received and sent
	MessagesIn, MessagesOut atomic.Uint64 // logical messages received (delivered) and sent
	// LargestIn and LargestOut are the largest logical messages received
	// and sent, in bytes (the lengths Limits.MaxMessage bounds).
	LargestIn, LargestOut atomic.Uint64
	Connects, Disconnects atomic.Uint64 // streams opened and ended
	Replaced              atomic.Uint64 // streams replaced by a newer stream of the same node (server)
	// Rejected counts rejections by reason: Rejected[ReasonFrame] and so on.
	// Index 0 is unused.
	Rejected [reasonEnd]atomic.Uint64
}

// largest raises *max to n.
func largest(max *atomic.Uint64, n int) {
	for {
		old := max.Load()
		if uint64(n) <= old || max.CompareAndSwap(old, uint64(n)) {
			return
		}
	}
}

func (m *Metrics) reject(r Reason) {
	if r > 0 && r < reasonEnd {
		m.Rejected[r].Add(1)
	}
}
