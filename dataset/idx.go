package dataset

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// DefaultFashionMNISTDir is where the Debian package dataset-fashion-mnist
// installs the Fashion-MNIST IDX files.
const DefaultFashionMNISTDir = "/usr/share/datasets/fashion-mnist"

// ErrNotFound reports that a dataset's directory or files do not exist.
// For Fashion-MNIST, the usual fix is `apt-get install dataset-fashion-mnist`.
var ErrNotFound = errors.New("dataset: not found")

// fashionMNISTClasses names the ten Fashion-MNIST labels, in label order.
var fashionMNISTClasses = []string{
	"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
	"Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
}

// IDX magic numbers: two zero bytes, the element type (0x08 = unsigned
// byte), then the number of dimensions.
const (
	idxImages = 0x00000803
	idxLabels = 0x00000801
)

// maxIDXBytes bounds the payload a header may declare (256 MiB, over five
// times Fashion-MNIST's training images). Memory is also only grown as
// data actually arrives, so a hostile header cannot reserve this much.
const maxIDXBytes = 256 << 20

// LoadFashionMNIST reads the Fashion-MNIST training (60,000) and test
// (10,000) sets from dir, which holds the four files
// train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte
// and t10k-labels-idx1-ubyte, each gzipped (with a .gz suffix, preferred)
// or plain. Pixels are scaled to [0, 1]. Missing files give an error
// wrapping [ErrNotFound].
//
// Any IDX files of the same layout load, such as the original MNIST digits;
// labels must lie in [0, 10).
func LoadFashionMNIST(dir string) (Split, error) {
	train, err := loadIDXPair(dir, "train", "train-images-idx3-ubyte", "train-labels-idx1-ubyte")
	if err != nil {
		return Split{}, err
	}
	test, err := loadIDXPair(dir, "test", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
	if err != nil {
		return Split{}, err
	}
	if train.Features != test.Features {
		return Split{}, fmt.Errorf("fashion-mnist in %s: training images have %d pixels, test images %d", dir, train.Features, test.Features)
	}
	return Split{Train: train, Test: test}, nil
}

// loadIDXPair reads one images file and its labels file into a Set.
func loadIDXPair(dir, part, images, labels string) (*Set, error) {
	imgPath, err := findIDX(dir, images)
	if err != nil {
		return nil, err
	}
	lblPath, err := findIDX(dir, labels)
	if err != nil {
		return nil, err
	}
	imgDims, pix, err := readIDXFile(imgPath, idxImages)
	if err != nil {
		return nil, err
	}
	lblDims, lbl, err := readIDXFile(lblPath, idxLabels)
	if err != nil {
		return nil, err
	}
	n, features := imgDims[0], imgDims[1]*imgDims[2]
	switch {
	case n == 0:
		return nil, fmt.Errorf("%s: no images", imgPath)
	case features == 0:
		return nil, fmt.Errorf("%s: images of %d×%d pixels", imgPath, imgDims[1], imgDims[2])
	case lblDims[0] != n:
		return nil, fmt.Errorf("%s has %d labels but %s has %d images", lblPath, lblDims[0], imgPath, n)
	}
	s := &Set{
		Name:       "fashion-mnist " + part,
		X:          make([]float64, len(pix)),
		Y:          make([]int, n),
		Features:   features,
		Classes:    len(fashionMNISTClasses),
		ClassNames: fashionMNISTClasses,
	}
	for i, p := range pix {
		s.X[i] = float64(p) / 255
	}
	for i, l := range lbl {
		if int(l) >= s.Classes {
			return nil, fmt.Errorf("%s: label %d of example %d outside [0, %d)", lblPath, l, i, s.Classes)
		}
		s.Y[i] = int(l)
	}
	return s, nil
}

// findIDX returns the path of name.gz in dir, or of name if only the plain
// file exists.
func findIDX(dir, name string) (string, error) {
	for _, p := range []string{filepath.Join(dir, name+".gz"), filepath.Join(dir, name)} {
		_, err := os.Stat(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("%w: %s(.gz) in %s", ErrNotFound, name, dir)
}

// readIDXFile reads an IDX file, gzipped or plain, that must carry magic.
// Errors name the file.
func readIDXFile(path string, magic uint32) (dims []int, data []byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return nil, nil, err
	}
	defer f.Close()
	dims, data, err = readIDX(f, magic)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return dims, data, nil
}

// readIDX decodes an unsigned-byte IDX stream, gzip-compressed or not,
// whose magic number must be magic. It returns the dimensions and the
// payload, and rejects short or trailing data.
func readIDX(r io.Reader, magic uint32) (dims []int, data []byte, err error) {
	br := bufio.NewReader(r)
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
	}

	var m uint32
	if err := binary.Read(br, binary.BigEndian, &m); err != nil {
		return nil, nil, fmt.Errorf("reading magic number: %w", unexpectedEOF(err))
	}
	if m != magic {
		return nil, nil, fmt.Errorf("bad magic number 0x%08x, want 0x%08x (IDX unsigned bytes, %d dimensions)", m, magic, magic&0xff)
	}
	raw := make([]uint32, magic&0xff)
	if err := binary.Read(br, binary.BigEndian, raw); err != nil {
		return nil, nil, fmt.Errorf("reading %d dimensions: %w", len(raw), unexpectedEOF(err))
	}
	size := 1
	dims = make([]int, len(raw))
	for i, d := range raw {
		dims[i] = int(d)
		if d > maxIDXBytes || size*dims[i] > maxIDXBytes {
			return nil, nil, fmt.Errorf("dimensions %v declare more than %d bytes", raw, maxIDXBytes)
		}
		size *= dims[i]
	}

	var buf bytes.Buffer
	buf.Grow(min(size, 1<<20))
	if _, err := buf.ReadFrom(io.LimitReader(br, int64(size))); err != nil {
		return nil, nil, fmt.Errorf("reading data: %w", err)
	}
	if buf.Len() < size {
		return nil, nil, fmt.Errorf("truncated: dimensions %v declare %d bytes of data, only %d follow", raw, size, buf.Len())
	}
	switch _, err := br.ReadByte(); {
	case err == nil:
		return nil, nil, fmt.Errorf("trailing data after the %d bytes that dimensions %v declare", size, raw)
	case err != io.EOF:
		return nil, nil, fmt.Errorf("reading data: %w", err)
	}
	return dims, buf.Bytes(), nil
}

// unexpectedEOF turns io.EOF into io.ErrUnexpectedEOF: a header cut short
// is a truncated file, not a clean end.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
