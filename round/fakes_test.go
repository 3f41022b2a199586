package round

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/lenprefix"
)

// Deterministic stand-ins for the injected crypto, so that transcripts are
// stable. They protect nothing.

// fakeSealer "seals" by tagging: deterministic, so transcripts are stable.
type fakeSealer struct{ self fl.NodeID }

func (s fakeSealer) Seal(to fl.NodeID, pt []byte) ([]byte, error) {
	var e lenprefix.Writer
	e.String("sealed")
	e.String(string(s.self))
	e.String(string(to))
	e.Bytes(pt)
	return e.B, nil
}

func (s fakeSealer) Open(from fl.NodeID, ct []byte) ([]byte, error) {
	d := lenprefix.NewReader(ct)
	label, f, t, pt := d.String(), d.String(), d.String(), d.Bytes()
	if d.End() != nil || label != "sealed" {
		return nil, errors.New("not a sealed payload")
	}
	if fl.NodeID(f) != from || fl.NodeID(t) != s.self {
		return nil, fmt.Errorf("sealed by %s to %s", f, t)
	}
	return pt, nil
}

// fakeBox authenticates with a keyed hash and does not encrypt.
type fakeBox struct{}

func (fakeBox) KeySize() int { return 16 }
func (fakeBox) tag(key, pt, ad []byte) []byte {
	h := sha256.New()
	h.Write(key)
	h.Write(ad)
	h.Write(pt)
	return h.Sum(nil)[:16]
}
func (b fakeBox) Seal(key, pt, ad []byte) ([]byte, error) {
	return append(b.tag(key, pt, ad), pt...), nil
}
func (b fakeBox) Open(key, ct, ad []byte) ([]byte, error) {
	if len(ct) < 16 || !bytes.Equal(ct[:16], b.tag(key, ct[16:], ad)) {
		return nil, errors.New("message authentication failed")
	}
	return ct[16:], nil
}

type fakeSigner struct{ id fl.NodeID }

func fakeSig(id fl.NodeID, msg []byte) []byte {
	h := sha256.Sum256(append([]byte("sig:"+id+":"), msg...))
	return h[:16]
}

func (s fakeSigner) Sign(msg []byte) ([]byte, error) { return fakeSig(s.id, msg), nil }

type fakeVerifier struct{}

func (fakeVerifier) Verify(id fl.NodeID, msg, sig []byte) error {
	if !bytes.Equal(sig, fakeSig(id, msg)) {
		return errors.New("signature mismatch")
	}
	return nil
}
