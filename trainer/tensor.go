package trainer

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/trainer/internal/pb"
)

// Array is a tensor with its data: the tensor's values, little-endian, in
// row-major order.
type Array struct {
	Tensor
	Data []byte
}

// NewArray returns the array of tensor t holding values (len(values) must
// be t.Len()), rounded to t's dtype.
func NewArray(t Tensor, values []float64) (Array, error) {
	if t.DType.Size() == 0 {
		return Array{}, fmt.Errorf("trainer: tensor %s: dtype %q", t.Name, t.DType)
	}
	if len(values) != t.Len() {
		return Array{}, fmt.Errorf("trainer: tensor %s: %d values for shape %v", t.Name, len(values), t.Shape)
	}
	a := Array{Tensor: t, Data: make([]byte, t.Bytes())}
	putValues(a.Data, t.DType, values)
	return a, nil
}

// Values returns the array's values as float64.
func (a Array) Values() ([]float64, error) {
	if a.DType.Size() == 0 || len(a.Data) != a.Bytes() {
		return nil, fmt.Errorf("trainer: tensor %s: %d bytes of data for %v %s", a.Name, len(a.Data), a.Shape, a.DType)
	}
	v := make([]float64, a.Len())
	getValues(v, a.DType, a.Data)
	return v, nil
}

func putValues(dst []byte, d DType, v []float64) {
	switch d {
	case Float32:
		for i, x := range v {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(float32(x)))
		}
	case Float64:
		for i, x := range v {
			binary.LittleEndian.PutUint64(dst[8*i:], math.Float64bits(x))
		}
	}
}

func getValues(dst []float64, d DType, b []byte) {
	switch d {
	case Float32:
		for i := range dst {
			dst[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
		}
	case Float64:
		for i := range dst {
			dst[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
	}
}

// encode returns the wire data of v laid out as l, and the values as the
// trainer receives them (rounded to each tensor's dtype). A value that
// does not fit its dtype (beyond float32's range) is refused, naming the
// tensor and the index.
func encode(l Layout, v fl.Vector) (data []byte, sent fl.Vector, err error) {
	if len(v) != l.Len() {
		return nil, nil, fmt.Errorf("trainer: a vector of %d values for a layout of %d: %w", len(v), l.Len(), fl.ErrDimension)
	}
	data = make([]byte, l.Bytes())
	sent = make(fl.Vector, len(v))
	off, at := 0, 0
	for _, t := range l.Tensors {
		n := t.Len()
		putValues(data[at:], t.DType, v[off:off+n])
		getValues(sent[off:off+n], t.DType, data[at:])
		for i, x := range sent[off : off+n] {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, nil, fmt.Errorf("trainer: tensor %s: value %v at %v does not fit %s", t.Name, v[off+i], index(t.Shape, i), t.DType)
			}
		}
		off += n
		at += t.Bytes()
	}
	return data, sent, nil
}

// decode reads wire data laid out as l into a vector. Every value must be
// finite: the error names the tensor and the index of the first that is
// not.
func decode(l Layout, data []byte) (fl.Vector, error) {
	if len(data) != l.Bytes() {
		return nil, fmt.Errorf("%d bytes of data for a layout of %d", len(data), l.Bytes())
	}
	v := make(fl.Vector, l.Len())
	off, at := 0, 0
	for _, t := range l.Tensors {
		n := t.Len()
		getValues(v[off:off+n], t.DType, data[at:])
		for i, x := range v[off : off+n] {
			switch {
			case math.IsNaN(x):
				return nil, fmt.Errorf("tensor %s: NaN at %v", t.Name, index(t.Shape, i))
			case math.IsInf(x, 0):
				return nil, fmt.Errorf("tensor %s: %v at %v", t.Name, x, index(t.Shape, i))
			}
		}
		off += n
		at += t.Bytes()
	}
	return v, nil
}

// index returns the multi-index of flat position i in a row-major shape.
func index(shape []int, i int) []int {
	idx := make([]int, len(shape))
	for k := len(shape) - 1; k >= 0; k-- {
		idx[k] = i % shape[k]
		i /= shape[k]
	}
	return idx
}

func tensorsToPB(ts []Tensor) []*pb.Tensor {
	out := make([]*pb.Tensor, len(ts))
	for i, t := range ts {
		shape := make([]uint64, len(t.Shape))
		for k, d := range t.Shape {
			shape[k] = uint64(d)
		}
		out[i] = &pb.Tensor{Name: t.Name, Shape: shape, Dtype: dtypeToPB(t.DType)}
	}
	return out
}

// tensorsFromPB converts the wire's tensors, refusing what no layout may
// hold (so that sizes computed from them cannot overflow).
func tensorsFromPB(ts []*pb.Tensor) ([]Tensor, error) {
	if len(ts) > MaxTensors {
		return nil, fmt.Errorf("%d tensors, at most %d", len(ts), MaxTensors)
	}
	out := make([]Tensor, len(ts))
	for i, t := range ts {
		if len(t.GetShape()) > MaxRank {
			return nil, fmt.Errorf("tensor %d (%q): %d dimensions, at most %d", i+1, truncate(t.GetName()), len(t.GetShape()), MaxRank)
		}
		shape := make([]int, len(t.GetShape()))
		for k, d := range t.GetShape() {
			if d < 1 || d > MaxParams {
				return nil, fmt.Errorf("tensor %d (%q): dimension %d is %d, want 1..%d", i+1, truncate(t.GetName()), k, d, MaxParams)
			}
			shape[k] = int(d)
		}
		dt, err := dtypeFromPB(t.GetDtype())
		if err != nil {
			return nil, fmt.Errorf("tensor %d (%q): %v", i+1, truncate(t.GetName()), err)
		}
		out[i] = Tensor{Name: t.GetName(), Shape: shape, DType: dt}
	}
	return out, nil
}

func dtypeToPB(d DType) pb.DType {
	switch d {
	case Float32:
		return pb.DType_DTYPE_FLOAT32
	case Float64:
		return pb.DType_DTYPE_FLOAT64
	}
	return pb.DType_DTYPE_UNSPECIFIED
}

func dtypeFromPB(d pb.DType) (DType, error) {
	switch d {
	case pb.DType_DTYPE_FLOAT32:
		return Float32, nil
	case pb.DType_DTYPE_FLOAT64:
		return Float64, nil
	}
	return "", fmt.Errorf("dtype %v, want float32 or float64", d)
}
