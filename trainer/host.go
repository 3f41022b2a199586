package trainer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/trainer/internal/pb"
)

// Version is the trainer API version this package speaks.
const Version = 1

// Wire sizes: data travels in chunks of ChunkSize bytes, and no message of
// either side may exceed MaxMessage (a task's or reply's tensor list at
// the layout bounds fits).
const (
	ChunkSize  = 4 << 20
	MaxMessage = 16 << 20
)

// window is the HTTP/2 flow-control window of both ends: a local socket
// moves a model's chunks fastest when one is never held back by it.
const window = 2 * ChunkSize

// MaxExamples bounds the example count a trainer may report.
const MaxExamples = 1 << 40

// Errors a caller of the Host's tasks may branch on. Every error of a task
// wraps one of them and says which task failed and why: the tensor and the
// problem for a bad reply, the deadline for a hang, the exit status and
// the last lines of output for a crash.
var (
	// ErrNoTrainer: no trainer was attached and ready before the deadline.
	ErrNoTrainer = errors.New("trainer: no trainer attached")
	// ErrTimeout: the trainer did not reply before the task's deadline.
	ErrTimeout = errors.New("trainer: no reply before the deadline")
	// ErrExited: the trainer's stream ended during the task (it crashed,
	// exited or hung up).
	ErrExited = errors.New("trainer: the trainer went away")
	// ErrReply: the reply broke the API's rules: another layout, a NaN or
	// infinite value, a wrong example count, a missing metric.
	ErrReply = errors.New("trainer: bad reply")
	// ErrFailed: the trainer reported that it could not do the task (a
	// Failure); its stream stays open.
	ErrFailed = errors.New("trainer: the trainer failed the task")
	// ErrLayoutMismatch: the trainer describes another layout than the
	// one the manifest pins; the node refuses it.
	ErrLayoutMismatch = errors.New("trainer: the trainer's layout is not the manifest's")
	// ErrProtocol: a message out of order or malformed.
	ErrProtocol = errors.New("trainer: protocol violation")
	// ErrClosed: the Host is closed.
	ErrClosed = errors.New("trainer: the node's trainer API is closed")
	// errReplaced ends a stream when another trainer attaches.
	errReplaced = errors.New("trainer: another trainer attached")
)

// Kind is what a task asks for.
type Kind uint8

// Task kinds, in the order a trainer meets them.
const (
	Describe Kind = Kind(pb.Kind_KIND_DESCRIBE)
	Init     Kind = Kind(pb.Kind_KIND_INIT)
	Train    Kind = Kind(pb.Kind_KIND_TRAIN)
	Evaluate Kind = Kind(pb.Kind_KIND_EVALUATE)
)

func (k Kind) String() string {
	switch k {
	case Describe:
		return "describe"
	case Init:
		return "init"
	case Train:
		return "train"
	case Evaluate:
		return "evaluate"
	}
	return fmt.Sprintf("kind %d", k)
}

// Config is the training schedule a TRAIN task carries: the manifest's.
type Config struct {
	Epochs, Batch          int
	LearningRate, Momentum float64
	ProxMu                 float64 // FedProx μ: the trainer adds μ/2·‖w − w_global‖² to its loss
	Rounds                 int     // the federation's rounds
	Strategy               string  // the server optimizer, applied by the node's leader
}

// TrainTask is a TRAIN task.
type TrainTask struct {
	Round  fl.Round
	Seed   uint64
	Global fl.Vector // the global weights, in layout order
	Config Config
}

// EvalTask is an EVALUATE task.
type EvalTask struct {
	Round  fl.Round
	Seed   uint64
	Global fl.Vector
}

// Result is a TRAIN task's outcome, validated.
type Result struct {
	// Delta is w − w_global, the local update before the node clips,
	// noises and weighs it. When the trainer replies with weights, w_global
	// is the global weights as the trainer received them (rounded to each
	// tensor's dtype), so that a trainer that changes nothing sends Δ = 0.
	Delta    fl.Vector
	Examples int                // training examples (≥ 1)
	Metrics  map[string]float64 // what the trainer reported ("loss", …)
	// Compute is the trainer's own time on the task; Elapsed the node's,
	// from sending the task to holding the validated result. Elapsed −
	// Compute is the API's overhead: transfer, encoding and validation.
	Compute, Elapsed time.Duration
}

// Evaluation is an EVALUATE task's outcome, validated.
type Evaluation struct {
	Metrics fl.Metrics         // accuracy, loss and examples
	Extra   map[string]float64 // every metric the trainer reported
	Compute time.Duration
	Elapsed time.Duration
}

// HostConfig configures a Host.
type HostConfig struct {
	// Layout is the digest of the layout the manifest pins
	// (Layout.Digest); a trainer that describes another is refused with
	// ErrLayoutMismatch. "" accepts any layout (`cloister trainer
	// describe`).
	Layout string
	// Params is the manifest's parameter count, for messages.
	Params int
	// TrainExamples and TestExamples, if not 0, are the example counts the
	// trainer must report for TRAIN and EVALUATE (a node that dealt the
	// trainer its share knows them); 0 checks only that the count is
	// between 1 and MaxExamples.
	TrainExamples, TestExamples int
	// Handshake bounds a new trainer's Hello and its DESCRIBE reply; 0
	// means one minute.
	Handshake time.Duration
	// Process, if set, is the supervised trainer process: after a fault
	// (a task past its deadline, a bad reply, a broken stream) the Host
	// ends the stream and restarts the process, and it names the process's
	// exit and last output in the errors of a crash.
	Process *Process
	// Logger receives the Host's records; nil discards them.
	Logger *slog.Logger
}

// HostStats are a Host's counters.
type HostStats struct {
	Sessions atomic.Uint64 // trainers accepted
	Refused  atomic.Uint64 // trainers refused at the handshake
	Tasks    atomic.Uint64 // tasks that succeeded
	Faults   atomic.Uint64 // tasks that ended their stream (deadline, bad reply, crash)
	Failures atomic.Uint64 // tasks the trainer reported it could not do
	// BytesOut and BytesIn count tensor data sent and received.
	BytesOut, BytesIn atomic.Uint64
}

// Host is the node's end of the trainer API: a gRPC service on the node's
// trainer socket that one trainer at a time attaches to, and the tasks the
// node gives it. It does not listen: the caller makes the listener
// (Listen) and calls Serve. Tasks run one at a time; each waits for a
// trainer to be attached and ready (Hello and a DESCRIBE whose layout has
// the manifest's digest), within its context's deadline.
type Host struct {
	pb.UnimplementedNodeServer
	cfg   HostConfig
	log   *slog.Logger
	srv   *grpc.Server
	stats HostStats
	turn  chan struct{} // a token per task: tasks run one at a time

	mu      sync.Mutex
	cur     *session      // the ready session, nil if none
	changed chan struct{} // closed when cur or refused changes
	refused error         // why the last trainer was refused (a layout mismatch), nil once one is accepted
	last    error         // why the last session ended
	closed  bool
	nsess   uint64
}

// NewHost returns a Host; call Serve with its listener.
func NewHost(cfg HostConfig) *Host {
	if cfg.Handshake <= 0 {
		cfg.Handshake = time.Minute
	}
	h := &Host{cfg: cfg, log: cfg.Logger, changed: make(chan struct{}), turn: make(chan struct{}, 1)}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.srv = grpc.NewServer(grpc.MaxRecvMsgSize(MaxMessage), grpc.MaxSendMsgSize(MaxMessage),
		grpc.InitialWindowSize(window), grpc.InitialConnWindowSize(window))
	pb.RegisterNodeServer(h.srv, h)
	return h
}

// Serve serves the trainer API on l until Close; it returns nil then.
func (h *Host) Serve(l net.Listener) error {
	return h.srv.Serve(l)
}

// Close ends the current trainer's stream and stops the service. Tasks in
// progress fail with ErrClosed.
func (h *Host) Close() {
	h.mu.Lock()
	h.closed = true
	cur := h.cur
	h.cur = nil
	h.signal()
	h.mu.Unlock()
	if cur != nil {
		cur.end(ErrClosed)
	}
	// Let the stream's handler send its status (the trainer then knows
	// the node closed the API), then close whatever is left.
	done := make(chan struct{})
	go func() {
		h.srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		h.srv.Stop()
		<-done
	}
}

// Stats returns the Host's counters.
func (h *Host) Stats() *HostStats { return &h.stats }

// signal wakes the waiters for a session; h.mu is held.
func (h *Host) signal() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// session is one trainer's stream.
type session struct {
	id     uint64
	client string
	stream grpc.BidiStreamingServer[pb.FromTrainer, pb.ToTrainer]
	in     chan *pb.FromTrainer
	done   chan struct{}
	once   sync.Once
	err    error
	layout Layout
	digest string
	next   uint64 // the next task's id
}

func (s *session) end(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done)
	})
}

// Attach is the gRPC method a trainer calls: Hello, the DESCRIBE
// handshake, then tasks until the session ends.
func (h *Host) Attach(stream grpc.BidiStreamingServer[pb.FromTrainer, pb.ToTrainer]) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return status.Error(codes.Unavailable, ErrClosed.Error())
	}
	h.nsess++
	s := &session{id: h.nsess, stream: stream, in: make(chan *pb.FromTrainer), done: make(chan struct{}), next: 1}
	h.mu.Unlock()
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				s.end(fmt.Errorf("%w: its stream ended: %v", ErrExited, err))
				return
			}
			select {
			case s.in <- m:
			case <-s.done:
				return
			}
		}
	}()
	if err := h.handshake(s); err != nil {
		s.end(err)
		code := codes.FailedPrecondition
		if errors.Is(err, ErrExited) {
			code = codes.Canceled
		}
		return status.Error(code, err.Error())
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		s.end(ErrClosed)
		return status.Error(codes.Unavailable, ErrClosed.Error())
	}
	old := h.cur
	h.cur, h.refused = s, nil
	h.signal()
	h.mu.Unlock()
	if old != nil {
		old.end(errReplaced)
		h.log.Warn("a new trainer attached: replacing the previous one", "session", s.id, "previous", old.id)
	}
	h.stats.Sessions.Add(1)
	h.log.Info("trainer attached", "session", s.id, "client", s.client, "tensors", len(s.layout.Tensors),
		"params", s.layout.Len(), "layout", s.digest)
	<-s.done
	h.mu.Lock()
	if h.cur == s {
		h.cur = nil
		h.last = s.err
		h.signal()
	}
	h.mu.Unlock()
	switch {
	case errors.Is(s.err, ErrExited):
		return status.Error(codes.Canceled, s.err.Error())
	case errors.Is(s.err, ErrClosed), errors.Is(s.err, errReplaced):
		return status.Error(codes.Unavailable, s.err.Error())
	}
	return status.Error(codes.Aborted, s.err.Error())
}

// handshake reads the trainer's Hello, asks for its layout and checks it
// against the manifest's digest.
func (h *Host) handshake(s *session) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Handshake)
	defer cancel()
	var m *pb.FromTrainer
	select {
	case m = <-s.in:
	case <-s.done:
		return s.err
	case <-ctx.Done():
		return fmt.Errorf("%w: no Hello within %v", ErrTimeout, h.cfg.Handshake)
	}
	hello := m.GetHello()
	if hello == nil {
		return fmt.Errorf("%w: the first message is not a Hello", ErrProtocol)
	}
	if hello.GetVersion() != Version {
		return fmt.Errorf("%w: the trainer speaks trainer API version %d, this node version %d", ErrProtocol, hello.GetVersion(), Version)
	}
	s.client = truncate(hello.GetClient())
	reply, _, err := h.exchange(ctx, s, &pb.Task{Kind: pb.Kind_KIND_DESCRIBE}, nil)
	if err != nil {
		return fmt.Errorf("describe: %w", err)
	}
	ts, err := tensorsFromPB(reply.GetTensors())
	if err != nil {
		return fmt.Errorf("%w: describe: %v", ErrReply, err)
	}
	if reply.GetDataBytes() != 0 {
		return fmt.Errorf("%w: describe: the reply carries %d bytes of data; a layout has none", ErrReply, reply.GetDataBytes())
	}
	l := Layout{Version: LayoutVersion, Tensors: ts}
	if err := l.Validate(); err != nil {
		return fmt.Errorf("%w: describe: %w", ErrReply, err)
	}
	if s.digest, err = l.Digest(); err != nil {
		return err
	}
	s.layout = l
	if h.cfg.Layout != "" && s.digest != h.cfg.Layout {
		err := fmt.Errorf("%w: it describes layout %s (%d tensors, %d values), the manifest pins %s (%d values); compare with `cloister trainer describe --check LAYOUT -- COMMAND`",
			ErrLayoutMismatch, s.digest, len(l.Tensors), l.Len(), h.cfg.Layout, h.cfg.Params)
		h.stats.Refused.Add(1)
		h.mu.Lock()
		h.refused = err
		h.signal()
		h.mu.Unlock()
		h.log.Error("refusing the trainer", "session", s.id, "client", s.client, "err", err)
		return err
	}
	return nil
}

// exchange sends a task (with its data) and returns the reply and its
// data. The task's id is set here.
func (h *Host) exchange(ctx context.Context, s *session, t *pb.Task, data []byte) (*pb.Reply, []byte, error) {
	t.Id = s.next
	s.next++
	t.DataBytes = uint64(len(data))
	if d, ok := ctx.Deadline(); ok {
		t.TimeoutMs = uint64(max(0, time.Until(d).Milliseconds()))
	}
	sent := make(chan error, 1)
	go func() { sent <- sendTask(s.stream, t, data) }()
	reply, rdata, err := h.receive(ctx, s, t)
	if err != nil {
		return nil, nil, err
	}
	select {
	case err := <-sent:
		if err != nil {
			return nil, nil, fmt.Errorf("%w: sending the task: %v", ErrExited, err)
		}
	case <-s.done:
		return nil, nil, s.err
	case <-ctx.Done(): // it replied without reading the whole task
		return nil, nil, fmt.Errorf("%w: the trainer replied to task %d but did not read its data", ErrProtocol, t.Id)
	}
	h.stats.BytesOut.Add(uint64(len(data)))
	h.stats.BytesIn.Add(uint64(len(rdata)))
	return reply, rdata, nil
}

func sendTask(stream grpc.BidiStreamingServer[pb.FromTrainer, pb.ToTrainer], t *pb.Task, data []byte) error {
	if err := stream.Send(&pb.ToTrainer{Body: &pb.ToTrainer_Task{Task: t}}); err != nil {
		return err
	}
	for off := 0; off < len(data); off += ChunkSize {
		end := min(off+ChunkSize, len(data))
		if err := stream.Send(&pb.ToTrainer{Body: &pb.ToTrainer_Chunk{Chunk: &pb.Chunk{Data: data[off:end]}}}); err != nil {
			return err
		}
	}
	return nil
}

// next returns the session's next message, or why there is none.
func (h *Host) next(ctx context.Context, s *session, t *pb.Task) (*pb.FromTrainer, error) {
	select {
	case m := <-s.in:
		return m, nil
	case <-s.done:
		return nil, s.err
	case <-ctx.Done():
		d := "its deadline"
		if t.TimeoutMs > 0 {
			d = (time.Duration(t.TimeoutMs) * time.Millisecond).Round(100 * time.Millisecond).String()
		}
		return nil, fmt.Errorf("%w: no reply within %s", ErrTimeout, d)
	}
}

// receive reads the reply to task t, with its data: at most the size the
// reply's tensors imply, which must be those of the session's layout
// (checked before the data is read).
func (h *Host) receive(ctx context.Context, s *session, t *pb.Task) (*pb.Reply, []byte, error) {
	m, err := h.next(ctx, s, t)
	if err != nil {
		return nil, nil, err
	}
	if f := m.GetFailure(); f != nil {
		if f.GetTask() != t.Id {
			return nil, nil, fmt.Errorf("%w: a failure of task %d during task %d", ErrProtocol, f.GetTask(), t.Id)
		}
		return nil, nil, fmt.Errorf("%w: %s", ErrFailed, truncateLong(f.GetMessage()))
	}
	reply := m.GetReply()
	if reply == nil {
		return nil, nil, fmt.Errorf("%w: expected the reply to task %d, got %T", ErrProtocol, t.Id, m.GetBody())
	}
	if reply.GetTask() != t.Id {
		return nil, nil, fmt.Errorf("%w: a reply to task %d during task %d", ErrProtocol, reply.GetTask(), t.Id)
	}
	want := uint64(0)
	if t.Kind == pb.Kind_KIND_INIT || t.Kind == pb.Kind_KIND_TRAIN {
		ts, err := tensorsFromPB(reply.GetTensors())
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrReply, err)
		}
		if d := (Layout{Tensors: ts}).Diff(s.layout); d != "" {
			return nil, nil, fmt.Errorf("%w: the weights are not in the layout it described: %s", ErrReply, d)
		}
		want = uint64(s.layout.Bytes())
	} else if len(reply.GetTensors()) > 0 && t.Kind == pb.Kind_KIND_EVALUATE {
		return nil, nil, fmt.Errorf("%w: an evaluation reply with %d tensors; it carries none", ErrReply, len(reply.GetTensors()))
	}
	if t.Kind == pb.Kind_KIND_DESCRIBE {
		return reply, nil, nil // the layout is checked by the caller; data_bytes too
	}
	if reply.GetDataBytes() != want {
		return nil, nil, fmt.Errorf("%w: the reply announces %d bytes of data, its layout has %d", ErrReply, reply.GetDataBytes(), want)
	}
	data := make([]byte, 0, want)
	for uint64(len(data)) < want {
		m, err := h.next(ctx, s, t)
		if err != nil {
			return nil, nil, err
		}
		c := m.GetChunk()
		if c == nil {
			return nil, nil, fmt.Errorf("%w: expected data (%d of %d bytes received), got %T", ErrProtocol, len(data), want, m.GetBody())
		}
		if uint64(len(data)+len(c.GetData())) > want {
			return nil, nil, fmt.Errorf("%w: more data than the %d bytes announced", ErrProtocol, want)
		}
		data = append(data, c.GetData()...)
	}
	return reply, data, nil
}

func truncateLong(s string) string {
	if len(s) > 4096 {
		return s[:4096] + "…"
	}
	return s
}

// acquire waits for this task's turn and for a ready session.
func (h *Host) acquire(ctx context.Context) (*session, error) {
	select {
	case h.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: another task is still running", ErrTimeout)
	}
	for {
		h.mu.Lock()
		cur, refused, last, closed, changed := h.cur, h.refused, h.last, h.closed, h.changed
		h.mu.Unlock()
		if cur != nil {
			select {
			case <-cur.done: // ended; its handler is about to clear it
				cur = nil
			default:
			}
		}
		switch {
		case closed:
			<-h.turn
			return nil, ErrClosed
		case cur != nil:
			return cur, nil
		case refused != nil:
			<-h.turn
			return nil, refused
		}
		select {
		case <-changed:
		case <-ctx.Done():
			<-h.turn
			if last != nil {
				return nil, fmt.Errorf("%w (the last one: %v)", ErrNoTrainer, last)
			}
			return nil, ErrNoTrainer
		}
	}
}

// run runs one task on the current session and handles its failure: a
// fault (anything but the trainer's own Failure) ends the stream and
// restarts the process.
//
// prepare, if set, makes the task's data for the session it runs on (its
// error fails the task without a fault).
func (h *Host) run(ctx context.Context, t *pb.Task, prepare func(*session) ([]byte, error), check func(s *session, r *pb.Reply, data []byte) error) (err error) {
	s, err := h.acquire(ctx)
	if err != nil {
		return fmt.Errorf("%s task: %w", kindName(t.Kind), err)
	}
	defer func() { <-h.turn }()
	var data []byte
	if prepare != nil {
		if data, err = prepare(s); err != nil {
			return fmt.Errorf("%s task: %w", kindName(t.Kind), err)
		}
	}
	reply, rdata, err := h.exchange(ctx, s, t, data)
	if err == nil {
		err = check(s, reply, rdata)
	}
	if err == nil {
		h.stats.Tasks.Add(1)
		return nil
	}
	what := fmt.Sprintf("%s task %d", kindName(t.Kind), t.Id)
	if t.Round > 0 {
		what += fmt.Sprintf(" (round %d)", t.Round)
	}
	if errors.Is(err, ErrFailed) {
		h.stats.Failures.Add(1)
		return fmt.Errorf("%s: %w", what, err)
	}
	if errors.Is(err, ErrExited) && h.cfg.Process != nil {
		if why := h.cfg.Process.exitDetail(5 * time.Second); why != "" {
			err = fmt.Errorf("%w; %s", err, why)
		}
	}
	err = fmt.Errorf("%s: %w", what, err)
	h.stats.Faults.Add(1)
	s.end(err)
	h.mu.Lock()
	if h.cur == s {
		h.cur, h.last = nil, err
		h.signal()
	}
	h.mu.Unlock()
	h.log.Warn("trainer fault: ending its stream", "session", s.id, "err", err)
	if h.cfg.Process != nil {
		h.cfg.Process.Restart(err)
	}
	return err
}

func kindName(k pb.Kind) string { return Kind(k).String() }

// Layout waits for a ready trainer and returns its layout.
func (h *Host) Layout(ctx context.Context) (Layout, error) {
	s, err := h.acquire(ctx)
	if err != nil {
		return Layout{}, err
	}
	defer func() { <-h.turn }()
	return s.layout, nil
}

// Init asks for initial weights made from seed.
func (h *Host) Init(ctx context.Context, seed uint64) (fl.Vector, error) {
	var v fl.Vector
	err := h.run(ctx, &pb.Task{Kind: pb.Kind_KIND_INIT, Seed: seed}, nil, func(s *session, r *pb.Reply, data []byte) error {
		if r.GetDelta() {
			return fmt.Errorf("%w: initial weights sent as a delta", ErrReply)
		}
		var err error
		if v, err = decode(s.layout, data); err != nil {
			return fmt.Errorf("%w: %v", ErrReply, err)
		}
		return checkMetrics(r.GetMetrics())
	})
	return v, err
}

// Train trains from t.Global and returns the validated update.
func (h *Host) Train(ctx context.Context, t TrainTask) (Result, error) {
	start := time.Now()
	cfg := t.Config
	if cfg.Epochs < 0 || cfg.Batch < 0 || cfg.Rounds < 0 || cfg.Epochs > math.MaxUint32 || cfg.Batch > math.MaxUint32 || cfg.Rounds > math.MaxUint32 {
		return Result{}, fmt.Errorf("trainer: train task: epochs %d, batch %d, rounds %d out of range", cfg.Epochs, cfg.Batch, cfg.Rounds)
	}
	task := &pb.Task{Kind: pb.Kind_KIND_TRAIN, Round: uint64(t.Round), Seed: t.Seed, Config: &pb.Config{
		Epochs: uint32(cfg.Epochs), Batch: uint32(cfg.Batch), LearningRate: cfg.LearningRate, Momentum: cfg.Momentum,
		ProxMu: cfg.ProxMu, Rounds: uint32(cfg.Rounds), Strategy: cfg.Strategy,
	}}
	var res Result
	err := h.withWeights(ctx, task, t.Global, func(s *session, sent fl.Vector, r *pb.Reply, data []byte) error {
		v, err := decode(s.layout, data)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrReply, err)
		}
		if !r.GetDelta() {
			if err := v.Add(-1, sent); err != nil {
				return err
			}
		}
		if res.Examples, err = h.examples(r.GetExamples(), h.cfg.TrainExamples, "training"); err != nil {
			return err
		}
		if err := checkMetrics(r.GetMetrics()); err != nil {
			return err
		}
		res.Delta, res.Metrics, res.Compute = v, r.GetMetrics(), seconds(r.GetComputeSeconds())
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	res.Elapsed = time.Since(start)
	res.Compute = min(res.Compute, res.Elapsed)
	return res, nil
}

// Evaluate evaluates t.Global on the trainer's test data.
func (h *Host) Evaluate(ctx context.Context, t EvalTask) (Evaluation, error) {
	start := time.Now()
	task := &pb.Task{Kind: pb.Kind_KIND_EVALUATE, Round: uint64(t.Round), Seed: t.Seed}
	var ev Evaluation
	err := h.withWeights(ctx, task, t.Global, func(_ *session, _ fl.Vector, r *pb.Reply, _ []byte) error {
		n, err := h.examples(r.GetExamples(), h.cfg.TestExamples, "test")
		if err != nil {
			return err
		}
		m := r.GetMetrics()
		if err := checkMetrics(m); err != nil {
			return err
		}
		acc, ok := m["accuracy"]
		if !ok || acc < 0 || acc > 1 {
			return fmt.Errorf("%w: metric \"accuracy\" is %s, want a fraction in [0, 1]", ErrReply, metricText(m, "accuracy"))
		}
		loss, ok := m["loss"]
		if !ok || loss < 0 {
			return fmt.Errorf("%w: metric \"loss\" is %s, want a finite value ≥ 0", ErrReply, metricText(m, "loss"))
		}
		ev = Evaluation{Metrics: fl.Metrics{Accuracy: acc, Loss: loss, Examples: n}, Extra: m, Compute: seconds(r.GetComputeSeconds())}
		return nil
	})
	if err != nil {
		return Evaluation{}, err
	}
	ev.Elapsed = time.Since(start)
	ev.Compute = min(ev.Compute, ev.Elapsed)
	return ev, nil
}

// withWeights runs a task that carries the global weights, encoded in
// the layout of the session it runs on.
func (h *Host) withWeights(ctx context.Context, t *pb.Task, global fl.Vector, check func(s *session, sent fl.Vector, r *pb.Reply, data []byte) error) error {
	var sent fl.Vector
	return h.run(ctx, t, func(s *session) ([]byte, error) {
		t.Tensors = tensorsToPB(s.layout.Tensors)
		data, v, err := encode(s.layout, global)
		sent = v
		return data, err
	}, func(s *session, r *pb.Reply, rdata []byte) error {
		return check(s, sent, r, rdata)
	})
}

func (h *Host) examples(n uint64, want int, what string) (int, error) {
	switch {
	case n == 0:
		return 0, fmt.Errorf("%w: 0 %s examples: a reply counts the examples it used, at least 1", ErrReply, what)
	case n > MaxExamples:
		return 0, fmt.Errorf("%w: %d %s examples, more than %d", ErrReply, n, what, uint64(MaxExamples))
	case want > 0 && n != uint64(want):
		return 0, fmt.Errorf("%w: %d %s examples, but its share has %d", ErrReply, n, what, want)
	}
	return int(n), nil
}

// Metric bounds.
const (
	maxMetrics    = 64
	maxMetricName = 64
)

func checkMetrics(m map[string]float64) error {
	if len(m) > maxMetrics {
		return fmt.Errorf("%w: %d metrics, at most %d", ErrReply, len(m), maxMetrics)
	}
	for k, v := range m {
		if err := checkName(k); err != nil || len(k) > maxMetricName {
			return fmt.Errorf("%w: metric %q: want a printable name of 1 to %d bytes", ErrReply, truncate(k), maxMetricName)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: metric %q is %v", ErrReply, k, v)
		}
	}
	return nil
}

func metricText(m map[string]float64, k string) string {
	v, ok := m[k]
	if !ok {
		return "missing"
	}
	return fmt.Sprint(v)
}

func seconds(s float64) time.Duration {
	if !(s > 0) || s > 1e9 {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}
