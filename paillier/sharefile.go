package paillier

import (
	"encoding/binary"
	"fmt"
	"math/big"
)

// A key share on its own, as the admin hands it to one party (a vertical
// federation's key, dealt before the parties meet): "CLPS", version 1,
// T u16, L u16, Index u16, then n and S, each as u16 length and big-endian
// bytes.
const (
	shareMagic   = "CLPS"
	shareVersion = 1
	// maxShareModulus bounds n's bytes (16,384-bit keys).
	maxShareModulus = 2048
)

// MarshalBinary encodes the share with its public key.
func (s *KeyShare) MarshalBinary() ([]byte, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	n, sb := s.Key.N.Bytes(), s.S.Bytes()
	b := append([]byte(shareMagic), shareVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(s.Key.T))
	b = binary.BigEndian.AppendUint16(b, uint16(s.Key.L))
	b = binary.BigEndian.AppendUint16(b, uint16(s.Index))
	b = binary.BigEndian.AppendUint16(b, uint16(len(n)))
	b = append(b, n...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(sb)))
	return append(b, sb...), nil
}

// ParseKeyShare decodes what [KeyShare.MarshalBinary] wrote, checking
// every length before it reads and the share against its key.
func ParseKeyShare(b []byte) (*KeyShare, error) {
	bad := func(what string) error { return fmt.Errorf("%w: key share: %s", ErrMalformed, what) }
	if len(b) < 5+8 || string(b[:4]) != shareMagic {
		return nil, bad("not a key share")
	}
	if b[4] != shareVersion {
		return nil, bad(fmt.Sprintf("version %d, this build reads %d", b[4], shareVersion))
	}
	t, l, idx := int(binary.BigEndian.Uint16(b[5:])), int(binary.BigEndian.Uint16(b[7:])), int(binary.BigEndian.Uint16(b[9:]))
	rest := b[11:]
	field := func(name string, max int) ([]byte, error) {
		if len(rest) < 2 {
			return nil, bad("truncated before " + name)
		}
		k := int(binary.BigEndian.Uint16(rest))
		if k == 0 || k > max || len(rest) < 2+k {
			return nil, bad(fmt.Sprintf("%s of %d bytes in %d", name, k, len(rest)-2))
		}
		v := rest[2 : 2+k]
		rest = rest[2+k:]
		return v, nil
	}
	nb, err := field("modulus", maxShareModulus)
	if err != nil {
		return nil, err
	}
	sb, err := field("secret", 2*len(nb))
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, bad(fmt.Sprintf("%d trailing bytes", len(rest)))
	}
	tk, err := NewThresholdKey(new(big.Int).SetBytes(nb), t, l)
	if err != nil {
		return nil, err
	}
	s := &KeyShare{Key: tk, Index: idx, S: new(big.Int).SetBytes(sb)}
	if err := s.Check(); err != nil {
		return nil, err
	}
	return s, nil
}
