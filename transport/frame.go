package transport

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/transport/internal/pb"
)

// Framing. A logical message is its serialized bytes, sent as
//
//	Header{seq, length, digest = SHA-256(bytes), from}
//	Chunk{offset 0, data[0:c]}, Chunk{offset c, data[c:2c]}, …
//
// with every chunk of 1 to ChunkSize bytes. seq counts the messages of one
// stream direction from 1. The receiver accepts exactly this and nothing
// else: any other frame is an error that ends the stream.

// chunkFrames cuts msg into its frames.
func chunkFrames(seq uint64, from string, msg []byte, chunk int) []*pb.Frame {
	sum := sha256.Sum256(msg)
	fs := make([]*pb.Frame, 0, 1+(len(msg)+chunk-1)/chunk)
	fs = append(fs, &pb.Frame{Body: &pb.Frame_Header{Header: &pb.Header{
		Seq: seq, Length: uint64(len(msg)), Digest: sum[:], From: from,
	}}})
	for off := 0; off < len(msg); off += chunk {
		end := min(off+chunk, len(msg))
		fs = append(fs, &pb.Frame{Body: &pb.Frame_Chunk{Chunk: &pb.Chunk{
			Offset: uint64(off), Data: msg[off:end],
		}}})
	}
	return fs
}

// reassembler rebuilds logical messages from frames. Its zero value is not
// usable; see newReassembler.
type reassembler struct {
	max   int64 // Limits.MaxMessage
	chunk int   // Limits.ChunkSize

	seq  uint64     // seq of the last complete message
	hdr  *pb.Header // the message in progress, nil between messages
	want int        // hdr.Length
	buf  []byte
}

func newReassembler(l Limits) *reassembler {
	return &reassembler{max: l.MaxMessage, chunk: l.ChunkSize}
}

// initialCap bounds the first allocation for a message: the buffer grows
// with the chunks that actually arrive, not with the declared length.
const initialCap = 4 << 20

// add takes the next frame. When the frame completes a message, add
// returns the message's bytes and its sender claim; otherwise msg is nil.
// Errors wrap ErrFrame or ErrTooLarge; after an error the stream is
// unusable.
func (r *reassembler) add(f *pb.Frame) (msg []byte, from string, err error) {
	switch b := f.GetBody().(type) {
	case *pb.Frame_Header:
		return nil, "", r.header(b.Header)
	case *pb.Frame_Chunk:
		return r.chunkFrame(b.Chunk)
	default:
		return nil, "", fmt.Errorf("%w: frame with neither header nor chunk", ErrFrame)
	}
}

// between checks that no message is in progress: a challenge frame may
// only come between messages.
func (r *reassembler) between() error {
	if r.hdr != nil {
		return fmt.Errorf("%w: challenge while message %d has only %d of its %d bytes", ErrFrame, r.hdr.Seq, len(r.buf), r.want)
	}
	return nil
}

func (r *reassembler) header(h *pb.Header) error {
	if h == nil {
		return fmt.Errorf("%w: empty header", ErrFrame)
	}
	if r.hdr != nil {
		return fmt.Errorf("%w: header of message %d while message %d has only %d of its %d bytes",
			ErrFrame, h.Seq, r.hdr.Seq, len(r.buf), r.want)
	}
	if h.Seq != r.seq+1 {
		return fmt.Errorf("%w: header of message %d, want message %d", ErrFrame, h.Seq, r.seq+1)
	}
	if h.Length == 0 {
		return fmt.Errorf("%w: message %d declares 0 bytes", ErrFrame, h.Seq)
	}
	if h.Length > uint64(r.max) {
		return fmt.Errorf("%w: message %d declares %d bytes, the limit is %d", ErrTooLarge, h.Seq, h.Length, r.max)
	}
	if len(h.Digest) != sha256.Size {
		return fmt.Errorf("%w: message %d has a digest of %d bytes, want %d", ErrFrame, h.Seq, len(h.Digest), sha256.Size)
	}
	if len(h.From) > fl.MaxNameLen {
		return fmt.Errorf("%w: message %d claims a sender name of %d bytes, at most %d are allowed", ErrFrame, h.Seq, len(h.From), fl.MaxNameLen)
	}
	r.hdr = h
	r.want = int(h.Length)
	r.buf = make([]byte, 0, min(r.want, initialCap))
	return nil
}

func (r *reassembler) chunkFrame(c *pb.Chunk) ([]byte, string, error) {
	if c == nil {
		return nil, "", fmt.Errorf("%w: empty chunk frame", ErrFrame)
	}
	if r.hdr == nil {
		return nil, "", fmt.Errorf("%w: chunk at offset %d of no message (want the header of message %d)", ErrFrame, c.Offset, r.seq+1)
	}
	seq := r.hdr.Seq
	switch {
	case c.Offset != uint64(len(r.buf)):
		return nil, "", fmt.Errorf("%w: message %d: chunk at offset %d, want offset %d (out of order)", ErrFrame, seq, c.Offset, len(r.buf))
	case len(c.Data) == 0:
		return nil, "", fmt.Errorf("%w: message %d: empty chunk at offset %d", ErrFrame, seq, c.Offset)
	case len(c.Data) > r.chunk:
		return nil, "", fmt.Errorf("%w: message %d: chunk of %d bytes, the chunk size is %d", ErrFrame, seq, len(c.Data), r.chunk)
	case len(c.Data) > r.want-len(r.buf):
		return nil, "", fmt.Errorf("%w: message %d: chunk of %d bytes at offset %d overruns the declared %d bytes", ErrFrame, seq, len(c.Data), c.Offset, r.want)
	}
	if need := len(r.buf) + len(c.Data); need > cap(r.buf) {
		// Double, but never beyond the declared length.
		nb := make([]byte, len(r.buf), min(r.want, max(2*cap(r.buf), need)))
		copy(nb, r.buf)
		r.buf = nb
	}
	r.buf = append(r.buf, c.Data...)
	if len(r.buf) < r.want {
		return nil, "", nil
	}
	sum := sha256.Sum256(r.buf)
	if subtle.ConstantTimeCompare(sum[:], r.hdr.Digest) != 1 {
		return nil, "", fmt.Errorf("%w: message %d: digest mismatch: header says %x…, the %d bytes hash to %x…", ErrFrame, seq, r.hdr.Digest[:8], len(r.buf), sum[:8])
	}
	msg, from := r.buf, r.hdr.From
	r.seq, r.hdr, r.buf, r.want = seq, nil, nil, 0
	return msg, from, nil
}
