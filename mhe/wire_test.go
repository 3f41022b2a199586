package mhe

import (
	"encoding/hex"
	"testing"
)

// Known answers for the formats that are ours: a header, 60-bit packing and
// the preset hashes (a change to a preset must be deliberate: it makes all
// stored state and payloads foreign).
func TestKnownAnswers(t *testing.T) {
	h := header{kind: kindUpdate, logN: 13, level: 1, degree: 1, sender: 3, round: 0x0102030405060708, aux: 1000}
	for i := range 16 {
		h.preset[i], h.session[i], h.bind[i] = byte(i), byte(0x10+i), byte(0x20+i)
	}
	got := hex.EncodeToString(appendHeader(nil, h, []int{5, 7}))
	want := "434c4d4802050d010100" + "0300" +
		"000102030405060708090a0b0c0d0e0f" + "101112131415161718191a1b1c1d1e1f" +
		"0807060504030201" + "e8030000" + "202122232425262728292a2b2c2d2e2f" +
		"02000000" + "05000000" + "07000000"
	if got != want {
		t.Errorf("header\n got %s\nwant %s", got, want)
	}
	b := make([]byte, 15)
	packResidues(b, []uint64{0x0123456789abcde, 0xfedcba987654321}, 60)
	if got, want := hex.EncodeToString(b), "debc9a785634121032547698badcfe"; got != want {
		t.Errorf("pack60\n got %s\nwant %s", got, want)
	}
	for _, c := range []struct {
		p    *Preset
		want string
	}{
		{Agg128, agg128Hash},
		{InsecureTest, insecureTestHash},
	} {
		if got := hex.EncodeToString(c.p.hash[:]); got != c.want {
			t.Errorf("%s hash %s, want %s", c.p.Name(), got, c.want)
		}
	}
}

const (
	agg128Hash       = "50c9158aadb66ce40ae1ecb218f178c1"
	insecureTestHash = "dccdfe35e280a77d8c9e8bab3d739f6c"
)
