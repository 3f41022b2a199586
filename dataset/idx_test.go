package dataset

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// idxBytes encodes an IDX file: magic, big-endian dims, then data.
func idxBytes(magic uint32, dims []uint32, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, magic)
	binary.Write(&b, binary.BigEndian, dims)
	b.Write(data)
	return b.Bytes()
}

func gzipped(t testing.TB, raw []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeMNIST writes a small Fashion-MNIST directory of 2×3-pixel images:
// train gzipped, test plain. Pixel j of image i is (i*6+j) mod 256; label
// i is i mod 10.
func fakeMNIST(t testing.TB, nTrain, nTest int) string {
	dir := t.TempDir()
	write := func(images, labels string, n int, gz bool) {
		pix := make([]byte, n*6)
		for i := range pix {
			pix[i] = byte(i)
		}
		lbl := make([]byte, n)
		for i := range lbl {
			lbl[i] = byte(i % 10)
		}
		img, lab := idxBytes(idxImages, []uint32{uint32(n), 2, 3}, pix), idxBytes(idxLabels, []uint32{uint32(n)}, lbl)
		if gz {
			img, lab, images, labels = gzipped(t, img), gzipped(t, lab), images+".gz", labels+".gz"
		}
		writeFile(t, filepath.Join(dir, images), img)
		writeFile(t, filepath.Join(dir, labels), lab)
	}
	write("train-images-idx3-ubyte", "train-labels-idx1-ubyte", nTrain, true)
	write("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", nTest, false)
	return dir
}

func TestLoadFashionMNISTSmall(t *testing.T) {
	sp, err := LoadFashionMNIST(fakeMNIST(t, 12, 5))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Set{sp.Train, sp.Test} {
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
		if s.Features != 6 || s.Classes != 10 || len(s.ClassNames) != 10 {
			t.Errorf("%s: %d features, %d classes, %d names", s.Name, s.Features, s.Classes, len(s.ClassNames))
		}
	}
	if sp.Train.Len() != 12 || sp.Test.Len() != 5 {
		t.Fatalf("got %d/%d examples, want 12/5", sp.Train.Len(), sp.Test.Len())
	}
	if got, want := sp.Train.Row(1)[2], 8.0/255; got != want {
		t.Errorf("train pixel (1,2) = %v, want %v", got, want)
	}
	if sp.Train.Y[11] != 1 || sp.Test.Y[4] != 4 {
		t.Errorf("labels %v / %v", sp.Train.Y, sp.Test.Y)
	}
}

func TestLoadFashionMNISTNotFound(t *testing.T) {
	_, err := LoadFashionMNIST(filepath.Join(t.TempDir(), "nowhere"))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing dir: got %v, want ErrNotFound", err)
	}
	dir := fakeMNIST(t, 3, 3)
	os.Remove(filepath.Join(dir, "t10k-labels-idx1-ubyte"))
	_, err = LoadFashionMNIST(dir)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "t10k-labels-idx1-ubyte") {
		t.Fatalf("missing labels file: got %v, want ErrNotFound naming it", err)
	}
}

func TestLoadFashionMNISTCorrupt(t *testing.T) {
	good := idxBytes(idxImages, []uint32{3, 2, 3}, make([]byte, 18))
	tests := []struct {
		name   string
		file   string // relative to the fake dir
		data   []byte
		errSub string
	}{
		{"bad magic", "t10k-images-idx3-ubyte", idxBytes(0x00000802, []uint32{3, 2, 3}, make([]byte, 18)), "bad magic number 0x00000802"},
		{"labels as images", "t10k-images-idx3-ubyte", idxBytes(idxLabels, []uint32{3}, make([]byte, 3)), "bad magic number 0x00000801"},
		{"empty file", "t10k-images-idx3-ubyte", nil, "reading magic number: unexpected EOF"},
		{"short header", "t10k-images-idx3-ubyte", good[:9], "reading 3 dimensions: unexpected EOF"},
		{"truncated data", "t10k-images-idx3-ubyte", good[:len(good)-1], "truncated: dimensions [3 2 3] declare 18 bytes of data, only 17 follow"},
		{"trailing data", "t10k-images-idx3-ubyte", append(good, 0), "trailing data"},
		{"truncated gzip", "train-images-idx3-ubyte.gz", gzipped(t, idxBytes(idxImages, []uint32{3, 2, 3}, make([]byte, 18)))[:30], "unexpected EOF"},
		{"hostile header", "t10k-images-idx3-ubyte", idxBytes(idxImages, []uint32{0xffffffff, 0xffffffff, 0xffffffff}, nil), "declare more than"},
		{"huge but short", "t10k-images-idx3-ubyte", idxBytes(idxImages, []uint32{1 << 20, 16, 16}, make([]byte, 10)), "only 10 follow"},
		{"count mismatch", "t10k-labels-idx1-ubyte", idxBytes(idxLabels, []uint32{4}, make([]byte, 4)), "has 4 labels but"},
		{"label out of range", "t10k-labels-idx1-ubyte", idxBytes(idxLabels, []uint32{3}, []byte{0, 10, 1}), "label 10 of example 1 outside [0, 10)"},
		{"no images", "t10k-images-idx3-ubyte", idxBytes(idxImages, []uint32{0, 2, 3}, nil), "no images"},
		{"zero-size images", "t10k-images-idx3-ubyte", idxBytes(idxImages, []uint32{3, 0, 3}, nil), "images of 0×3 pixels"},
		{"different image size", "t10k-images-idx3-ubyte", idxBytes(idxImages, []uint32{3, 3, 3}, make([]byte, 27)), "training images have 6 pixels, test images 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fakeMNIST(t, 3, 3)
			writeFile(t, filepath.Join(dir, tt.file), tt.data)
			_, err := LoadFashionMNIST(dir)
			if err == nil || !strings.Contains(err.Error(), tt.errSub) {
				t.Fatalf("got error %v, want one containing %q", err, tt.errSub)
			}
			if tt.name != "different image size" && !strings.Contains(err.Error(), tt.file) {
				t.Errorf("error %q does not name the file %s", err, tt.file)
			}
			if errors.Is(err, ErrNotFound) {
				t.Errorf("corrupt file reported as ErrNotFound: %v", err)
			}
		})
	}
}

// TestFashionMNISTInstalled loads the real data set when the Debian package
// dataset-fashion-mnist is installed.
func TestFashionMNISTInstalled(t *testing.T) {
	if _, err := os.Stat(DefaultFashionMNISTDir); err != nil {
		t.Skipf("%s not present (apt-get install dataset-fashion-mnist): %v", DefaultFashionMNISTDir, err)
	}
	if testing.Short() {
		t.Skip("loading 70,000 images in -short mode")
	}
	sp, err := Open("fashion-mnist", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		s *Set
		n int
	}{{sp.Train, 60000}, {sp.Test, 10000}} {
		if err := c.s.Validate(); err != nil {
			t.Fatal(err)
		}
		if c.s.Len() != c.n || c.s.Features != 784 || c.s.Classes != 10 {
			t.Fatalf("%s: %d examples of %d features in %d classes, want %d of 784 in 10", c.s.Name, c.s.Len(), c.s.Features, c.s.Classes, c.n)
		}
		count := make([]int, 10)
		for _, y := range c.s.Y {
			count[y]++
		}
		for y, k := range count { // Fashion-MNIST is exactly balanced
			if k != c.n/10 {
				t.Errorf("%s: class %d has %d examples, want %d", c.s.Name, y, k, c.n/10)
			}
		}
		lo, hi := c.s.X[0], c.s.X[0]
		for _, x := range c.s.X {
			lo, hi = min(lo, x), max(hi, x)
		}
		if lo != 0 || hi != 1 {
			t.Errorf("%s: pixels in [%v, %v], want [0, 1]", c.s.Name, lo, hi)
		}
	}
}

func FuzzReadIDX(f *testing.F) {
	f.Add(idxBytes(idxLabels, []uint32{3}, []byte{1, 2, 3}))
	f.Add(idxBytes(idxImages, []uint32{2, 2, 2}, make([]byte, 8)))
	f.Add(idxBytes(idxImages, []uint32{2, 2, 2}, make([]byte, 7)))
	f.Add(gzipped(f, idxBytes(idxLabels, []uint32{2}, []byte{9, 9})))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, magic := range []uint32{idxImages, idxLabels} {
			dims, payload, err := readIDX(bytes.NewReader(data), magic)
			if err != nil {
				continue
			}
			size := 1
			for _, d := range dims {
				size *= d
			}
			if len(dims) != int(magic&0xff) || len(payload) != size {
				t.Fatalf("dims %v with %d bytes of payload", dims, len(payload))
			}
		}
	})
}
