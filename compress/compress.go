package compress

import (
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"strconv"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/spec"
)

var (
	// ErrSpec reports a scheme spec that Parse cannot read.
	ErrSpec = errors.New("compress: bad spec")
	// ErrNonFinite reports a NaN or infinite value in a vector to encode.
	ErrNonFinite = errors.New("compress: non-finite value")
	// ErrRange reports a value too large for the encoding: beyond float32
	// for the payloads, beyond [Quantizer.MaxAbs] for a Quantizer.
	ErrRange = errors.New("compress: value out of range")
	// ErrFormat reports a payload or an integer encoding that does not
	// decode: wrong tag, wrong length, indices out of order, and so on.
	ErrFormat = errors.New("compress: malformed payload")
)

// MaxLen is the longest vector a payload may carry: 2²⁷ values, the
// model package's MaxParams.
const MaxLen = 1 << 27

// DefaultBucket is the number of values that share one lower end and step
// in 8-bit quantization.
const DefaultBucket = 256

// Payload tags, the first byte of every binary payload.
const (
	tagDense     = 'D'
	tagSparse    = 'S'
	tagQuantized = 'Q'
)

// A Payload is one encoded update: what a node puts on the wire.
type Payload interface {
	// Len returns the length of the vector it encodes.
	Len() int
	// Vector returns the decoded vector, a new slice.
	Vector() fl.Vector
	// WireSize returns the exact length of MarshalBinary's output.
	WireSize() int
	encoding.BinaryMarshaler
}

// An Encoder compresses one node's updates. Encoders with memory (TopK)
// belong to one node and are not safe for concurrent use.
type Encoder interface {
	// Encode compresses v, reading any randomness from rng. It does not
	// modify v.
	Encode(v fl.Vector, rng *mrand.Rand) (Payload, error)
}

// Scheme is a parsed compression spec; see the package documentation.
// The zero Scheme is "none".
type Scheme struct {
	kind   string // "", "topk" or "q8"
	frac   float64
	bucket int
}

// Parse reads a compression spec: "none" (or ""), "topk:F" with F in
// (0, 1] the fraction of coordinates sent, "q8" or "q8:B" with B ≥ 1 the
// bucket size.
func Parse(text string) (Scheme, error) {
	s, err := spec.Parse(text)
	if err != nil {
		return Scheme{}, fmt.Errorf("%w %w", ErrSpec, err)
	}
	fail := func(format string, a ...any) (Scheme, error) {
		return Scheme{}, fmt.Errorf("%w %w", ErrSpec, s.Errorf(format, a...))
	}
	switch s.Name {
	case "", "none":
		if s.HasArg {
			return fail("none takes no argument")
		}
		return Scheme{}, nil
	case "topk":
		if !s.HasArg {
			return fail("topk needs the fraction of coordinates to send, as in topk:0.01")
		}
		f, err := strconv.ParseFloat(s.Arg, 64)
		if err != nil || !(f > 0 && f <= 1) {
			return fail("fraction %q is not a number in (0, 1]", s.Arg)
		}
		return Scheme{kind: "topk", frac: f}, nil
	case "q8":
		b := DefaultBucket
		if s.HasArg {
			n, err := strconv.Atoi(s.Arg)
			if err != nil || n < 1 || n > MaxLen {
				return fail("bucket size %q is not an integer in [1, %d]", s.Arg, MaxLen)
			}
			b = n
		}
		return Scheme{kind: "q8", bucket: b}, nil
	}
	return fail("unknown scheme %q (want none, topk:F or q8)", s.Name)
}

// String returns the canonical spec, which Parse accepts back.
func (s Scheme) String() string {
	switch s.kind {
	case "topk":
		return "topk:" + strconv.FormatFloat(s.frac, 'g', -1, 64)
	case "q8":
		if s.bucket == DefaultBucket {
			return "q8"
		}
		return "q8:" + strconv.Itoa(s.bucket)
	}
	return "none"
}

// NewEncoder returns a fresh encoder for one node: a TopK with an empty
// residual, a Q8, or the dense float32 encoder.
func (s Scheme) NewEncoder() Encoder {
	switch s.kind {
	case "topk":
		return &TopK{frac: s.frac}
	case "q8":
		return Q8{Bucket: s.bucket}
	}
	return denseEncoder{}
}

// IsNone reports whether s is "none", dense float32.
func (s Scheme) IsNone() bool { return s.kind == "" }

// WireSize returns the exact length of every payload s encodes for a
// vector of d values: 5 + 4d for none, 9 + 8k with k = ⌈F·d⌉ for topk:F
// (an encoder always sends exactly k), 9 + d + 8⌈d/B⌉ for q8:B. A receiver
// that knows d and s accepts no other length.
func (s Scheme) WireSize(d int) int {
	switch s.kind {
	case "topk":
		return 9 + 8*(&TopK{frac: s.frac}).K(d)
	case "q8":
		return 9 + d + 8*buckets(d, s.bucket)
	}
	return 5 + 4*d
}

// Stream is one sender's compression of its successive updates, in
// binary form: a Scheme's encoder within a limit ([Scheme.NewEncoderWithin]),
// started afresh when the updates' length changes (a top-k residual of
// another length does not apply). It is not safe for concurrent use.
type Stream struct {
	scheme Scheme
	limit  float64
	enc    Encoder
	dim    int
}

// NewStream returns a stream of s's payloads whose values stay within
// limit.
func (s Scheme) NewStream(limit float64) *Stream {
	return &Stream{scheme: s, limit: limit}
}

// Marshal encodes v and returns the payload's bytes, exactly
// s.WireSize(len(v)) of them. q8's stochastic rounding reads its
// randomness from a ChaCha8 stream seeded with 32 bytes of rand. On error
// the stream is as it was (a TopK keeps its residual).
func (st *Stream) Marshal(v fl.Vector, rand io.Reader) ([]byte, error) {
	enc := st.enc
	if enc == nil || st.dim != len(v) {
		enc = st.scheme.NewEncoderWithin(st.limit)
	}
	var seed [32]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("compress: drawing the rounding seed: %w", err)
	}
	p, err := enc.Encode(v, mrand.New(mrand.NewChaCha8(seed)))
	if err != nil {
		return nil, err
	}
	b, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if want := st.scheme.WireSize(len(v)); len(b) != want {
		return nil, fmt.Errorf("%w: a %s encoder made %d bytes for %d values, want %d", ErrFormat, st.scheme, len(b), len(v), want)
	}
	st.enc, st.dim = enc, len(v)
	return b, nil
}

// Decode reads a payload that s encoded for a vector of d values: of s's
// kind (and bucket size, for q8), of exactly [Scheme.WireSize] bytes. It
// checks the length before it allocates anything.
func (s Scheme) Decode(data []byte, d int) (fl.Vector, error) {
	if d < 0 || d > MaxLen {
		return nil, fmt.Errorf("%w: expected length %d outside [0, %d]", ErrFormat, d, MaxLen)
	}
	if want := s.WireSize(d); len(data) != want {
		return nil, fmt.Errorf("%w: %s payload of %d values has %d bytes, want %d", ErrFormat, s, d, len(data), want)
	}
	tag := map[string]byte{"": tagDense, "topk": tagSparse, "q8": tagQuantized}[s.kind]
	if data[0] != tag {
		return nil, fmt.Errorf("%w: tag %#x is not a %s payload", ErrFormat, data[0], s)
	}
	if s.kind == "q8" {
		if b := int(binary.LittleEndian.Uint32(data[5:9])); b != s.bucket {
			return nil, fmt.Errorf("%w: q8 payload with buckets of %d values, want %d", ErrFormat, b, s.bucket)
		}
	}
	return Decode(data, d)
}

// NewEncoderWithin is NewEncoder for a receiver that takes no value
// beyond limit: a TopK refuses (ErrRange, its residual unchanged) an
// update that, added to its residual, exceeds limit anywhere, so that
// what it sends never does. Inputs within limit encode to values within
// limit under none and topk, within limit plus one bucket's step under q8.
func (s Scheme) NewEncoderWithin(limit float64) Encoder {
	e := s.NewEncoder()
	if t, ok := e.(*TopK); ok {
		t.limit = limit
	}
	return e
}

// Decode reads a binary payload of any kind and returns the vector it
// encodes. dim is the length the receiver expects (the model's), checked
// before anything is allocated, so a hostile payload cannot claim a huge
// vector.
func Decode(data []byte, dim int) (fl.Vector, error) {
	if dim < 0 || dim > MaxLen {
		return nil, fmt.Errorf("%w: expected length %d outside [0, %d]", ErrFormat, dim, MaxLen)
	}
	if len(data) < 5 {
		return nil, fmt.Errorf("%w: %d bytes, shorter than a header", ErrFormat, len(data))
	}
	if n := int(binary.LittleEndian.Uint32(data[1:5])); n != dim {
		return nil, fmt.Errorf("%w: payload of length %d, want %d", ErrFormat, n, dim)
	}
	var p interface {
		Payload
		encoding.BinaryUnmarshaler
	}
	switch data[0] {
	case tagDense:
		p = new(Dense)
	case tagSparse:
		p = new(Sparse)
	case tagQuantized:
		p = new(Quantized)
	default:
		return nil, fmt.Errorf("%w: unknown tag %#x", ErrFormat, data[0])
	}
	if err := p.UnmarshalBinary(data); err != nil {
		return nil, err
	}
	return p.Vector(), nil
}

// checkFloat32 reports the first value of v that is not finite or does not
// fit a float32.
func checkFloat32(v fl.Vector) error {
	if len(v) > MaxLen {
		return fmt.Errorf("%w: vector of length %d, more than %d", ErrRange, len(v), MaxLen)
	}
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%w: element %d is %v", ErrNonFinite, i, x)
		}
		if math.Abs(x) > math.MaxFloat32 {
			return fmt.Errorf("%w: element %d is %g, beyond float32", ErrRange, i, x)
		}
	}
	return nil
}

// header appends the tag and the vector length.
func header(tag byte, n, size int) []byte {
	b := make([]byte, 5, size)
	b[0] = tag
	binary.LittleEndian.PutUint32(b[1:], uint32(n))
	return b
}

// readHeader checks the tag and returns the length.
func readHeader(data []byte, tag byte, what string) (int, error) {
	if len(data) < 5 || data[0] != tag {
		return 0, fmt.Errorf("%w: not a %s payload", ErrFormat, what)
	}
	n := binary.LittleEndian.Uint32(data[1:5])
	if n > MaxLen {
		return 0, fmt.Errorf("%w: %s payload of length %d, more than %d", ErrFormat, what, n, MaxLen)
	}
	return int(n), nil
}

func appendFloat32(b []byte, x float32) []byte {
	return binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
}

func readFloat32(b []byte) (float32, bool) {
	x := math.Float32frombits(binary.LittleEndian.Uint32(b))
	return x, !math.IsNaN(float64(x)) && !math.IsInf(float64(x), 0)
}

// Dense is an uncompressed update in float32: the baseline.
type Dense struct {
	Values []float32
}

type denseEncoder struct{}

func (denseEncoder) Encode(v fl.Vector, _ *mrand.Rand) (Payload, error) {
	if err := checkFloat32(v); err != nil {
		return nil, err
	}
	d := &Dense{Values: make([]float32, len(v))}
	for i, x := range v {
		d.Values[i] = float32(x)
	}
	return d, nil
}

// Len returns the number of values.
func (d *Dense) Len() int { return len(d.Values) }

// Vector returns the values as float64.
func (d *Dense) Vector() fl.Vector {
	v := make(fl.Vector, len(d.Values))
	for i, x := range d.Values {
		v[i] = float64(x)
	}
	return v
}

// WireSize returns 5 + 4·Len.
func (d *Dense) WireSize() int { return 5 + 4*len(d.Values) }

// MarshalBinary encodes 'D', the length (uint32) and the float32 values,
// little-endian.
func (d *Dense) MarshalBinary() ([]byte, error) {
	b := header(tagDense, len(d.Values), d.WireSize())
	for _, x := range d.Values {
		b = appendFloat32(b, x)
	}
	return b, nil
}

// UnmarshalBinary decodes MarshalBinary's output. It rejects non-finite
// values.
func (d *Dense) UnmarshalBinary(data []byte) error {
	n, err := readHeader(data, tagDense, "dense")
	if err != nil {
		return err
	}
	if len(data) != 5+4*n {
		return fmt.Errorf("%w: dense payload of length %d has %d bytes, want %d", ErrFormat, n, len(data), 5+4*n)
	}
	vals := make([]float32, n)
	for i := range vals {
		x, ok := readFloat32(data[5+4*i:])
		if !ok {
			return fmt.Errorf("%w: dense element %d is not finite", ErrFormat, i)
		}
		vals[i] = x
	}
	d.Values = vals
	return nil
}
