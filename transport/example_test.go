package transport_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport"
)

// A coordinator and a node, with kits from `cloister init` in a temporary
// directory: the node dials out, the coordinator learns who it is from its
// certificate, and messages flow both ways.
func Example() {
	dir, _ := os.MkdirTemp("", "cloister-transport-example-")
	defer os.RemoveAll(dir)
	fed := filepath.Join(dir, "fed")
	if err := pki.InitFederation(fed, pki.InitOptions{Nodes: 2, Threshold: 2}, time.Now(), nil); err != nil {
		fmt.Println(err)
		return
	}
	coordKit, _ := pki.LoadKit(filepath.Join(fed, "coordinator"))
	nodeKit, _ := pki.LoadKit(filepath.Join(fed, "node-1"))
	serverTLS, _ := coordKit.TLSConfig(pki.Options{})
	clientTLS, _ := nodeKit.TLSConfig(pki.Options{})
	limits := transport.Limits{MaxMessage: 8 << 20, ChunkSize: 1 << 20}

	// The coordinator: the caller owns the listener.
	srv, err := transport.NewServer(transport.ServerConfig{TLS: serverTLS, Limits: limits})
	if err != nil {
		fmt.Println(err)
		return
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)

	// A node dials out.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := transport.Dial(ctx, l.Addr().String(), transport.ClientConfig{TLS: clientTLS, Limits: limits})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("node:", conn.Self(), "talks to", conn.Coordinator())
	conn.Send(ctx, round.Message{Kind: round.KindHello, Evidence: []byte("evidence")})

	// The coordinator's loop: every event names the authenticated node.
	for range 2 {
		ev, _ := srv.Recv(ctx)
		fmt.Println("coordinator:", ev)
	}
	srv.Send(ctx, "node-1", round.Message{Kind: round.KindWelcome, Epoch: 1})
	m, _ := conn.Recv(ctx)
	fmt.Println("node got:", m)

	conn.Close()
	ev, _ := srv.Recv(ctx)
	fmt.Println("coordinator:", ev)
	fmt.Println(srv.Shutdown(ctx))
	// Output:
	// node: node-1 talks to coordinator
	// coordinator: connect node-1
	// coordinator: message node-1: Hello epoch=0
	// node got: Welcome epoch=1
	// coordinator: disconnect node-1
	// <nil>
}
