// Package blindscan looks for plaintext vectors in bytes: the blindness
// tests use it to check that no model or update a node handled appears in
// what the coordinator stores or logs.
//
// A vector is represented by its 32-byte windows: every run of 4 float64 or
// 8 float32 values of its encodings (little- and big-endian) that starts at
// an element boundary and holds no zero element (runs of zeros occur in any
// file). Scan finds them at any byte offset.
package blindscan

import (
	"encoding/binary"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"github.com/cloisterfl/cloister/fl"
)

// Windows adds v's windows to into, each labelled what.
func Windows(v fl.Vector, what string, into map[[32]byte]string) {
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		for i := 0; i+4 <= len(v); i++ {
			var w [32]byte
			ok := true
			for j := range 4 {
				ok = ok && v[i+j] != 0
				order.PutUint64(w[8*j:], math.Float64bits(v[i+j]))
			}
			if ok {
				into[w] = what
			}
		}
		for i := 0; i+8 <= len(v); i++ {
			var w [32]byte
			ok := true
			for j := range 8 {
				f := float32(v[i+j])
				ok = ok && f != 0
				order.PutUint32(w[4*j:], math.Float32bits(f))
			}
			if ok {
				into[w] = what
			}
		}
	}
}

// Scan returns the labels of the windows of wins that occur in b, at any
// byte offset, once per occurrence.
func Scan(b []byte, wins map[[32]byte]string) []string {
	var hits []string
	for i := 0; i+32 <= len(b); i++ {
		if what, ok := wins[[32]byte(b[i:i+32])]; ok {
			hits = append(hits, what)
		}
	}
	return hits
}

// ScanPath scans the file at path, or every file under it if it is a
// directory, and returns each hit as "file: label".
func ScanPath(path string, wins map[[32]byte]string) ([]string, error) {
	var hits []string
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, h := range Scan(b, wins) {
			hits = append(hits, p+": "+h)
		}
		return nil
	})
	return hits, err
}

// FixedWindows adds the windows of v's fixed-point encoding, as modes that
// sum integers carry it (secagg): every run of 32 bytes of the words
// round(x·2^frac), of width bytes each (4 or 8), little- and big-endian,
// with no zero word, each labelled what.
func FixedWindows(v []int64, width int, what string, into map[[32]byte]string) {
	per := 32 / width
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		for i := 0; i+per <= len(v); i++ {
			var w [32]byte
			ok := true
			for j := range per {
				ok = ok && v[i+j] != 0
				if width == 4 {
					order.PutUint32(w[4*j:], uint32(v[i+j]))
				} else {
					order.PutUint64(w[8*j:], uint64(v[i+j]))
				}
			}
			if ok {
				into[w] = what
			}
		}
	}
}

// Quantize returns round(x·2^frac) for each x of v: the integers a
// fixed-point mode carries.
func Quantize(v fl.Vector, frac int) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(math.Round(math.Ldexp(x, frac)))
	}
	return out
}
