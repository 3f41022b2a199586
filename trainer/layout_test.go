package trainer_test

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/trainer"
)

// TestLayoutDigest is a known-answer test of the layout's canonical
// encoding and digest: the digest is what manifests pin, so it must not
// drift between builds.
func TestLayoutDigest(t *testing.T) {
	b, err := layout.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	const canonical = `{"version":1,"tensors":[{"name":"w","shape":[2,3],"dtype":"float32"},{"name":"b","shape":[4],"dtype":"float64"},{"name":"s","shape":[],"dtype":"float32"}]}`
	if string(b) != canonical {
		t.Errorf("canonical encoding\n%s\nwant\n%s", b, canonical)
	}
	const want = "e0e3e838dfd1502fdcd0618c74ddbf3fc6e792d840c9d5464bc1f93d2e0ee360"
	if d := digest(t, layout); d != want {
		t.Errorf("digest %s, want %s", d, want)
	}
	scalar := layout
	scalar.Tensors = append([]trainer.Tensor(nil), layout.Tensors...)
	scalar.Tensors[2].Shape = nil
	if d := digest(t, scalar); d != want {
		t.Errorf("a nil shape changes the digest: %s", d)
	}
	if layout.Len() != 11 || layout.Bytes() != 6*4+4*8+4 {
		t.Errorf("Len %d, Bytes %d", layout.Len(), layout.Bytes())
	}
}

func TestLayoutFile(t *testing.T) {
	b, err := layout.File()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(b), "\n") != len(layout.Tensors)+5 {
		t.Errorf("file form not one tensor a line:\n%s", b)
	}
	path := filepath.Join(t.TempDir(), "layout.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := trainer.ReadLayout(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := got.Diff(layout); d != "" || digest(t, got) != digest(t, layout) {
		t.Errorf("read back: %s; digest %s", d, digest(t, got))
	}
	for name, text := range map[string]string{
		"unknown field": `{"version":1,"tensors":[{"name":"w","shape":[2],"dtype":"float32","grad":true}]}`,
		"two values":    `{"version":1,"tensors":[{"name":"w","shape":[2],"dtype":"float32"}]} {}`,
		"not JSON":      `version: 1`,
	} {
		if _, err := trainer.ParseLayout([]byte(text)); !errors.Is(err, trainer.ErrLayout) {
			t.Errorf("%s: %v, want ErrLayout", name, err)
		}
	}
}

func TestLayoutValidate(t *testing.T) {
	f32 := trainer.Float32
	cases := []struct {
		name string
		l    trainer.Layout
		want string
	}{
		{"version", trainer.Layout{Version: 2, Tensors: layout.Tensors}, "version 2"},
		{"empty", trainer.Layout{Version: 1}, "no tensors"},
		{"no name", trainer.Layout{Version: 1, Tensors: []trainer.Tensor{{Shape: []int{1}, DType: f32}}}, "empty name"},
		{"control", trainer.Layout{Version: 1, Tensors: []trainer.Tensor{{Name: "a\nb", Shape: []int{1}, DType: f32}}}, "control character"},
		{"long name", trainer.Layout{Version: 1, Tensors: []trainer.Tensor{{Name: strings.Repeat("x", 257), Shape: []int{1}, DType: f32}}}, "257 bytes"},
		{"duplicate", trainer.Layout{Version: 1, Tensors: []trainer.Tensor{{Name: "a", Shape: []int{1}, DType: f32}, {Name: "a", Shape: []int{2}, DType: f32}}},
			`tensor 2 ("a"): the name is also tensor 1's`},
		{"dtype", trainer.Layout{Version: 1, Tensors: []trainer.Tensor{{Name: "h", Shape: []int{2}, DType: "float16"}}}, `dtype "float16"`},
		{"int", trainer.Layout{Version: 1, Tensors: []trainer.Tensor{{Name: "bn.num_batches_tracked", Shape: []int{}, DType: "int64"}}}, `dtype "int64"`},
		{"zero dim", trainer.Layout{Version: 1, Tensors: []trainer.Tensor{{Name: "z", Shape: []int{3, 0}, DType: f32}}}, "dimension 1 is 0"},
		{"rank", trainer.Layout{Version: 1, Tensors: []trainer.Tensor{{Name: "r", Shape: []int{1, 1, 1, 1, 1, 1, 1, 1, 1}, DType: f32}}}, "9 dimensions"},
		{"huge", trainer.Layout{Version: 1, Tensors: []trainer.Tensor{{Name: "e", Shape: []int{1 << 20, 1 << 20, 1 << 20}, DType: f32}}}, "more than"},
		{"total", trainer.Layout{Version: 1, Tensors: []trainer.Tensor{{Name: "a", Shape: []int{1 << 26}, DType: f32}, {Name: "b", Shape: []int{1<<26 + 1}, DType: f32}}}, "in all"},
	}
	for _, c := range cases {
		err := c.l.Validate()
		if !errors.Is(err, trainer.ErrLayout) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrLayout saying %q", c.name, err, c.want)
		}
	}
	many := trainer.Layout{Version: 1}
	for i := range trainer.MaxTensors + 1 {
		many.Tensors = append(many.Tensors, trainer.Tensor{Name: strings.Repeat("t", 1+i%5) + string(rune('a'+i%26)) + strings.Repeat("x", i/130), Shape: []int{1}, DType: f32})
	}
	if err := many.Validate(); err == nil || !strings.Contains(err.Error(), "10001 tensors") {
		t.Errorf("too many tensors: %v", err)
	}
}

func TestLayoutDiff(t *testing.T) {
	other := trainer.Layout{Version: 1, Tensors: append([]trainer.Tensor(nil), layout.Tensors...)}
	if d := other.Diff(layout); d != "" {
		t.Errorf("equal layouts: %s", d)
	}
	other.Tensors = append(other.Tensors, trainer.Tensor{Name: "extra", Shape: []int{1}, DType: trainer.Float32})
	if d := other.Diff(layout); d != "tensor 4 (extra) is one too many: want 3 tensors" {
		t.Errorf("extra tensor: %s", d)
	}
	if d := layout.Diff(other); d != "tensor 4 (extra) is missing: 3 tensors, want 4" {
		t.Errorf("missing tensor: %s", d)
	}
}

func TestArrayValues(t *testing.T) {
	a, err := trainer.NewArray(trainer.Tensor{Name: "x", Shape: []int{3}, DType: trainer.Float32}, []float64{0.1, -2, math.MaxFloat32})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Data) != 12 {
		t.Fatalf("%d bytes", len(a.Data))
	}
	v, err := a.Values()
	if err != nil || v[0] != float64(float32(0.1)) || v[1] != -2 || v[2] != math.MaxFloat32 {
		t.Errorf("Values() = %v, %v", v, err)
	}
	if _, err := trainer.NewArray(trainer.Tensor{Name: "x", Shape: []int{2}, DType: trainer.Float32}, []float64{1}); err == nil {
		t.Error("NewArray with too few values: no error")
	}
}
