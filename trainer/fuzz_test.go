package trainer

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/cloisterfl/cloister/trainer/internal/pb"
)

// FuzzParseLayout: a layout file never panics the parser, and what it
// accepts re-encodes to a layout with the same digest.
func FuzzParseLayout(f *testing.F) {
	f.Add([]byte(`{"version":1,"tensors":[{"name":"w","shape":[2,3],"dtype":"float32"},{"name":"s","shape":[],"dtype":"float64"}]}`))
	f.Add([]byte(`{"version":1,"tensors":[{"name":"w","shape":[1073741824,1073741824],"dtype":"float32"}]}`))
	f.Add([]byte(`{"version":1,"tensors":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLayout(b)
		if err != nil {
			return
		}
		file, err := l.File()
		if err != nil {
			t.Fatalf("a parsed layout has no file form: %v", err)
		}
		again, err := ParseLayout(file)
		if err != nil {
			t.Fatalf("the file form does not parse: %v\n%s", err, file)
		}
		a, _ := l.Digest()
		d, _ := again.Digest()
		if a != d {
			t.Fatalf("digest %s, after a round trip %s", a, d)
		}
	})
}

// FuzzReply: a trainer's reply (its protobuf bytes and data) never panics
// the node's checks: the tensors are converted with bounds, compared with
// the session's layout, and the data decoded only when it has exactly the
// layout's size.
func FuzzReply(f *testing.F) {
	l := Layout{Version: 1, Tensors: []Tensor{{Name: "w", Shape: []int{2, 3}, DType: Float32}, {Name: "b", Shape: []int{2}, DType: Float64}}}
	good, _ := proto.Marshal(&pb.Reply{Task: 1, Examples: 5, Tensors: tensorsToPB(l.Tensors), DataBytes: uint64(l.Bytes())})
	f.Add(good, bytes.Repeat([]byte{0x3f}, l.Bytes()))
	f.Add(good, bytes.Repeat([]byte{0xff}, l.Bytes())) // NaNs
	f.Add([]byte{0x2a, 0x08, 0x0a, 0x01, 0x77, 0x12, 0x03, 0xff, 0xff, 0xff}, []byte{})
	f.Fuzz(func(t *testing.T, msg, data []byte) {
		var r pb.Reply
		if proto.Unmarshal(msg, &r) != nil {
			return
		}
		ts, err := tensorsFromPB(r.GetTensors())
		if err != nil {
			return
		}
		got := Layout{Version: 1, Tensors: ts}
		if got.Diff(l) != "" {
			return
		}
		if v, err := decode(l, data); err == nil && len(v) != l.Len() {
			t.Fatalf("decoded %d values for a layout of %d", len(v), l.Len())
		}
		if err := checkMetrics(r.GetMetrics()); err == nil {
			for k := range r.GetMetrics() {
				if k == "" {
					t.Fatal("an empty metric name passed")
				}
			}
		}
	})
}
