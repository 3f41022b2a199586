package fedtest

import (
	"context"
	"errors"
	"net"
	"sync"
)

// Network is an in-memory network with one listening address: the
// coordinator's. Connections are net.Pipe pairs, so everything that waits
// on them waits on channels, which testing/synctest counts as durably
// blocked: a federation on a Network runs on a fake clock.
type Network struct {
	mu     sync.Mutex
	l      *listener // the current listener, nil if none
	closed bool
}

// ErrRefused is the error of a dial with no listener: a coordinator that is
// down.
var ErrRefused = errors.New("fedtest: connection refused")

// Listen returns a listener for the coordinator's address. A listener
// already open is closed first (a restarted coordinator takes the
// address over).
func (n *Network) Listen() net.Listener {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.l != nil {
		n.l.Close()
	}
	n.l = &listener{conns: make(chan net.Conn), done: make(chan struct{})}
	return n.l
}

// Dial connects to the listener, as a node's transport.ClientConfig.Dial
// does. It fails with ErrRefused if nothing listens.
func (n *Network) Dial(ctx context.Context, _ string) (net.Conn, error) {
	n.mu.Lock()
	l := n.l
	n.mu.Unlock()
	if l == nil {
		return nil, ErrRefused
	}
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
	case <-ctx.Done():
		client.Close()
		server.Close()
		return nil, ctx.Err()
	}
	client.Close()
	server.Close()
	return nil, ErrRefused
}

type listener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *listener) Addr() net.Addr { return addr{} }

type addr struct{}

func (addr) Network() string { return "memory" }
func (addr) String() string  { return "coordinator.memory" }
