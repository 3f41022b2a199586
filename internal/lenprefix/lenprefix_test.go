package lenprefix_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/internal/lenprefix"
)

func Example() {
	var w lenprefix.Writer
	w.String("label")
	w.U64(42)
	w.Bytes([]byte{1, 2, 3})
	r := lenprefix.NewReader(w.B)
	label, n, b := r.String(), r.U64(), r.Bytes()
	fmt.Println(label, n, b, r.End())
	// Output: label 42 [1 2 3] <nil>
}

func TestHostile(t *testing.T) {
	var w lenprefix.Writer
	w.Bytes([]byte("abc"))
	good := w.B
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"truncated length", good[:5], "truncated"},
		{"length past the end", append([]byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 'x'), "exceeds"},
		{"truncated body", good[:len(good)-1], "exceeds"},
		{"trailing bytes", append(good[:len(good):len(good)], 0), "1 trailing bytes"},
	} {
		r := lenprefix.NewReader(c.b)
		r.Bytes()
		if err := r.End(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
	r := lenprefix.NewReader(good)
	if b := r.Bytes(); string(b) != "abc" || r.End() != nil {
		t.Errorf("good input: %q, %v", b, r.End())
	}
}

func TestRawAndEmpty(t *testing.T) {
	var w lenprefix.Writer
	w.Bytes(nil)
	w.Raw([]byte{1, 2, 3, 4})
	w.String("")
	r := lenprefix.NewReader(w.B)
	if b := r.Bytes(); b != nil {
		t.Errorf("empty byte string read as %#v, want nil", b)
	}
	if r.Len() != 4+8 {
		t.Errorf("Len = %d, want 12", r.Len())
	}
	if b := r.Raw(4); string(b) != "\x01\x02\x03\x04" {
		t.Errorf("Raw(4) = %x", b)
	}
	if s := r.String(); s != "" || r.End() != nil {
		t.Errorf("empty string: %q, %v", s, r.End())
	}

	r = lenprefix.NewReader([]byte{1, 2})
	if b := r.Raw(3); b != nil || r.End() == nil || !strings.Contains(r.End().Error(), "truncated") {
		t.Errorf("Raw past the end: %x, %v", b, r.End())
	}

	r = lenprefix.NewReader(nil)
	r.Fail(errors.New("first"))
	r.Fail(errors.New("second"))
	r.U64()
	if err := r.End(); err == nil || err.Error() != "first" {
		t.Errorf("End after two Fails: %v, want first", err)
	}
}
