package coordinator_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/pki"
)

// Example runs the coordinator of the federation that `cloister init
// --dir fed` wrote: members connect on 127.0.0.1:7443, metrics are served
// on 127.0.0.1:9090, and the state lives in fed/coordinator/state.
func Example() {
	kit, err := pki.LoadKit("fed/coordinator")
	if err != nil {
		panic(err)
	}
	c, err := coordinator.New(coordinator.Config{
		Kit: kit, StateDir: "fed/coordinator/state", Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Deadlines: coordinator.Deadlines{Collect: 10 * time.Minute},
	})
	if err != nil {
		panic(err)
	}
	ml, _ := net.Listen("tcp", "127.0.0.1:9090")
	go http.Serve(ml, c.Handler()) // / (dashboard), /metrics, /rounds, /status
	l, _ := net.Listen("tcp", "127.0.0.1:7443")
	go c.Serve(l)
	<-c.Done() // or a signal
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.Shutdown(ctx)
}
