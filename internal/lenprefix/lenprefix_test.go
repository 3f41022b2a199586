package lenprefix_test

import (
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
