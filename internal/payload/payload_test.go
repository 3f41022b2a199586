package payload

import (
	"errors"
	"fmt"
	"testing"
)

var (
	errMalformed = errors.New("malformed")
	errForeign   = errors.New("foreign")
)

var testFormat = Format{Name: "test", Magic: "TEST", Version: 2, Kinds: 3,
	Malformed: func(what, format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", what, errMalformed, fmt.Sprintf(format, args...))
	},
	Foreign: func(what, format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", what, errForeign, fmt.Sprintf(format, args...))
	},
	KindName: func(k byte) string { return fmt.Sprintf("kind-%d", k) },
}

func TestOpen(t *testing.T) {
	valid := testFormat.Append(nil, 1)
	valid = append(valid, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff)
	for _, c := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, errMalformed},
		{"short header", valid[:5], errMalformed},
		{"bad magic", append([]byte("XEST"), valid[4:]...), errMalformed},
		{"old version", append([]byte("TEST\x01\x01"), valid[6:]...), errMalformed},
		{"kind 0", append([]byte("TEST\x02\x00"), valid[6:]...), errMalformed},
		{"unknown kind", append([]byte("TEST\x02\x03"), valid[6:]...), errMalformed},
		{"another kind", append([]byte("TEST\x02\x02"), valid[6:]...), errForeign},
	} {
		if _, err := testFormat.Open(c.b, 1, "input"); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := testFormat.OpenFixed(valid, 1, 9, "input"); !errors.Is(err, errMalformed) {
		t.Errorf("a body of the wrong length: %v", err)
	}
	r, err := testFormat.OpenFixed(valid, 1, 8, "input")
	if err != nil {
		t.Fatal(err)
	}
	if n := r.U32(); n != 7 || r.Err != nil {
		t.Fatalf("U32 = %d, %v; want 7", n, r.Err)
	}
	// 0xffffffff is above MaxIndex: a count no platform's int holds.
	if n := r.U32(); n != 0 || !errors.Is(r.Err, errMalformed) {
		t.Fatalf("U32 of 2^32-1 = %d, %v; want a malformed error", n, r.Err)
	}
	// The error sticks: later reads return zero values.
	if r.U64() != 0 || r.Take(0) != nil || r.Hash() != [32]byte{} {
		t.Fatal("a read after an error returned data")
	}
}

func TestTruncated(t *testing.T) {
	r := &Reader{What: "input", B: []byte{1, 2, 3}, Malformed: testFormat.Malformed}
	if p := r.Take(2); len(p) != 2 || cap(p) != 2 {
		t.Fatalf("Take(2) = %v (cap %d)", p, cap(p))
	}
	if r.U64() != 0 || !errors.Is(r.Err, errMalformed) {
		t.Fatalf("U64 past the end: %v", r.Err)
	}
	r = &Reader{What: "input", B: []byte{1}, Malformed: testFormat.Malformed}
	if r.Take(-1) != nil || r.Err == nil {
		t.Fatal("Take(-1) did not fail")
	}
}

// Done: the sticky error first, then any byte left after the last field.
func TestDone(t *testing.T) {
	b := append(testFormat.Append(nil, 1), 0, 0, 0, 7, 9)
	r, err := testFormat.Open(b, 1, "input")
	if err != nil {
		t.Fatal(err)
	}
	if r.U32(); r.Done() == nil || !errors.Is(r.Done(), errMalformed) {
		t.Errorf("one trailing byte: Done() = %v, want malformed", r.Done())
	}
	r.Take(1)
	if err := r.Done(); err != nil {
		t.Errorf("all read: Done() = %v", err)
	}
	r.Take(1)
	if err := r.Done(); !errors.Is(err, errMalformed) {
		t.Errorf("read past the end: Done() = %v, want the sticky error", err)
	}
}
