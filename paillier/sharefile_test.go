package paillier

import (
	"bytes"
	"crypto/rand"
	"errors"
	"math/big"
	"testing"
)

func TestKeyShareEncoding(t *testing.T) {
	sk, err := GenerateKey(256, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, shares, err := Deal(sk, 3, 3, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	m := []byte{0x42, 0x17}
	c, err := sk.Encrypt(new(big.Int).SetBytes(m), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	parts := map[int]*big.Int{}
	var tk *ThresholdKey
	for _, s := range shares {
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseKeyShare(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Index != s.Index || got.S.Cmp(s.S) != 0 || got.Key.N.Cmp(s.Key.N) != 0 || got.Key.T != 3 || got.Key.L != 3 {
			t.Fatalf("share %d did not survive its encoding", s.Index)
		}
		if parts[got.Index], err = got.Decrypt(c); err != nil {
			t.Fatal(err)
		}
		tk = got.Key
		// Every truncation and a trailing byte are refused.
		for k := range b {
			if _, err := ParseKeyShare(b[:k]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("share truncated to %d bytes: %v", k, err)
			}
		}
		if _, err := ParseKeyShare(append(bytes.Clone(b), 0)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("trailing byte: %v", err)
		}
	}
	p, err := tk.Combine(parts)
	if err != nil || !bytes.Equal(p.Bytes(), m) {
		t.Fatalf("decrypted with the parsed shares: %x %v", p, err)
	}
}

func FuzzParseKeyShare(f *testing.F) {
	f.Add([]byte("CLPS\x01\x00\x02\x00\x02\x00\x01\x00\x01\x0b\x00\x01\x05"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseKeyShare(b)
		if err != nil {
			return
		}
		out, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseKeyShare(out); err != nil {
			t.Fatal(err)
		}
	})
}
