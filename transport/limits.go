package transport

import (
	"fmt"

	"github.com/cloisterfl/cloister/round"
)

// Default limits, for the zero fields of [Limits].
const (
	DefaultMaxMessage = 64 << 20 // 64 MiB
	DefaultChunkSize  = 1 << 20  // 1 MiB
)

// Bounds on the fields of [Limits].
const (
	MinChunkSize  = 1 << 10 // 1 KiB
	MaxChunkSize  = 16 << 20
	MaxMaxMessage = 1<<31 - 1 // 2 GiB, so that lengths fit an int everywhere
)

// frameOverhead is what a frame adds to its chunk data at most: the
// header frame (seq, length, digest, a 64-byte claim) and the chunk
// framing take well under this.
const frameOverhead = 1 << 10

// Limits bound what a stream carries. Both ends should use the same values.
//
// A logical message (a serialized round.Message) of up to MaxMessage bytes
// is sent as a header frame followed by chunks of at most ChunkSize bytes,
// so no single gRPC message exceeds ChunkSize plus a small overhead; gRPC's
// own receive limit is set to exactly that. The receiver refuses a header
// that declares more than MaxMessage bytes before it allocates anything.
//
// Package federation derives MaxMessage from the federation manifest
// (federation.MessageSizes): the largest message the federation sends, where an
// upload is one protected update (for mode mhe, the ciphertexts of a
// model-sized vector at the preset's parameters), a Train or Model message
// carries a sealed model (8 bytes per parameter plus the optimizer state),
// and a Setup or Announcements message carries one payload per member.
// It takes the largest of these with a stated margin rather than a round
// number far above it: MaxMessage is also the memory one node can make the
// coordinator hold for one stream.
type Limits struct {
	// MaxMessage is the largest serialized message accepted or sent, in
	// bytes. 0 means DefaultMaxMessage.
	MaxMessage int64
	// ChunkSize is the largest chunk, in bytes, between MinChunkSize and
	// MaxChunkSize. 0 means DefaultChunkSize.
	ChunkSize int
}

// normalize fills the defaults and checks the bounds.
func (l Limits) normalize() (Limits, error) {
	if l.MaxMessage == 0 {
		l.MaxMessage = DefaultMaxMessage
	}
	if l.ChunkSize == 0 {
		l.ChunkSize = DefaultChunkSize
	}
	if l.MaxMessage < 1 || l.MaxMessage > MaxMaxMessage {
		return l, fmt.Errorf("%w: Limits.MaxMessage %d outside 1..%d", ErrConfig, l.MaxMessage, int64(MaxMaxMessage))
	}
	if l.ChunkSize < MinChunkSize || l.ChunkSize > MaxChunkSize {
		return l, fmt.Errorf("%w: Limits.ChunkSize %d outside %d..%d", ErrConfig, l.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	return l, nil
}

// Size returns the length of m's wire encoding: what Limits.MaxMessage
// bounds. It fails as Send would on a message that cannot be encoded.
func Size(m round.Message) (int, error) {
	b, err := marshalMessage(m)
	return len(b), err
}

// frameLimit is the gRPC per-message limit for a chunk size.
func (l Limits) frameLimit() int { return l.ChunkSize + frameOverhead }
