package secagg

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/payload"
	"github.com/cloisterfl/cloister/protect"
)

// Name is the mode's name in a federation manifest.
const Name = "secagg"

// Scheme is mode secagg with one preset.
type Scheme struct {
	p *Preset
}

var _ protect.Scheme = (*Scheme)(nil)

// New returns the scheme of preset p.
func New(p *Preset) (*Scheme, error) {
	if p == nil {
		return nil, errors.New("secagg: nil preset")
	}
	return &Scheme{p: p}, nil
}

// Name returns "secagg".
func (*Scheme) Name() string { return Name }

// Preset returns the scheme's preset.
func (s *Scheme) Preset() *Preset { return s.p }

// Capacity returns the preset's capacity. Protect refuses values above
// MaxAbs/n in a group of n members (see the package documentation).
func (s *Scheme) Capacity() protect.Capacity { return s.p.caps }

// Sizes returns the payload sizes for vectors of d values in a group of n
// members. Setup, shares and target keys have fixed or exact sizes; an
// update has the n members' blocks of shares and d+1 packed words; a share
// and a result are bounded by the worst included set.
func (s *Scheme) Sizes(d, n int) (protect.Sizes, error) {
	lim := s.p.caps
	if d < 1 || d > lim.MaxDim {
		return protect.Sizes{}, fmt.Errorf("secagg: sizes for %d values, want 1 to %d: %w", d, lim.MaxDim, protect.ErrRange)
	}
	if n < 1 || n > lim.MaxParties {
		return protect.Sizes{}, fmt.Errorf("secagg: sizes for %d members, want 1 to %d: %w", n, lim.MaxParties, protect.ErrRange)
	}
	deg, w := s.p.degree(n), s.p.width()
	words := (d + 1) * w
	// A share holds a self-mask share per included member and a pair share
	// per (included, dropped) neighbour pair: at most max over k of
	// k + k·min(deg, n−k) seeds.
	most := 0
	for k := 1; k <= n; k++ {
		most = max(most, k+k*min(deg, n-k))
	}
	return protect.Sizes{
		Announcement:   headerLen + announcementLen,
		PublicDealing:  headerLen + publicLen,
		PrivateDealing: headerLen + privateLen,
		Setup:          headerLen + setupLen,
		Update:         headerLen + protectedFixed + n*(1+deg)*seedLen + words,
		Aggregate:      headerLen + aggregateFixed + n*(4+hashLen) + words,
		Share:          headerLen + shareFixed + most*seedLen,
		Result:         headerLen + resultFixed + 4*n + n*boxEntryLen + words,
		TargetPublic:   headerLen + targetLen,
		TargetSecret:   headerLen + targetLen,
	}, nil
}

// NewParty returns member self's party for group g. rand is the source of
// its X25519 key, its contribution to the group mask key, its self-mask
// seeds, its Shamir coefficients and the ephemeral keys of its reveals.
func (s *Scheme) NewParty(g protect.Group, self fl.NodeID, rand io.Reader) (protect.Party, error) {
	sess, idx, err := s.session(g, self)
	if err != nil {
		return nil, err
	}
	if rand == nil {
		return nil, errors.New("secagg: nil random source")
	}
	return &party{sess: sess, self: idx, rand: rand}, nil
}

// LoadParty restores a party from its MarshalBinary state.
func (s *Scheme) LoadParty(g protect.Group, self fl.NodeID, state []byte, rand io.Reader) (protect.Party, error) {
	sess, idx, err := s.session(g, self)
	if err != nil {
		return nil, err
	}
	if rand == nil {
		return nil, errors.New("secagg: nil random source")
	}
	return loadParty(sess, idx, state, rand)
}

// NewHelper returns the coordinator side for group g.
func (s *Scheme) NewHelper(g protect.Group) (protect.Helper, error) {
	sess, _, err := s.session(g, "")
	if err != nil {
		return nil, err
	}
	return &helper{sess: sess}, nil
}

// session is a checked group under a preset.
type session struct {
	p       *Preset
	id      [32]byte    // hash of the group, its threshold and the preset
	members []fl.NodeID // sorted
	index   map[fl.NodeID]int
	t, deg  int
}

// session checks g (and self, unless empty).
func (s *Scheme) session(g protect.Group, self fl.NodeID) (*session, int, error) {
	if err := g.Validate(); err != nil {
		return nil, 0, fmt.Errorf("secagg: %w", err)
	}
	n := len(g.Members)
	if n > s.p.caps.MaxParties {
		return nil, 0, fmt.Errorf("secagg: group of %d members, preset %s allows %d: %w", n, s.p.Name(), s.p.caps.MaxParties, protect.ErrRange)
	}
	sess := &session{p: s.p, members: g.Sorted(), index: make(map[fl.NodeID]int, n), t: g.Threshold, deg: s.p.degree(n)}
	h := sha256.New()
	h.Write([]byte("cloister/secagg/v1 group"))
	h.Write(payload.AppendU32(nil, len(g.ID)))
	h.Write(g.ID)
	l := s.p.lit
	h.Write(fmt.Appendf(nil, "%d/%d/%g/%d/%d", l.Bits, l.Frac, l.MaxAbs, l.Neighbours, g.Threshold))
	for i, m := range sess.members {
		sess.index[m] = i
		h.Write(payload.AppendU32(nil, len(m)))
		h.Write([]byte(m))
	}
	h.Sum(sess.id[:0])
	idx := -1
	if self != "" {
		i, ok := sess.index[self]
		if !ok {
			return nil, 0, fmt.Errorf("secagg: %q: %w", self, protect.ErrNotMember)
		}
		idx = i
	}
	return sess, idx, nil
}

func (s *session) n() int { return len(s.members) }

// member reads a member index and checks it.
func (s *session) member(r *reader) int {
	i := r.U32()
	if r.Err == nil && i >= s.n() {
		r.Err = malformed(r.What, "member index %d, the group has %d", i, s.n())
	}
	return i
}

// shareBlock is the bytes of the shares one upload deals to one member.
func (s *session) shareBlock() int { return (1 + s.deg) * seedLen }

// revealerSet hashes a revealer set (as indices, sorted).
func (s *session) revealerSet(rev []int) [32]byte {
	h := sha256.New()
	h.Write([]byte("cloister/secagg/v1 revealers"))
	for _, i := range rev {
		h.Write(payload.AppendU32(nil, i))
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// revealers checks a revealer set: exactly t distinct members. It returns
// their indices, sorted.
func (s *session) revealers(ids []fl.NodeID, what string) ([]int, error) {
	idx := make([]int, 0, len(ids))
	for _, id := range ids {
		i, ok := s.index[id]
		if !ok {
			return nil, fmt.Errorf("secagg: %s: revealer %q: %w", what, id, protect.ErrNotMember)
		}
		idx = append(idx, i)
	}
	if len(idx) != s.t {
		return nil, malformed(what, "%d revealers, the threshold is %d", len(idx), s.t)
	}
	slices.Sort(idx)
	for j := 1; j < len(idx); j++ {
		if idx[j] == idx[j-1] {
			return nil, malformed(what, "revealer %s listed twice", s.members[idx[j]])
		}
	}
	return idx, nil
}
