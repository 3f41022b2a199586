package blindscan_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/blindscan"
)

func Example() {
	v := fl.Vector{0.5, -1.25, 3, 7, 0.1, 2, -4, 9} // 8 values: one float32 window
	wins := map[[32]byte]string{}
	blindscan.Windows(v, "model", wins)
	var b []byte
	b = append(b, "header"...)
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(x)))
	}
	fmt.Println(len(blindscan.Scan(b, wins)), len(blindscan.Scan([]byte("nothing here at all, nothing at all"), wins)))
	// Output: 1 0
}

func TestScan(t *testing.T) {
	v := make(fl.Vector, 16)
	for i := range v {
		v[i] = float64(i+1) / 3
	}
	wins := map[[32]byte]string{}
	blindscan.Windows(v, "model", wins)
	var f64, f32 []byte
	for _, x := range v {
		f64 = binary.BigEndian.AppendUint64(f64, math.Float64bits(x))
		f32 = binary.LittleEndian.AppendUint32(f32, math.Float32bits(float32(x)))
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), append([]byte("xyz"), f64...), 0o600) // odd offset
	os.WriteFile(filepath.Join(dir, "b"), f32, 0o600)
	os.WriteFile(filepath.Join(dir, "c"), make([]byte, 256), 0o600) // zeros only
	hits, err := blindscan.ScanPath(dir, wins)
	if err != nil {
		t.Fatal(err)
	}
	// float64: 16−4+1 windows; float32: 16−8+1.
	if want := 13 + 9; len(hits) != want {
		t.Errorf("%d hits, want %d: %v", len(hits), want, hits)
	}
	zero := fl.Vector{0, 0, 0, 0, 0, 0, 0, 0}
	none := map[[32]byte]string{}
	blindscan.Windows(zero, "zeros", none)
	if len(none) != 0 {
		t.Errorf("%d windows of a zero vector, want none", len(none))
	}
}
