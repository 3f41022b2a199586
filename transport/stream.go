package transport

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/cloisterfl/cloister/transport/internal/pb"
)

// frameStream is the generated stream of either side.
type frameStream interface {
	Send(*pb.Frame) error
	Recv() (*pb.Frame, error)
}

// endpoint is one end of a stream: it cuts outgoing messages into frames,
// one message at a time, and reassembles incoming ones.
type endpoint struct {
	fs      frameStream
	lim     Limits
	metrics *Metrics
	claim   string                  // our sender claim; "" on the coordinator
	abort   context.CancelCauseFunc // ends the stream
	done    <-chan struct{}         // closed when the stream ends

	sem chan struct{} // held by the one sender
	seq uint64        // seq of the last message sent; guarded by sem

	r *reassembler // used by the one reader only
}

func newEndpoint(fs frameStream, lim Limits, m *Metrics, claim string, ctx context.Context, abort context.CancelCauseFunc) *endpoint {
	return &endpoint{
		fs: fs, lim: lim, metrics: m, claim: claim, abort: abort, done: ctx.Done(),
		sem: make(chan struct{}, 1), r: newReassembler(lim),
	}
}

// errSendAbandoned is the cause of a stream ended because a send's context
// ended while its message was partly written.
type errSendAbandoned struct{ err error }

func (e errSendAbandoned) Error() string {
	return fmt.Sprintf("stream ended: a send was abandoned halfway: %v", e.err)
}
func (e errSendAbandoned) Unwrap() error { return e.err }

// send writes one serialized message. It waits for the sender before it
// (or until ctx ends). A message cut off halfway cannot be resumed, so if
// ctx ends while the message is being written, the stream ends.
func (e *endpoint) send(ctx context.Context, msg []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-e.done:
		return errStreamEnded
	}
	defer func() { <-e.sem }()
	select {
	case <-e.done:
		return errStreamEnded
	default:
	}
	stop := context.AfterFunc(ctx, func() { e.abort(errSendAbandoned{context.Cause(ctx)}) })
	defer stop()
	e.seq++
	for _, f := range chunkFrames(e.seq, e.claim, msg, e.lim.ChunkSize) {
		if err := e.fs.Send(f); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		e.metrics.BytesOut.Add(uint64(proto.Size(f)))
	}
	e.metrics.MessagesOut.Add(1)
	largest(&e.metrics.LargestOut, len(msg))
	return nil
}

// errStreamEnded is returned by send on a stream that has ended; the
// owner replaces it with the reason.
var errStreamEnded = fmt.Errorf("stream ended")

// sendChallenge writes one Challenge frame (between messages). If taken is
// not nil, it is called once the frame is next to be written.
func (e *endpoint) sendChallenge(ctx context.Context, nonce []byte, taken func()) error {
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-e.done:
		return errStreamEnded
	}
	defer func() { <-e.sem }()
	if taken != nil {
		taken()
	}
	select {
	case <-e.done:
		return errStreamEnded
	default:
	}
	f := &pb.Frame{Body: &pb.Frame_Challenge{Challenge: &pb.Challenge{Nonce: nonce}}}
	if err := e.fs.Send(f); err != nil {
		return err
	}
	e.metrics.BytesOut.Add(uint64(proto.Size(f)))
	return nil
}

// received is what recv returns: a message and its sender claim, or a
// challenge.
type received struct {
	msg       []byte
	claim     string
	challenge *pb.Challenge
}

// recv reads frames until a message completes or a challenge arrives. An
// error wrapping ErrFrame or ErrTooLarge is a protocol violation; any other
// error comes from the stream.
func (e *endpoint) recv() (received, error) {
	for {
		f, err := e.fs.Recv()
		if err != nil {
			return received{}, err
		}
		e.metrics.BytesIn.Add(uint64(proto.Size(f)))
		if c, ok := f.GetBody().(*pb.Frame_Challenge); ok {
			if err := e.r.between(); err != nil {
				return received{}, err
			}
			if c.Challenge == nil {
				c.Challenge = &pb.Challenge{}
			}
			if len(c.Challenge.Nonce) > MaxNonce {
				return received{}, fmt.Errorf("%w: challenge with a nonce of %d bytes, at most %d", ErrFrame, len(c.Challenge.Nonce), MaxNonce)
			}
			return received{challenge: c.Challenge}, nil
		}
		msg, claim, err := e.r.add(f)
		if msg != nil {
			largest(&e.metrics.LargestIn, len(msg))
		}
		if err != nil || msg != nil {
			return received{msg: msg, claim: claim}, err
		}
	}
}

// MaxNonce bounds an attestation nonce (attest.Binding's limit).
const MaxNonce = 255
