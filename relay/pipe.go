package relay

import (
	"context"
	"fmt"
	"sync"
)

// Pipe returns in-memory carriers for the named parties: what one Sends
// to another, that one Recvs, in order. For tests, and for a process that
// hosts every party (a demo).
func Pipe(names ...string) map[string]Carrier {
	hub := &pipeHub{ends: map[string]*pipeEnd{}}
	out := map[string]Carrier{}
	for _, n := range names {
		e := &pipeEnd{hub: hub, self: n, wake: make(chan struct{}, 1)}
		hub.ends[n] = e
		out[n] = e
	}
	return out
}

type pipeHub struct{ ends map[string]*pipeEnd }

type pipeMsg struct {
	from string
	b    []byte
}

type pipeEnd struct {
	hub  *pipeHub
	self string
	mu   sync.Mutex
	q    []pipeMsg
	wake chan struct{}
}

func (e *pipeEnd) Send(_ context.Context, to string, msg []byte) error {
	d, ok := e.hub.ends[to]
	if !ok {
		return fmt.Errorf("relay: pipe: no party %q", to)
	}
	d.mu.Lock()
	d.q = append(d.q, pipeMsg{e.self, append([]byte(nil), msg...)})
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return nil
}

func (e *pipeEnd) Recv(ctx context.Context) (string, []byte, error) {
	for {
		e.mu.Lock()
		if len(e.q) > 0 {
			m := e.q[0]
			e.q = e.q[1:]
			e.mu.Unlock()
			return m.from, m.b, nil
		}
		e.mu.Unlock()
		select {
		case <-e.wake:
		case <-ctx.Done():
			return "", nil, ctx.Err()
		}
	}
}
