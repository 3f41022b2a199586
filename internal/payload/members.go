package payload

import (
	"fmt"
	"math"
	"slices"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// Members is a checked group as a mode's decoders see it: its members,
// sorted, whose indices payloads carry, its threshold, and the digest that
// binds every payload to it. Mode and Noun ("session" or "group") name it in
// errors.
type Members struct {
	Sorted    []fl.NodeID
	T         int
	Digest    [32]byte
	Mode      string
	Noun      string
	Malformed Errf
	Foreign   Errf
}

// Index returns the position of id among the members, or ErrNotMember.
func (m *Members) Index(id fl.NodeID, role string) (int, error) {
	i, ok := slices.BinarySearch(m.Sorted, id)
	if !ok {
		return 0, fmt.Errorf("%s: %s %q: %w", m.Mode, role, id, protect.ErrNotMember)
	}
	return i, nil
}

// Name names the member at index i, which the caller has checked.
func (m *Members) Name(i int) fl.NodeID { return m.Sorted[i] }

// Member reads a member index and checks that it is in range.
func (m *Members) Member(r *Reader) int {
	i := r.U32()
	if r.Err == nil && i >= len(m.Sorted) {
		r.Err = m.Malformed(r.What, "member index %d, the %s has %d members", i, m.Noun, len(m.Sorted))
	}
	return i
}

// CheckDigest reads the digest field of a payload: another one is Foreign.
func (m *Members) CheckDigest(r *Reader) {
	d := r.Hash()
	if r.Err == nil && d != m.Digest {
		r.Err = m.Foreign(r.What, "for another %s", m.Noun)
	}
}

// Keys returns the keys of ms that are members, sorted, or ErrNotMember.
func (m *Members) Keys(ms map[fl.NodeID][]byte, role string) ([]fl.NodeID, error) {
	ids := make([]fl.NodeID, 0, len(ms))
	for id := range ms {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if _, err := m.Index(id, role); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// CheckInput checks Protect's arguments for a mode that carries float64
// values: a round from 1, at most maxDim values, each finite and at most
// maxAbs in absolute value, a weight in [0, maxAbs]. Errors wrap
// protect.ErrRange.
func CheckInput(r fl.Round, v fl.Vector, weight float64, maxDim int, maxAbs float64) error {
	if r == 0 {
		return fmt.Errorf("round 0: rounds start at 1: %w", protect.ErrRange)
	}
	if len(v) > maxDim {
		return fmt.Errorf("vector of %d values, at most %d allowed: %w", len(v), maxDim, protect.ErrRange)
	}
	within := func(x float64) bool { return math.Abs(x) <= maxAbs } // false for NaN
	if i := slices.IndexFunc(v, func(x float64) bool { return !within(x) }); i >= 0 {
		return fmt.Errorf("value %d is %v, outside ±%v: %w", i, v[i], maxAbs, protect.ErrRange)
	}
	if !within(weight) || weight < 0 {
		return fmt.Errorf("weight %v outside [0, %v]: %w", weight, maxAbs, protect.ErrRange)
	}
	return nil
}

// AcceptPrivate checks the private dealings a party received in a setup
// whose dealings are bound to a transcript (protect/plain, protect/tee):
// one from every member, each opened by open (the mode's header, kind and
// fixed length), whose body is the group's digest, the dealer, the
// recipient and the transcript: dealt by that member, to self, on
// transcript. party names the receiving party in errors.
func (m *Members) AcceptPrivate(private map[fl.NodeID][]byte, self int, transcript [32]byte, party string,
	open func(b []byte, what string) (*Reader, error)) error {
	if _, err := m.Keys(private, "private dealing from"); err != nil {
		return err
	}
	for i, id := range m.Sorted {
		b, ok := private[id]
		if !ok {
			return fmt.Errorf("%s: %s: no private dealing from member %q", m.Mode, party, id)
		}
		what := fmt.Sprintf("private dealing from %s", id)
		r, err := open(b, what)
		if err != nil {
			return err
		}
		m.CheckDigest(r)
		dealer, recipient, t := m.Member(r), m.Member(r), r.Hash()
		if err := r.Done(); err != nil {
			return err
		}
		switch {
		case dealer != i:
			return m.Foreign(what, "dealt by %s", m.Name(dealer))
		case recipient != self:
			return m.Foreign(what, "dealt to %s", m.Name(recipient))
		case t != transcript:
			return m.Foreign(what, "for other announcements than %s dealt on", party)
		}
	}
	return nil
}

// Revealers checks a revealer set: exactly T distinct members. It returns
// their indices, sorted, and their encoding (AppendU32 each), which the
// mode hashes under its own domain.
func (m *Members) Revealers(list []fl.NodeID) ([]int, []byte, error) {
	if len(list) != m.T {
		return nil, nil, fmt.Errorf("%s: revealer set has %d members, the threshold is %d: %w", m.Mode, len(list), m.T, protect.ErrMalformed)
	}
	idx := make([]int, len(list))
	for i, id := range list {
		var err error
		if idx[i], err = m.Index(id, "revealer"); err != nil {
			return nil, nil, err
		}
	}
	slices.Sort(idx)
	var b []byte
	for i, x := range idx {
		if i > 0 && idx[i-1] == x {
			return nil, nil, fmt.Errorf("%s: revealer %q listed twice: %w", m.Mode, m.Name(x), protect.ErrMalformed)
		}
		b = AppendU32(b, x)
	}
	return idx, b, nil
}

// Announcements checks one announcement per member, each opened by open
// (the mode's header, kind and fixed length), whose body starts with the
// group's digest and the member's index; rest reads the rest of member i's
// body (and may set r.Err). It returns what the mode hashes into its
// transcript: the group's digest, then the announcements in member order.
func (m *Members) Announcements(anns map[fl.NodeID][]byte, open func(b []byte, what string) (*Reader, error),
	rest func(i int, r *Reader)) ([][]byte, error) {
	if _, err := m.Keys(anns, "announcement from"); err != nil {
		return nil, err
	}
	parts := make([][]byte, 0, 1+len(m.Sorted))
	parts = append(parts, m.Digest[:])
	for i, id := range m.Sorted {
		b, ok := anns[id]
		if !ok {
			return nil, fmt.Errorf("%s: no announcement from member %q", m.Mode, id)
		}
		what := fmt.Sprintf("announcement from %s", id)
		r, err := open(b, what)
		if err != nil {
			return nil, err
		}
		m.CheckDigest(r)
		who := m.Member(r)
		rest(i, r)
		if err := r.Done(); err != nil {
			return nil, err
		}
		if who != i {
			return nil, m.Foreign(what, "made by %s", m.Name(who))
		}
		parts = append(parts, b)
	}
	return parts, nil
}
