package round

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/lenprefix"
)

// The bytes the engine signs, seals and boxes use the length-prefixed
// encoding of internal/lenprefix (TestCodecKnownAnswer fixes them). Decoding
// never trusts a length beyond the bytes it has.

// putNodes appends a list of node IDs: its length, then each ID.
func putNodes(w *lenprefix.Writer, ns []fl.NodeID) {
	w.U64(uint64(len(ns)))
	for _, n := range ns {
		w.String(string(n))
	}
}

// readDigest reads a digest written with Writer.Raw.
func readDigest(r *lenprefix.Reader) Digest {
	var d Digest
	copy(d[:], r.Raw(len(d)))
	return d
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
	labelUpload   = "cloister/round/v2/upload"
	labelPledge   = "cloister/round/v2/pledge"
	labelPledges  = "cloister/round/v2/pledge-set"
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

// pledgeSigned returns the bytes a node signs for its pledge: the digest
// of its protected update, before it has seen any other upload.
func pledgeSigned(session []byte, epoch uint64, r fl.Round, d Digest) []byte {
	var e lenprefix.Writer
	e.String(labelPledge)
	e.Bytes(session)
	e.U64(epoch)
	e.U64(uint64(r))
	e.Raw(d[:])
	return e.B
}

// pledgesDigest returns the digest of a round's pledge set (sorted by
// member): the members and their pledged digests.
func pledgesDigest(session []byte, epoch uint64, r fl.Round, set []Contribution) Digest {
	var e lenprefix.Writer
	e.String(labelPledges)
	e.Bytes(session)
	e.U64(epoch)
	e.U64(uint64(r))
	e.U64(uint64(len(set)))
	for _, p := range set {
		e.String(string(p.Node))
		e.Raw(p.Digest[:])
	}
	return DigestOf(e.B)
}

// uploadSigned returns the bytes a node signs for its upload: its digest
// and the pledge set it uploads under (pledges, its digest).
func uploadSigned(session []byte, epoch uint64, r fl.Round, d, pledges Digest) []byte {
	var e lenprefix.Writer
	e.String(labelUpload)
	e.Bytes(session)
	e.U64(epoch)
	e.U64(uint64(r))
	e.Raw(d[:])
	e.Raw(pledges[:])
	return e.B
}

// envelope binds a sealed payload to its purpose, session, epoch, sender and
// recipient, so the coordinator cannot move it elsewhere.
func envelope(purpose string, session []byte, epoch uint64, from, to fl.NodeID, payload []byte) []byte {
	var e lenprefix.Writer
	e.String(labelSeal)
	e.String(purpose)
	e.Bytes(session)
	e.U64(epoch)
	e.String(string(from))
	e.String(string(to))
	e.Bytes(payload)
	return e.B
}

func openEnvelope(b []byte, purpose string, session []byte, epoch uint64, from, to fl.NodeID) ([]byte, error) {
	d := lenprefix.NewReader(b)
	label, p, s, ep := d.String(), d.String(), d.Bytes(), d.U64()
	f, t, payload := fl.NodeID(d.String()), fl.NodeID(d.String()), d.Bytes()
	if err := d.End(); err != nil {
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
	var e lenprefix.Writer
	e.String(labelModelAD)
	e.Bytes(session)
	e.U64(uint64(r))
	return e.B
}

// maxDim bounds the length of a decoded model vector.
const maxDim = 1 << 28

func encodeModel(v fl.Vector, optState []byte) []byte {
	e := lenprefix.Writer{B: make([]byte, 0, 64+8*len(v)+len(optState))}
	e.String(labelModel)
	e.U64(uint64(len(v)))
	for _, x := range v {
		e.U64(math.Float64bits(x))
	}
	e.Bytes(optState)
	return e.B
}

func decodeModel(b []byte) (fl.Vector, []byte, error) {
	d := lenprefix.NewReader(b)
	if d.String() != labelModel && d.Err() == nil {
		return nil, nil, fmt.Errorf("%w: not a model payload", ErrMalformed)
	}
	n := d.U64()
	if d.Err() == nil && (n > maxDim || n*8 > uint64(d.Len())) {
		d.Fail(fmt.Errorf("model length %d exceeds the bytes left", n))
	}
	var v fl.Vector
	if d.Err() == nil {
		v = make(fl.Vector, n)
		for i := range v {
			v[i] = math.Float64frombits(d.U64())
		}
	}
	st := d.Bytes()
	if err := d.End(); err != nil {
		return nil, nil, fmt.Errorf("%w: model payload: %v", ErrMalformed, err)
	}
	if !v.Finite() {
		return nil, nil, fmt.Errorf("%w: model has non-finite values", ErrMalformed)
	}
	return v, st, nil
}

func encodeGroupKey(target, modelKey []byte) []byte {
	var e lenprefix.Writer
	e.String(labelGroupKey)
	e.Bytes(target)
	e.Bytes(modelKey)
	return e.B
}

func decodeGroupKey(b []byte) (target, modelKey []byte, err error) {
	d := lenprefix.NewReader(b)
	label := d.String()
	target, modelKey = d.Bytes(), d.Bytes()
	if err := d.End(); err != nil || label != labelGroupKey {
		return nil, nil, fmt.Errorf("%w: group key: %v", ErrMalformed, err)
	}
	return target, modelKey, nil
}

// encodeDealtKey is what a dealer seals to each participant: the group key
// (encodeGroupKey) and the round and payload digest of the model it sealed
// under that key (the initial model, or the one it carried over), so that
// every participant knows which model to expect.
func encodeDealtKey(groupKey []byte, base fl.Round, model Digest) []byte {
	var e lenprefix.Writer
	e.String(labelDealtKey)
	e.Bytes(groupKey)
	e.U64(uint64(base))
	e.Raw(model[:])
	return e.B
}

func decodeDealtKey(b []byte) (groupKey []byte, base fl.Round, model Digest, err error) {
	d := lenprefix.NewReader(b)
	label := d.String()
	groupKey, base, model = d.Bytes(), fl.Round(d.U64()), readDigest(d)
	if err := d.End(); err != nil || label != labelDealtKey {
		return nil, 0, Digest{}, fmt.Errorf("%w: dealt group key: %v", ErrMalformed, err)
	}
	return groupKey, base, model, nil
}

// protectSessionID derives the protect.Group ID of a key epoch.
func protectSessionID(session []byte, epoch uint64) []byte {
	var e lenprefix.Writer
	e.String(labelSession)
	e.Bytes(session)
	e.U64(epoch)
	d := sha256.Sum256(e.B)
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
