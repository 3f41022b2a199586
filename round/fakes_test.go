package round

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/cloisterfl/cloister/fl"
)

// Deterministic stand-ins for the injected crypto, so that transcripts are
// stable. They protect nothing.

// fakeSealer "seals" by tagging: deterministic, so transcripts are stable.
type fakeSealer struct{ self fl.NodeID }

func (s fakeSealer) Seal(to fl.NodeID, pt []byte) ([]byte, error) {
	var e encoder
	e.str("sealed")
	e.str(string(s.self))
	e.str(string(to))
	e.bytes(pt)
	return e.b, nil
}

func (s fakeSealer) Open(from fl.NodeID, ct []byte) ([]byte, error) {
	d := decoder{b: ct}
	label, f, t, pt := d.str(), d.str(), d.str(), d.bytes()
	if d.end() != nil || label != "sealed" {
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
