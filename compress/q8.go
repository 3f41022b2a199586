package compress

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/cloisterfl/cloister/fl"
)

// Quantized is a vector in 8-bit codes: bucket j covers values
// [j·Bucket, (j+1)·Bucket) and value i decodes to Lo[j] + Code[i]·Step[j].
type Quantized struct {
	Bucket int
	Lo     []float32
	Step   []float32
	Code   []uint8
}

// Len returns the number of values.
func (q *Quantized) Len() int { return len(q.Code) }

// Vector returns the decoded values.
func (q *Quantized) Vector() fl.Vector {
	v := make(fl.Vector, len(q.Code))
	for i, c := range q.Code {
		j := i / q.Bucket
		v[i] = float64(q.Lo[j]) + float64(c)*float64(q.Step[j])
	}
	return v
}

// WireSize returns 9 + 8·buckets + Len.
func (q *Quantized) WireSize() int { return 9 + 8*len(q.Lo) + len(q.Code) }

func buckets(n, size int) int { return (n + size - 1) / size }

// MarshalBinary encodes 'Q', the length and the bucket size (uint32 each),
// each bucket's lower end and step (float32), then the codes, little-endian.
func (q *Quantized) MarshalBinary() ([]byte, error) {
	if q.Bucket < 1 || len(q.Code) > MaxLen || len(q.Lo) != buckets(len(q.Code), q.Bucket) || len(q.Step) != len(q.Lo) {
		return nil, fmt.Errorf("%w: quantized vector of length %d, bucket %d, %d lower ends and %d steps", ErrFormat, len(q.Code), q.Bucket, len(q.Lo), len(q.Step))
	}
	b := header(tagQuantized, len(q.Code), q.WireSize())
	b = binary.LittleEndian.AppendUint32(b, uint32(q.Bucket))
	for j := range q.Lo {
		b = appendFloat32(b, q.Lo[j])
		b = appendFloat32(b, q.Step[j])
	}
	return append(b, q.Code...), nil
}

// UnmarshalBinary decodes MarshalBinary's output. Lower ends and steps must
// be finite and steps non-negative.
func (q *Quantized) UnmarshalBinary(data []byte) error {
	n, err := readHeader(data, tagQuantized, "quantized")
	if err != nil {
		return err
	}
	if len(data) < 9 {
		return fmt.Errorf("%w: quantized payload of %d bytes, shorter than its header", ErrFormat, len(data))
	}
	size := binary.LittleEndian.Uint32(data[5:9])
	if size < 1 || size > MaxLen {
		return fmt.Errorf("%w: quantized bucket size %d outside [1, %d]", ErrFormat, size, MaxLen)
	}
	nb := buckets(n, int(size))
	if len(data) != 9+8*nb+n {
		return fmt.Errorf("%w: quantized payload of length %d has %d bytes, want %d", ErrFormat, n, len(data), 9+8*nb+n)
	}
	lo, step := make([]float32, nb), make([]float32, nb)
	for j := range nb {
		var ok1, ok2 bool
		lo[j], ok1 = readFloat32(data[9+8*j:])
		step[j], ok2 = readFloat32(data[13+8*j:])
		if !ok1 || !ok2 || step[j] < 0 {
			return fmt.Errorf("%w: quantized bucket %d has lower end %v and step %v", ErrFormat, j, lo[j], step[j])
		}
	}
	code := make([]uint8, n)
	copy(code, data[9+8*nb:])
	*q = Quantized{Bucket: int(size), Lo: lo, Step: step, Code: code}
	return nil
}

// Q8 is unbiased 8-bit stochastic quantization with buckets of Bucket
// values (DefaultBucket when 0). It keeps no state.
type Q8 struct {
	Bucket int
}

// Encode quantizes v. rng must not be nil: the rounding is random, which
// is what makes the decoded vector unbiased.
func (e Q8) Encode(v fl.Vector, rng *rand.Rand) (Payload, error) {
	if rng == nil {
		return nil, fmt.Errorf("%w: q8 needs a *rand.Rand for its stochastic rounding", ErrSpec)
	}
	size := e.Bucket
	if size == 0 {
		size = DefaultBucket
	}
	if size < 1 || size > MaxLen {
		return nil, fmt.Errorf("%w: q8 bucket size %d outside [1, %d]", ErrSpec, size, MaxLen)
	}
	if err := checkFloat32(v); err != nil {
		return nil, err
	}
	nb := buckets(len(v), size)
	q := &Quantized{Bucket: size, Lo: make([]float32, nb), Step: make([]float32, nb), Code: make([]uint8, len(v))}
	for j := range nb {
		part := v[j*size : min(len(v), (j+1)*size)]
		lo, hi := part[0], part[0]
		for _, x := range part {
			lo, hi = min(lo, x), max(hi, x)
		}
		// Round the lower end down and the step up to float32, so that
		// every value lies in [lo, lo + 255·step] in exact arithmetic
		// on the float32 values the receiver will use.
		lo32 := float32(lo)
		if float64(lo32) > lo {
			lo32 = math.Nextafter32(lo32, float32(math.Inf(-1)))
		}
		span := hi - float64(lo32)
		if span > math.MaxFloat32/2 {
			return nil, fmt.Errorf("%w: values %g to %g in bucket %d span more than q8 can encode", ErrRange, lo, hi, j)
		}
		var step32 float32
		if span > 0 {
			step32 = float32(span / 255)
			for float64(lo32)+255*float64(step32) < hi {
				step32 = math.Nextafter32(step32, float32(math.Inf(1)))
			}
		}
		q.Lo[j], q.Step[j] = lo32, step32
		if step32 == 0 {
			continue // every value equals lo32: code 0
		}
		l, s := float64(lo32), float64(step32)
		for i, x := range part {
			t := (x - l) / s
			c := math.Floor(t)
			if rng.Float64() < t-c {
				c++
			}
			q.Code[j*size+i] = uint8(min(255, max(0, c)))
		}
	}
	return q, nil
}
