package psi

import (
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gtank/ristretto255"
)

// PointSize is the size of an encoded blinded point.
const PointSize = 32

// domain separates this package's hash to the group from any other use of
// SHA-512 and ristretto255.
const domain = "cloister/psi/v1 hash-to-ristretto255"

// Sentinel errors callers branch on.
var (
	// ErrMalformed: bytes that are not a list of canonical, non-identity
	// ristretto255 encodings; from another party over a relay, also a
	// message of the wrong length or with sizes or positions out of range.
	ErrMalformed = errors.New("psi: malformed blinded points")
	// ErrDuplicate: an ID listed twice in one party's set.
	ErrDuplicate = errors.New("psi: duplicate ID")
	// ErrEmpty: a party with no IDs.
	ErrEmpty = errors.New("psi: empty ID set")
	// ErrNoOverlap: the parties share no ID.
	ErrNoOverlap = errors.New("psi: the parties share no ID")
)

// Key is one party's secret blinding scalar for one session.
type Key struct {
	k       ristretto255.Scalar
	session []byte
}

// NewKey draws a secret scalar from rand for the given session (1 to 255
// bytes, the same for every party of a run).
func NewKey(session []byte, rand io.Reader) (*Key, error) {
	if len(session) == 0 || len(session) > 255 {
		return nil, fmt.Errorf("psi: session of %d bytes, want 1 to 255", len(session))
	}
	var b [64]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return nil, fmt.Errorf("psi: drawing the secret scalar: %w", err)
	}
	k := &Key{session: slices.Clone(session)}
	if _, err := k.k.SetUniformBytes(b[:]); err != nil {
		return nil, err
	}
	if k.k.Equal(ristretto255.NewScalar()) == 1 {
		return nil, errors.New("psi: the random source gave a zero scalar")
	}
	return k, nil
}

// Hash maps id to the group for session: FromUniformBytes of SHA-512 over
// the domain separator, the session's length and bytes, and the ID.
func Hash(session []byte, id string) *ristretto255.Element {
	return hashInto(sha512.New(), ristretto255.NewElement(), session, id)
}

// hashInto is Hash with the hash state and the element reused.
func hashInto(h hash.Hash, e *ristretto255.Element, session []byte, id string) *ristretto255.Element {
	h.Reset()
	h.Write([]byte(domain))
	h.Write([]byte{byte(len(session))})
	h.Write(session)
	h.Write([]byte(id))
	var sum [64]byte
	e.FromUniformBytes(h.Sum(sum[:0]))
	return e
}

// Blind returns k·H(id) for each ID, encoded, PointSize bytes each, in the
// order given, computed by up to workers goroutines (0: one per core).
func (k *Key) Blind(ids []string, workers int) []byte {
	out := make([]byte, len(ids)*PointSize)
	parallel(len(ids), workers, func(lo, hi int) error {
		e, p, h := ristretto255.NewElement(), ristretto255.NewElement(), sha512.New()
		for i := lo; i < hi; i++ {
			e.ScalarMult(&k.k, hashInto(h, p, k.session, ids[i]))
			e.Encode(out[i*PointSize : i*PointSize])
		}
		return nil
	})
	return out
}

// Reblind decodes a list of blinded points and returns k times each, in
// the same order. offset is the position of the first point in the whole
// list, for error messages. Bytes that are not a whole number of
// canonical, non-identity encodings are refused with an error wrapping
// ErrMalformed that names the first bad position.
func (k *Key) Reblind(points []byte, offset, workers int) ([]byte, error) {
	if len(points)%PointSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a whole number of %d-byte points", ErrMalformed, len(points), PointSize)
	}
	n := len(points) / PointSize
	out := make([]byte, len(points))
	err := parallel(n, workers, func(lo, hi int) error {
		p, e := ristretto255.NewElement(), ristretto255.NewElement()
		id := ristretto255.NewIdentityElement()
		for i := lo; i < hi; i++ {
			if _, err := p.SetCanonicalBytes(points[i*PointSize : (i+1)*PointSize]); err != nil {
				return &pointError{pos: offset + i, why: "not a canonical ristretto255 encoding"}
			}
			if p.Equal(id) == 1 {
				return &pointError{pos: offset + i, why: "the identity"}
			}
			e.ScalarMult(&k.k, p)
			e.Encode(out[i*PointSize : i*PointSize])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

type pointError struct {
	pos int
	why string
}

func (e *pointError) Error() string {
	return fmt.Sprintf("%v: point %d is %s", ErrMalformed, e.pos, e.why)
}
func (e *pointError) Unwrap() error { return ErrMalformed }

// parallel runs f over [0, n) in contiguous chunks that up to workers
// goroutines take in turn (so that a core slowed by something else does
// not leave the others idle at the end), and returns the error of the
// lowest chunk that failed.
func parallel(n, workers int, f func(lo, hi int) error) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, max(1, n/64))
	if workers <= 1 {
		return f(0, n)
	}
	chunk := max(64, n/(16*workers))
	chunks := (n + chunk - 1) / chunk
	errs := make([]error, chunks)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				c := int(next.Add(1) - 1)
				if c >= chunks {
					return
				}
				errs[c] = f(c*chunk, min((c+1)*chunk, n))
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// CheckIDs reports an empty set (ErrEmpty), an empty ID, or the first ID
// listed twice (ErrDuplicate, naming it and both positions).
func CheckIDs(ids []string) error {
	if len(ids) == 0 {
		return ErrEmpty
	}
	order := make([]int32, len(ids))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		if ids[a] < ids[b] {
			return -1
		} else if ids[a] > ids[b] {
			return 1
		}
		return int(a - b)
	})
	for i, o := range order {
		if ids[o] == "" {
			return fmt.Errorf("psi: ID at position %d is empty", o)
		}
		if i > 0 && ids[order[i-1]] == ids[o] {
			return fmt.Errorf("%w %q at positions %d and %d", ErrDuplicate, ids[o], order[i-1], o)
		}
	}
	return nil
}

// fingerprint is the first 16 bytes of a doubly blinded point's encoding:
// enough to tell a million pseudorandom points apart (collision chance
// about 2^-80), at half the memory of the point.
type fingerprint [2]uint64

func fingerprintOf(b []byte) fingerprint {
	return fingerprint{binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:16])}
}

// Matcher finds which of a party's doubly blinded points are among the
// hub's. It keeps 16-byte fingerprints of the hub's points, not the
// points. Add the hub's points in its order, then Match the other side's
// batch by batch.
type Matcher struct {
	fps    []fingerprint
	index  []int32
	sorted bool
	dup    bool
}

// Add appends a batch of the hub's doubly blinded points, in the hub's
// order.
func (m *Matcher) Add(doubled []byte) error {
	if len(doubled)%PointSize != 0 {
		return fmt.Errorf("%w: %d bytes is not a whole number of %d-byte points", ErrMalformed, len(doubled), PointSize)
	}
	if m.sorted {
		return errors.New("psi: Matcher.Add after Match")
	}
	for i := 0; i < len(doubled); i += PointSize {
		m.index = append(m.index, int32(len(m.fps)))
		m.fps = append(m.fps, fingerprintOf(doubled[i:]))
	}
	return nil
}

// Len is the number of hub points added.
func (m *Matcher) Len() int { return len(m.fps) }

func (m *Matcher) seal() error {
	if m.sorted {
		return nil
	}
	idx, fps := m.index, m.fps
	slices.SortFunc(idx, func(a, b int32) int { return cmpFP(fps[a], fps[b]) })
	sortedFPs := make([]fingerprint, len(fps))
	for i, j := range idx {
		sortedFPs[i] = fps[j]
		if i > 0 && sortedFPs[i] == sortedFPs[i-1] {
			return fmt.Errorf("%w: the hub's doubly blinded points %d and %d are equal (a duplicate ID)", ErrDuplicate, idx[i-1], j)
		}
	}
	m.fps, m.sorted = sortedFPs, true
	return nil
}

func cmpFP(a, b fingerprint) int {
	if a[0] != b[0] {
		if a[0] < b[0] {
			return -1
		}
		return 1
	}
	if a[1] != b[1] {
		if a[1] < b[1] {
			return -1
		}
		return 1
	}
	return 0
}

// Match looks up a batch of the other party's doubly blinded points (the
// first at position offset of its list) and calls found(hub, other) for
// each one the hub also has.
func (m *Matcher) Match(doubled []byte, offset int, found func(hub, other int)) error {
	if len(doubled)%PointSize != 0 {
		return fmt.Errorf("%w: %d bytes is not a whole number of %d-byte points", ErrMalformed, len(doubled), PointSize)
	}
	if err := m.seal(); err != nil {
		return err
	}
	for i := 0; i < len(doubled); i += PointSize {
		fp := fingerprintOf(doubled[i:])
		j, ok := slices.BinarySearchFunc(m.fps, fp, cmpFP)
		if ok {
			found(int(m.index[j]), offset+i/PointSize)
		}
	}
	return nil
}
