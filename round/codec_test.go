package round

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

// TestCodecKnownAnswer fixes the bytes the engine signs, seals and boxes:
// they are persisted and sent, so a change to the codec must not change
// them. The expected values were recorded from the codec as it was before
// it moved onto internal/lenprefix.
func TestCodecKnownAnswer(t *testing.T) {
	session := []byte("sess")
	d := DigestOf([]byte("payload"))
	m := DigestOf([]byte("model"))
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"upload", uploadSigned(session, 3, 7, d, m),
			"0000000000000018636c6f69737465722f726f756e642f76322f75706c6f616400000000000000047365737300000000000000030000000000000007239f59ed55e737c77147cf55ad0c1b030b6d7ee748a7426952f9b852d5a935e59372c470eeadd5ecd9c3c74c2b3cb633f8e2f2fad799250a0f70d652b6b825e4"},
		{"pledge", pledgeSigned(session, 3, 7, d),
			"0000000000000018636c6f69737465722f726f756e642f76322f706c6564676500000000000000047365737300000000000000030000000000000007239f59ed55e737c77147cf55ad0c1b030b6d7ee748a7426952f9b852d5a935e5"},
		{"pledge set", pledgeSetDigest(session, []Contribution{{Node: "a", Digest: d}, {Node: "bc", Digest: m}}),
			"6f5bf2e8cc0d538a4ccbab9257f614a6bab35aab5aa0929d49978d21f0abf8af"},
		{"envelope", envelope(purposeDeal, session, 2, "n1", "n2", []byte{9, 8}),
			"0000000000000016636c6f69737465722f726f756e642f76312f7365616c00000000000000046465616c000000000000000473657373000000000000000200000000000000026e3100000000000000026e3200000000000000020908"},
		{"model AD", modelAD(session, 4),
			"0000000000000017636c6f69737465722f726f756e642f76312f6d6f64656c0000000000000004736573730000000000000004"},
		{"model", encodeModel(fl.Vector{1.5, -2}, []byte("opt")),
			"000000000000001f636c6f69737465722f726f756e642f76312f6d6f64656c2d7061796c6f616400000000000000023ff8000000000000c00000000000000000000000000000036f7074"},
		{"model without state", encodeModel(fl.Vector{}, nil),
			"000000000000001f636c6f69737465722f726f756e642f76312f6d6f64656c2d7061796c6f616400000000000000000000000000000000"},
		{"group key", encodeGroupKey([]byte("target"), []byte("key")),
			"000000000000001b636c6f69737465722f726f756e642f76312f67726f75702d6b6579000000000000000674617267657400000000000000036b6579"},
		{"dealt key", encodeDealtKey([]byte("gk"), 5, m),
			"0000000000000021636c6f69737465722f726f756e642f76312f6465616c742d67726f75702d6b65790000000000000002676b00000000000000059372c470eeadd5ecd9c3c74c2b3cb633f8e2f2fad799250a0f70d652b6b825e4"},
		{"protect session", protectSessionID(session, 6),
			"6cd7d17829d799e21109b5ce28b60db0058547071325334a70d436c1445b4f18"},
		{"record", Record{Epoch: 1, Round: 2, Base: 1, Included: []fl.NodeID{"a", "bc"}, Aggregate: d, Model: m}.Signed(session),
			"0000000000000018636c6f69737465722f726f756e642f76312f7265636f7264000000000000000473657373000000000000000100000000000000020000000000000001000000000000000200000000000000016100000000000000026263239f59ed55e737c77147cf55ad0c1b030b6d7ee748a7426952f9b852d5a935e59372c470eeadd5ecd9c3c74c2b3cb633f8e2f2fad799250a0f70d652b6b825e4"},
	} {
		if got := hex.EncodeToString(tc.got); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

func pledgeSetDigest(session []byte, set []Contribution) []byte {
	d := pledgesDigest(session, 3, 7, set)
	return d[:]
}

// TestCodecRoundTrip decodes what the encoders write, including empty
// byte strings, which decode as nil.
func TestCodecRoundTrip(t *testing.T) {
	session := []byte("sess")
	p, err := openEnvelope(envelope(purposeDeal, session, 2, "n1", "n2", []byte{9, 8}), purposeDeal, session, 2, "n1", "n2")
	if err != nil || !bytes.Equal(p, []byte{9, 8}) {
		t.Errorf("envelope: %x, %v", p, err)
	}
	if _, err := openEnvelope(envelope(purposeDeal, session, 2, "n1", "n2", nil), purposeGroupKey, session, 2, "n1", "n2"); err == nil {
		t.Error("envelope opened for another purpose")
	}
	v, st, err := decodeModel(encodeModel(fl.Vector{1.5, -2}, nil))
	if err != nil || len(v) != 2 || v[0] != 1.5 || v[1] != -2 || st != nil {
		t.Errorf("model: %v %v %v", v, st, err)
	}
	target, key, err := decodeGroupKey(encodeGroupKey(nil, []byte("key")))
	if err != nil || target != nil || string(key) != "key" {
		t.Errorf("group key: %q %q %v", target, key, err)
	}
	m := DigestOf([]byte("model"))
	gk, base, md, err := decodeDealtKey(encodeDealtKey([]byte("gk"), 5, m))
	if err != nil || string(gk) != "gk" || base != 5 || md != m {
		t.Errorf("dealt key: %q %d %v %v", gk, base, md, err)
	}
	for _, b := range [][]byte{nil, {0}, encodeDealtKey([]byte("gk"), 5, m)[:20]} {
		if _, _, _, err := decodeDealtKey(b); err == nil {
			t.Errorf("decodeDealtKey(%x) accepted", b)
		}
	}
	if _, _, err := decodeModel(append(encodeModel(fl.Vector{1}, nil), 0)); err == nil {
		t.Error("decodeModel accepted a trailing byte")
	}
}
