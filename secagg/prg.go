package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
)

// The mask PRG: a 128-bit seed is an AES-128 key, the mask is its CTR
// keystream from a zero IV, read as little-endian words of the preset's
// width (4 or 8 bytes). Each seed expands one vector only (pair seeds and
// the group mask's member keys are per round, self seeds are fresh for each
// upload), so the zero IV is never reused with a key.

// prg expands seeds into masks and adds them to word vectors. It keeps one
// keystream buffer; it is not safe for concurrent use.
type prg struct {
	width int // bytes per word: 4 or 8
	buf   []byte
	zero  []byte
}

func newPRG(width int) *prg { return &prg{width: width} }

// stream returns the keystream of s for n words.
func (g *prg) stream(s seed, n int) ([]byte, error) {
	need := n * g.width
	if cap(g.buf) < need {
		g.buf = make([]byte, need)
		g.zero = make([]byte, need)
	}
	buf := g.buf[:need]
	block, err := aes.NewCipher(s[:])
	if err != nil {
		return nil, fmt.Errorf("secagg: the mask PRG: %w", err)
	}
	var iv [aes.BlockSize]byte
	cipher.NewCTR(block, iv[:]).XORKeyStream(buf, g.zero[:need])
	return buf, nil
}

// add adds (sign +1) or subtracts (sign −1) the mask of s to w, modulo
// 2⁶⁴; callers reduce to the preset's width when they encode.
func (g *prg) add(w []uint64, s seed, sign int) error {
	ks, err := g.stream(s, len(w))
	if err != nil {
		return err
	}
	switch {
	case g.width == 4 && sign > 0:
		for i := range w {
			w[i] += uint64(binary.LittleEndian.Uint32(ks[4*i:]))
		}
	case g.width == 4:
		for i := range w {
			w[i] -= uint64(binary.LittleEndian.Uint32(ks[4*i:]))
		}
	case sign > 0:
		for i := range w {
			w[i] += binary.LittleEndian.Uint64(ks[8*i:])
		}
	default:
		for i := range w {
			w[i] -= binary.LittleEndian.Uint64(ks[8*i:])
		}
	}
	return nil
}
