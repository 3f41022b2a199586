package strictjson

import (
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	type T struct{ A int }
	var v T
	if err := Decode([]byte(` {"A": 1} `), &v); err != nil || v.A != 1 {
		t.Fatalf("Decode = %+v, %v", v, err)
	}
	for _, bad := range []string{`{"A": 1, "B": 2}`, `{"A": 1} {"A": 2}`, `{"A": 1} x`, `{"A": "x"}`, ``, `[`} {
		if err := Decode([]byte(bad), &v); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
	if err := Decode([]byte(`{"A": 1} 2`), &v); err == nil || !strings.Contains(err.Error(), "after the JSON value") {
		t.Errorf("trailing data: %v", err)
	}
}
