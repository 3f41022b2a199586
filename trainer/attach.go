package trainer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/trainer/internal/pb"
)

// Request is a task as a trainer written in Go receives it (Attach).
type Request struct {
	ID      uint64
	Kind    Kind
	Round   fl.Round
	Seed    uint64
	Config  Config  // Train
	Weights []Array // Train and Evaluate: the global weights
	// Timeout is how long the node waits for the reply.
	Timeout time.Duration
}

// Reply is a Go trainer's answer to a Request.
type Reply struct {
	// Weights are the layout (Describe: their data is not sent), the
	// initial weights (Init) or the trained weights (Train); none for
	// Evaluate.
	Weights []Array
	// Delta says Weights are w − w_global (Train).
	Delta bool
	// Examples is the count of examples trained on or evaluated.
	Examples int
	// Metrics: "accuracy" and "loss" for Evaluate; anything for Train.
	Metrics map[string]float64
}

// Handler does a Go trainer's work. An error is sent to the node as the
// task's failure.
type Handler func(ctx context.Context, r *Request) (*Reply, error)

// AttachConfig configures Attach.
type AttachConfig struct {
	// Socket is the node's trainer socket (CLOISTER_TRAINER_SOCKET).
	Socket string
	// Dial, if set, opens the connection in place of the socket (tests:
	// in-memory connections).
	Dial func(ctx context.Context) (net.Conn, error)
	// Client names the trainer in the node's log.
	Client string
}

// Attach connects a trainer written in Go to a node: it says Hello and
// answers each task with h until the node ends the stream. It returns nil
// when the node closed the API (its session is over) and the stream's
// error otherwise (another trainer attached, a fault the node found,
// ctx's end). Python trainers use the Python package cloister instead.
func Attach(ctx context.Context, cfg AttachConfig, h Handler) error {
	dial := cfg.Dial
	if dial == nil {
		dial = func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", cfg.Socket)
		}
	}
	cc, err := grpc.NewClient("passthrough:///trainer",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return dial(ctx) }),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessage), grpc.MaxCallSendMsgSize(MaxMessage)),
		grpc.WithInitialWindowSize(window), grpc.WithInitialConnWindowSize(window))
	if err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := pb.NewNodeClient(cc).Attach(ctx)
	if err != nil {
		return fmt.Errorf("trainer: attaching: %w", err)
	}
	if err := stream.Send(&pb.FromTrainer{Body: &pb.FromTrainer_Hello{Hello: &pb.Hello{Version: Version, Client: cfg.Client}}}); err != nil {
		return streamEnd(err, stream)
	}
	// A reader takes the tasks off the stream, so that the end of the
	// stream cancels the handler's context even while it works.
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	tasks := make(chan *Request)
	var readErr error
	go func() {
		defer close(tasks)
		defer hcancel()
		for {
			req, err := receiveTask(stream)
			if err != nil {
				readErr = err
				return
			}
			select {
			case tasks <- req:
			case <-hctx.Done():
				return
			}
		}
	}()
	for req := range tasks {
		start := time.Now()
		rep, herr := h(hctx, req)
		compute := time.Since(start).Seconds()
		var err error
		if herr != nil {
			err = stream.Send(&pb.FromTrainer{Body: &pb.FromTrainer_Failure{Failure: &pb.Failure{Task: req.ID, Message: herr.Error()}}})
		} else {
			err = sendReply(stream, req, rep, compute)
		}
		if err != nil {
			hcancel()
			for range tasks {
			}
			if readErr != nil {
				err = readErr
			}
			return streamEnd(err, stream)
		}
	}
	return streamEnd(readErr, stream)
}

// streamEnd returns nil when the node closed its API, and the stream's
// error otherwise.
func streamEnd(err error, stream grpc.BidiStreamingClient[pb.FromTrainer, pb.ToTrainer]) error {
	if errors.Is(err, io.EOF) {
		// Send reports EOF; Recv has the status.
		if _, rerr := stream.Recv(); rerr != nil {
			err = rerr
		}
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.Unavailable && s.Message() == ErrClosed.Error() {
		return nil
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return fmt.Errorf("trainer: %w", err)
}

func receiveTask(stream grpc.BidiStreamingClient[pb.FromTrainer, pb.ToTrainer]) (*Request, error) {
	m, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	t := m.GetTask()
	if t == nil {
		return nil, fmt.Errorf("%w: expected a task, got %T", ErrProtocol, m.GetBody())
	}
	ts, err := tensorsFromPB(t.GetTensors())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	l := Layout{Version: LayoutVersion, Tensors: ts}
	if len(ts) > 0 {
		if err := l.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
		}
	}
	if t.GetDataBytes() != uint64(l.Bytes()) {
		return nil, fmt.Errorf("%w: a task with %d bytes of data for tensors of %d", ErrProtocol, t.GetDataBytes(), l.Bytes())
	}
	data := make([]byte, 0, t.GetDataBytes())
	for uint64(len(data)) < t.GetDataBytes() {
		m, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		c := m.GetChunk()
		if c == nil || uint64(len(data)+len(c.GetData())) > t.GetDataBytes() {
			return nil, fmt.Errorf("%w: bad data of task %d", ErrProtocol, t.GetId())
		}
		data = append(data, c.GetData()...)
	}
	r := &Request{ID: t.GetId(), Kind: Kind(t.GetKind()), Round: fl.Round(t.GetRound()), Seed: t.GetSeed(),
		Timeout: time.Duration(t.GetTimeoutMs()) * time.Millisecond}
	if c := t.GetConfig(); c != nil {
		r.Config = Config{Epochs: int(c.GetEpochs()), Batch: int(c.GetBatch()), LearningRate: c.GetLearningRate(),
			Momentum: c.GetMomentum(), ProxMu: c.GetProxMu(), Rounds: int(c.GetRounds()), Strategy: c.GetStrategy()}
	}
	at := 0
	for _, tt := range ts {
		r.Weights = append(r.Weights, Array{Tensor: tt, Data: data[at : at+tt.Bytes()]})
		at += tt.Bytes()
	}
	return r, nil
}

func sendReply(stream grpc.BidiStreamingClient[pb.FromTrainer, pb.ToTrainer], req *Request, rep *Reply, compute float64) error {
	if rep == nil {
		rep = &Reply{}
	}
	ts := make([]Tensor, len(rep.Weights))
	var data []byte
	for i, a := range rep.Weights {
		ts[i] = a.Tensor
		if req.Kind != Describe {
			data = append(data, a.Data...)
		}
	}
	r := &pb.Reply{Task: req.ID, Delta: rep.Delta, Examples: uint64(max(0, rep.Examples)), Metrics: rep.Metrics,
		Tensors: tensorsToPB(ts), DataBytes: uint64(len(data)), ComputeSeconds: compute}
	if err := stream.Send(&pb.FromTrainer{Body: &pb.FromTrainer_Reply{Reply: r}}); err != nil {
		return err
	}
	for off := 0; off < len(data); off += ChunkSize {
		end := min(off+ChunkSize, len(data))
		if err := stream.Send(&pb.FromTrainer{Body: &pb.FromTrainer_Chunk{Chunk: &pb.Chunk{Data: data[off:end]}}}); err != nil {
			return err
		}
	}
	return nil
}
