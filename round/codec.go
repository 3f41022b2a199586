package round

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/cloisterfl/cloister/fl"
)

// A small length-prefixed binary codec for the bytes the engine signs, seals
// and boxes. Decoding never trusts a length beyond the bytes it has.

type encoder struct{ b []byte }

func (e *encoder) u64(v uint64)    { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) bytes(p []byte)  { e.u64(uint64(len(p))); e.b = append(e.b, p...) }
func (e *encoder) str(s string)    { e.bytes([]byte(s)) }
func (e *encoder) digest(d Digest) { e.b = append(e.b, d[:]...) }
func (e *encoder) nodes(ns []fl.NodeID) {
	e.u64(uint64(len(ns)))
	for _, n := range ns {
		e.str(string(n))
	}
}

type decoder struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated")

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) u64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail(errShort)
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.u64()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(fmt.Errorf("length %d exceeds the %d bytes left", n, len(d.b)))
		return nil
	}
	p := append([]byte(nil), d.b[:n]...)
	d.b = d.b[n:]
	return p
}

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) digest() Digest {
	var x Digest
	if d.err != nil {
		return x
	}
	if len(d.b) < len(x) {
		d.fail(errShort)
		return x
	}
	copy(x[:], d.b)
	d.b = d.b[len(x):]
	return x
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Errorf("%d trailing bytes", len(d.b)))
	}
	return d.err
}

// Digest is a SHA-256 digest of a payload.
type Digest [32]byte

// DigestOf returns the SHA-256 digest of p.
func DigestOf(p []byte) Digest { return sha256.Sum256(p) }

// String returns the first 6 bytes in hex, as the transcripts show it.
func (d Digest) String() string { return fmt.Sprintf("%x", d[:6]) }

// Domain separation labels: every signed, sealed or boxed byte string starts
// with one, so that no payload can be replayed in another role.
const (
	labelUpload   = "cloister/round/v1/upload"
	labelRecord   = "cloister/round/v1/record"
	labelSeal     = "cloister/round/v1/seal"
	labelModelAD  = "cloister/round/v1/model"
	labelModel    = "cloister/round/v1/model-payload"
	labelGroupKey = "cloister/round/v1/group-key"
	labelDealtKey = "cloister/round/v1/dealt-group-key"
	labelSession  = "cloister/round/v1/protect-session"
)

// Seal purposes.
const (
	purposeDeal     = "deal"
	purposeGroupKey = "group-key"
)

// uploadSigned returns the bytes a node signs for its upload.
func uploadSigned(session []byte, epoch uint64, r fl.Round, d Digest) []byte {
	var e encoder
	e.str(labelUpload)
	e.bytes(session)
	e.u64(epoch)
	e.u64(uint64(r))
	e.digest(d)
	return e.b
}

// envelope binds a sealed payload to its purpose, session, epoch, sender and
// recipient, so the coordinator cannot move it elsewhere.
func envelope(purpose string, session []byte, epoch uint64, from, to fl.NodeID, payload []byte) []byte {
	var e encoder
	e.str(labelSeal)
	e.str(purpose)
	e.bytes(session)
	e.u64(epoch)
	e.str(string(from))
	e.str(string(to))
	e.bytes(payload)
	return e.b
}

func openEnvelope(b []byte, purpose string, session []byte, epoch uint64, from, to fl.NodeID) ([]byte, error) {
	d := decoder{b: b}
	label, p, s, ep := d.str(), d.str(), d.bytes(), d.u64()
	f, t, payload := fl.NodeID(d.str()), fl.NodeID(d.str()), d.bytes()
	if err := d.end(); err != nil {
		return nil, fmt.Errorf("%w: sealed envelope: %v", ErrMalformed, err)
	}
	if label != labelSeal || p != purpose || string(s) != string(session) || ep != epoch || f != from || t != to {
		return nil, fmt.Errorf("%w: sealed envelope for (%s, epoch %d, %s→%s), want (%s, epoch %d, %s→%s)",
			ErrForged, p, ep, f, t, purpose, epoch, from, to)
	}
	return payload, nil
}

// modelAD is the associated data of a sealed model: it binds the model to the
// session and to the round that produced it.
func modelAD(session []byte, r fl.Round) []byte {
	var e encoder
	e.str(labelModelAD)
	e.bytes(session)
	e.u64(uint64(r))
	return e.b
}

// maxDim bounds the length of a decoded model vector.
const maxDim = 1 << 28

func encodeModel(v fl.Vector, optState []byte) []byte {
	e := encoder{b: make([]byte, 0, 64+8*len(v)+len(optState))}
	e.str(labelModel)
	e.u64(uint64(len(v)))
	for _, x := range v {
		e.u64(math.Float64bits(x))
	}
	e.bytes(optState)
	return e.b
}

func decodeModel(b []byte) (fl.Vector, []byte, error) {
	d := decoder{b: b}
	if d.str() != labelModel && d.err == nil {
		return nil, nil, fmt.Errorf("%w: not a model payload", ErrMalformed)
	}
	n := d.u64()
	if d.err == nil && (n > maxDim || n*8 > uint64(len(d.b))) {
		d.fail(fmt.Errorf("model length %d exceeds the bytes left", n))
	}
	var v fl.Vector
	if d.err == nil {
		v = make(fl.Vector, n)
		for i := range v {
			v[i] = math.Float64frombits(d.u64())
		}
	}
	st := d.bytes()
	if err := d.end(); err != nil {
		return nil, nil, fmt.Errorf("%w: model payload: %v", ErrMalformed, err)
	}
	if !v.Finite() {
		return nil, nil, fmt.Errorf("%w: model has non-finite values", ErrMalformed)
	}
	return v, st, nil
}

func encodeGroupKey(target, modelKey []byte) []byte {
	var e encoder
	e.str(labelGroupKey)
	e.bytes(target)
	e.bytes(modelKey)
	return e.b
}

func decodeGroupKey(b []byte) (target, modelKey []byte, err error) {
	d := decoder{b: b}
	label := d.str()
	target, modelKey = d.bytes(), d.bytes()
	if err := d.end(); err != nil || label != labelGroupKey {
		return nil, nil, fmt.Errorf("%w: group key: %v", ErrMalformed, err)
	}
	return target, modelKey, nil
}

// encodeDealtKey is what a dealer seals to each participant: the group key
// (encodeGroupKey) and the round and payload digest of the model it sealed
// under that key (the initial model, or the one it carried over), so that
// every participant knows which model to expect.
func encodeDealtKey(groupKey []byte, base fl.Round, model Digest) []byte {
	var e encoder
	e.str(labelDealtKey)
	e.bytes(groupKey)
	e.u64(uint64(base))
	e.digest(model)
	return e.b
}

func decodeDealtKey(b []byte) (groupKey []byte, base fl.Round, model Digest, err error) {
	d := decoder{b: b}
	label := d.str()
	groupKey, base, model = d.bytes(), fl.Round(d.u64()), d.digest()
	if err := d.end(); err != nil || label != labelDealtKey {
		return nil, 0, Digest{}, fmt.Errorf("%w: dealt group key: %v", ErrMalformed, err)
	}
	return groupKey, base, model, nil
}

// protectSessionID derives the protect.Session ID of a key epoch.
func protectSessionID(session []byte, epoch uint64) []byte {
	var e encoder
	e.str(labelSession)
	e.bytes(session)
	e.u64(epoch)
	d := sha256.Sum256(e.b)
	return d[:]
}

// OpenModel opens a model of round r (0: the initial model) sealed by the
// engine, outside the engine: for tools such as `cloister model export`.
// groupKey is NodeState.GroupKey, box the node's ModelBox and session
// Config.Session. It returns the model without its optimizer state.
func OpenModel(box ModelBox, groupKey, session []byte, r fl.Round, sealed []byte) (fl.Vector, error) {
	v, _, err := OpenModelState(box, groupKey, session, r, sealed)
	return v, err
}

// OpenModel opens a model of round r that a node with this state and keys
// holds, outside the engine (for `cloister model export`): sealed under its
// group key or, after a re-key and until the node has the model re-sealed under
// the new group key, under the model key of an earlier epoch it still
// keeps (OldModelKeys, newest first). It returns the model and the
// optimizer state sealed with it.
func (st NodeState) OpenModel(keys NodeKeys, box ModelBox, r fl.Round, sealed []byte) (fl.Vector, []byte, error) {
	if len(keys.GroupKey) == 0 {
		return nil, nil, fmt.Errorf("%w: the node holds no group key", ErrWrongPhase)
	}
	v, opt, err := OpenModelState(box, keys.GroupKey, st.Session, r, sealed)
	if err == nil {
		return v, opt, nil
	}
	epochs := slices.Sorted(maps.Keys(st.OldModelKeys))
	for i := len(epochs) - 1; i >= 0; i-- {
		if pt, oerr := box.Open(st.OldModelKeys[epochs[i]], sealed, modelAD(st.Session, r)); oerr == nil {
			return decodeModel(pt)
		}
	}
	return nil, nil, err
}

// OpenModelState is OpenModel that also returns the optimizer state sealed
// with the model (the Optimizer's MarshalBinary output).
func OpenModelState(box ModelBox, groupKey, session []byte, r fl.Round, sealed []byte) (fl.Vector, []byte, error) {
	_, key, err := decodeGroupKey(groupKey)
	if err != nil {
		return nil, nil, err
	}
	pt, err := box.Open(key, sealed, modelAD(session, r))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: opening the model of round %d: %v", ErrMalformed, r, err)
	}
	return decodeModel(pt)
}
