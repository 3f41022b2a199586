package trainer_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/trainer"
)

// benchParams is the size of the throughput benchmarks' model: 10M
// float32 parameters, 40 MB each way per training task.
const benchParams = 10_000_000

var benchLayout = trainer.Layout{Version: 1, Tensors: []trainer.Tensor{{Name: "w", Shape: []int{benchParams / 1000, 1000}, DType: trainer.Float32}}}

// benchHost serves a Host on a Unix socket in a short temporary directory.
func benchHost(b *testing.B) (*trainer.Host, string) {
	b.Helper()
	dir, err := os.MkdirTemp("", "cloister-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "trainer.sock")
	l, err := trainer.Listen(socket)
	if err != nil {
		b.Fatal(err)
	}
	h := trainer.NewHost(trainer.HostConfig{Layout: digest(b, benchLayout)})
	go h.Serve(l)
	b.Cleanup(h.Close)
	return h, socket
}

// benchTrain runs b.N training tasks of the 10M layout and reports the
// API's throughput: the bytes of weights both ways per second of the
// node's time, less the trainer's own.
func benchTrain(b *testing.B, h *trainer.Host) {
	global := make(fl.Vector, benchParams)
	for i := range global {
		global[i] = float64(i%1000) / 1000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := h.Layout(ctx); err != nil {
		b.Fatal(err)
	}
	var api time.Duration
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := h.Train(ctx, trainer.TrainTask{Round: fl.Round(i + 1), Global: global})
		if err != nil {
			b.Fatal(err)
		}
		api += res.Elapsed - res.Compute
	}
	b.StopTimer()
	mb := float64(2*benchLayout.Bytes()) / 1e6
	b.ReportMetric(mb*float64(b.N)/api.Seconds(), "MB/s")
	b.ReportMetric(api.Seconds()/float64(b.N), "api-s/op")
	// This process's CPU time: on a loaded machine the wall time measures
	// the load as much as the API.
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
}

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTrain10MGo: a trainer written in Go (Attach) that echoes the
// weights: the node's side and the Go client.
func BenchmarkTrain10MGo(b *testing.B) {
	h, socket := benchHost(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- trainer.Attach(ctx, trainer.AttachConfig{Socket: socket}, func(_ context.Context, r *trainer.Request) (*trainer.Reply, error) {
			switch r.Kind {
			case trainer.Describe, trainer.Init:
				a, _ := trainer.NewArray(benchLayout.Tensors[0], make([]float64, benchParams))
				return &trainer.Reply{Weights: []trainer.Array{a}}, nil
			}
			return &trainer.Reply{Weights: r.Weights, Examples: 1}, nil
		})
	}()
	benchTrain(b, h)
	h.Close()
	cancel()
	<-done
}

// BenchmarkTrain10MPython: the Python client (testdata/echo.py, numpy),
// as a site's PyTorch trainer uses it.
func BenchmarkTrain10MPython(b *testing.B) {
	py := python(b)
	h, socket := benchHost(b)
	client, err := filepath.Abs("../python")
	if err != nil {
		b.Fatal(err)
	}
	p, err := trainer.NewProcess(trainer.ProcessConfig{Args: []string{py, "testdata/echo.py"},
		Env: []string{"CLOISTER_TRAINER_SOCKET=" + socket, "PYTHONPATH=" + client, "CLOISTER_BENCH_PARAMS=" + strconv.Itoa(benchParams)}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx) }()
	benchTrain(b, h)
	h.Close()
	cancel()
	<-ran
}
