package attest

import (
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// measureContext starts every sim measurement.
const measureContext = "cloister/attest sim measurement v1\x00"

// MeasureFile returns the sim measurement of the program at path launched
// with launchConfig:
//
//	SHA-384("cloister/attest sim measurement v1" ‖ 0x00 ‖
//	        size (8 bytes, big-endian) ‖ the file's bytes ‖ launchConfig)
//
// launchConfig is whatever else decides what the program does, in a
// canonical encoding (for a node: the hash of the signed manifest it runs
// under, its canonical flags); nil for none. Changing one byte of the
// program or of its launch configuration changes the measurement.
// `cloister attest measure` prints it for the allow-list.
func MeasureFile(path string, launchConfig []byte) ([48]byte, error) {
	var m [48]byte
	f, err := os.Open(path)
	if err != nil {
		return m, fmt.Errorf("attest: measuring: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return m, fmt.Errorf("attest: measuring %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return m, fmt.Errorf("attest: measuring %s: not a regular file", path)
	}
	h := sha512.New384()
	h.Write([]byte(measureContext))
	var size [8]byte
	binary.BigEndian.PutUint64(size[:], uint64(st.Size()))
	h.Write(size[:])
	n, err := io.Copy(h, io.LimitReader(f, st.Size()))
	if err != nil {
		return m, fmt.Errorf("attest: measuring %s: %w", path, err)
	}
	var extra [1]byte
	if k, _ := f.Read(extra[:]); n != st.Size() || k != 0 {
		return m, fmt.Errorf("attest: measuring %s: the file changed while it was read", path)
	}
	h.Write(launchConfig)
	h.Sum(m[:0])
	return m, nil
}

// MeasureSelf returns the sim measurement of the running program
// (os.Executable) launched with launchConfig: what a [SimAttester] for this
// process should report.
func MeasureSelf(launchConfig []byte) ([48]byte, error) {
	exe, err := os.Executable()
	if err != nil {
		return [48]byte{}, fmt.Errorf("attest: finding the running program: %w", err)
	}
	if exe == "" {
		return [48]byte{}, errors.New("attest: the running program has no path")
	}
	return MeasureFile(exe, launchConfig)
}
