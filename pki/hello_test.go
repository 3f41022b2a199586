package pki

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"
)

func TestEvidence(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	sign := make([]byte, ed25519.PublicKeySize)
	e := &Hello{Session: []byte("s"), Node: "node-1", Issued: time.Unix(5, 7), HPKE: []byte("hpke"), Sign: sign, TEE: []byte("tee")}
	b := e.SignWith(priv)
	got, err := VerifyHello(b, "node-1", []byte("s"), pub)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Issued.Equal(e.Issued) || !bytes.Equal(got.TEE, e.TEE) || !bytes.Equal(got.HPKE, e.HPKE) {
		t.Errorf("round trip: %+v, want %+v", got, e)
	}
	tampered := bytes.Clone(b)
	tampered[len(tampered)-70] ^= 1 // inside the TEE field's neighbourhood: the signed part
	for name, c := range map[string]struct {
		b       []byte
		id      string
		session string
	}{
		"other member":  {b, "node-2", "s"},
		"other session": {b, "node-1", "t"},
		"other key":     {(&Hello{Session: []byte("s"), Node: "node-1", HPKE: []byte("h"), Sign: sign}).SignWith(other), "node-1", "s"},
		"tampered":      {tampered, "node-1", "s"},
		"truncated":     {b[:len(b)-1], "node-1", "s"},
		"trailing":      {append(bytes.Clone(b), 0), "node-1", "s"},
		"too large":     {make([]byte, MaxHello+1), "node-1", "s"},
	} {
		if _, err := VerifyHello(c.b, "node-1", []byte(c.session), pub); c.id == "node-1" && !errors.Is(err, ErrHello) {
			t.Errorf("%s: %v, want ErrHello", name, err)
		}
		if c.id != "node-1" {
			if _, err := VerifyHello(c.b, "node-2", []byte(c.session), pub); !errors.Is(err, ErrHello) {
				t.Errorf("%s: %v, want ErrHello", name, err)
			}
		}
	}
}

func FuzzParseEvidence(f *testing.F) {
	_, priv, _ := ed25519.GenerateKey(nil)
	f.Add((&Hello{Session: []byte("s"), Node: "node-1", Issued: time.Unix(1, 0), HPKE: []byte("h"), Sign: make([]byte, 32)}).SignWith(priv))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseHello(b)
		if err == nil && e == nil {
			t.Fatal("nil evidence without error")
		}
		if err == nil && !bytes.Equal(e.Marshal(), b) {
			t.Fatal("decoded evidence does not re-encode to the same bytes")
		}
	})
}
