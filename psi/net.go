package psi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cloisterfl/cloister/relay"
)

// The messages of [Hub] and [Member], by tag; the index is the batch
// (0 for the one-off messages). Per sender, in this order:
//
//	hub → member: psi/sizes, psi/hub[0..), psi/ack[0..), psi/rows
//	member → hub: psi/sizes, psi/reblinded[0..), psi/points[0..)
const (
	tagSizes     = "psi/sizes"     // count u32, batch u32, big-endian
	tagHub       = "psi/hub"       // the hub's singly blinded points
	tagReblinded = "psi/reblinded" // the same, doubly blinded by the member
	tagPoints    = "psi/points"    // the member's singly blinded points
	tagAck       = "psi/ack"       // the hub read a batch of psi/points
	tagRows      = "psi/rows"      // positions u32, big-endian; none: no overlap
)

// window is how many batches a sender may have in flight ahead of what
// the receiver has read: enough to keep both ends busy, few enough that
// neither side's queue holds much of the other's set.
const window = 4

// ackStop is the body of a psi/ack that tells the member the intersection
// is empty and the hub reads no more of its points. An ordinary ack is
// empty.
const ackStop = 1

// sizes is what a party tells the other first: how many IDs it has and
// how many points it sends per batch.
type sizes struct{ count, batch int }

// ownSizes is the batching of n IDs under o: Options.Batch, at most n.
func ownSizes(n int, o Options) sizes {
	batch := o.Batch
	if batch <= 0 {
		batch = 1 << 16
	}
	return sizes{count: n, batch: min(batch, n)}
}

func (s sizes) encode() []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(s.count))
	return binary.BigEndian.AppendUint32(b, uint32(s.batch))
}

// parseSizes decodes and checks the other side's sizes: 1 to 2^31-1 IDs,
// in batches of 1 to count points.
func parseSizes(b []byte) (sizes, error) {
	if len(b) != 8 {
		return sizes{}, fmt.Errorf("%w: sizes of %d bytes, want 8", ErrMalformed, len(b))
	}
	count, batch := binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
	if count < 1 || count > maxIDs {
		return sizes{}, fmt.Errorf("%w: a set of %d IDs, want 1 to 2^31-1", ErrMalformed, count)
	}
	if batch < 1 || batch > count {
		return sizes{}, fmt.Errorf("%w: batches of %d points for %d IDs, want 1 to %d", ErrMalformed, batch, count, count)
	}
	return sizes{count: int(count), batch: int(batch)}, nil
}

// batches is the number of batches.
func (s sizes) batches() int { return (s.count + s.batch - 1) / s.batch }

// span is the range of positions of batch i.
func (s sizes) span(i int) (lo, hi int) {
	lo = i * s.batch
	return lo, min(lo+s.batch, s.count)
}

// checkBatch checks that a received batch i has the length sizes s says.
func (s sizes) checkBatch(b []byte, i int) error {
	lo, hi := s.span(i)
	if len(b) != (hi-lo)*PointSize {
		return fmt.Errorf("%w: batch %d of %d bytes, want %d (%d points)", ErrMalformed, i, len(b), (hi-lo)*PointSize, hi-lo)
	}
	return nil
}

// link wraps a relay.Link for one party: it counts the bytes sent and
// names the party in errors.
type link struct {
	ctx  context.Context
	l    relay.Link
	who  string // "hub \"L\"" or "party \"F\""
	sent int64
}

func (l *link) send(to, tag string, index int, body []byte) error {
	if err := l.l.Send(l.ctx, to, tag, uint64(index), body); err != nil {
		return fmt.Errorf("psi: %s: %w", l.who, err)
	}
	l.sent += int64(len(body))
	return nil
}

func (l *link) recv(from, tag string, index int) ([]byte, error) {
	b, err := l.l.Recv(l.ctx, from, tag, uint64(index))
	if err != nil {
		return nil, fmt.Errorf("psi: %s: %w", l.who, err)
	}
	return b, nil
}

// Hub runs the hub's side of the protocol of [Run] with each other party
// in its own process, reached through l. others are the other parties'
// names. It returns what Run returns (Shared, Rows for the hub then each
// of others in order, Bytes = what this party sent: the messages' bodies,
// to which the relay adds its framing).
//
// The hub blinds each batch of its IDs once and sends it to every party,
// at most a few batches ahead of their replies; then it reads each
// party's points in turn, acknowledging batches so that a party stays
// only a few batches ahead. A party that shares no ID with the hub ends
// the run: every party is told, and gets [ErrNoOverlap], as does the hub.
// On any other error the hub returns at once, and the other parties wait
// until their contexts end (or the relay ends the session).
func Hub(ctx context.Context, l relay.Link, hub Party, others []string, o Options) (*Result, error) {
	if len(others) == 0 {
		return nil, errors.New("psi: need at least one party besides the hub")
	}
	if err := checkParty(hub); err != nil {
		return nil, err
	}
	names := map[string]bool{hub.Name: true}
	for _, f := range others {
		if names[f] {
			return nil, fmt.Errorf("psi: party %q listed twice", f)
		}
		names[f] = true
	}
	h := &link{ctx: ctx, l: l, who: fmt.Sprintf("hub %q", hub.Name)}
	own := ownSizes(len(hub.IDs), o)

	// Sizes, both ways: every party sends its own before it reads.
	for _, f := range others {
		if err := h.send(f, tagSizes, 0, own.encode()); err != nil {
			return nil, err
		}
	}
	theirs := make([]sizes, len(others))
	for j, f := range others {
		b, err := h.recv(f, tagSizes, 0)
		if err != nil {
			return nil, err
		}
		if theirs[j], err = parseSizes(b); err != nil {
			return nil, fmt.Errorf("psi: hub %q: the sizes from %q: %w", hub.Name, f, err)
		}
	}

	// Steps 2 and 3: batch b of the hub's singly blinded points goes to
	// every party, and their doubly blinded replies to batch b-window are
	// read, so a window of batches is in flight; the hub keeps
	// fingerprints only.
	matchers := make([]Matcher, len(others))
	nh := own.batches()
	for b := 0; b < nh+window; b++ {
		if b < nh {
			lo, hi := own.span(b)
			single := hub.Key.Blind(hub.IDs[lo:hi], o.Workers)
			for _, f := range others {
				if err := h.send(f, tagHub, b, single); err != nil {
					return nil, err
				}
			}
		}
		r := b - window
		if r < 0 || r >= nh {
			continue
		}
		for j, f := range others {
			double, err := h.recv(f, tagReblinded, r)
			if err != nil {
				return nil, err
			}
			if err := own.checkBatch(double, r); err != nil {
				return nil, fmt.Errorf("psi: hub %q: the hub's points blinded by %q: %w", hub.Name, f, err)
			}
			if err := matchers[j].Add(double); err != nil {
				return nil, fmt.Errorf("psi: hub %q: the hub's points blinded by %q: %w", hub.Name, f, err)
			}
		}
	}

	// Steps 1 and 4: each party's singly blinded points, which the hub
	// blinds again and matches.
	pair := make([][]int32, len(others))
	for j, f := range others {
		pair[j] = unmatched(len(hub.IDs))
		found := 0
		n := theirs[j].batches()
		for c := range n {
			single, err := h.recv(f, tagPoints, c)
			if err != nil {
				return nil, err
			}
			// Let the party send batch c+window while this one is
			// blinded.
			if c+window < n {
				if err := h.send(f, tagAck, c, nil); err != nil {
					return nil, err
				}
			}
			if err := theirs[j].checkBatch(single, c); err != nil {
				return nil, fmt.Errorf("psi: hub %q: the points of %q: %w", hub.Name, f, err)
			}
			lo, _ := theirs[j].span(c)
			double, err := hub.Key.Reblind(single, lo, o.Workers)
			if err != nil {
				return nil, fmt.Errorf("psi: hub %q blinding the points of %q: %w", hub.Name, f, err)
			}
			err = matchers[j].Match(double, lo, func(hb, other int) {
				pair[j][hb] = int32(other)
				found++
			})
			if err != nil {
				return nil, fmt.Errorf("psi: hub %q matching %q: %w", hub.Name, f, err)
			}
		}
		matchers[j] = Matcher{}
		if found == 0 {
			err := fmt.Errorf("%w: party %q and hub %q", ErrNoOverlap, f, hub.Name)
			return nil, errors.Join(err, h.stop(others, theirs, j+1))
		}
	}

	res, err := intersect(hub.IDs, pair)
	if err != nil {
		return nil, errors.Join(err, h.stop(others, theirs, len(others)))
	}
	for j, f := range others {
		body := make([]byte, 0, 4*len(res.Rows[j+1]))
		for _, row := range res.Rows[j+1] {
			body = binary.BigEndian.AppendUint32(body, uint32(row))
		}
		if err := h.send(f, tagRows, 0, body); err != nil {
			return nil, err
		}
	}
	res.Bytes = h.sent
	return res, nil
}

// stop tells every party that the intersection is empty, the hub having
// read the points of others[:read]: a party whose points the hub has not
// read, and that waits for acks, gets a stopping ack (its next message
// from the hub); every other party gets an empty list of rows.
func (h *link) stop(others []string, theirs []sizes, read int) error {
	var errs []error
	for j, f := range others {
		var err error
		if j >= read && theirs[j].batches() > window {
			err = h.send(f, tagAck, 0, []byte{ackStop})
		} else {
			err = h.send(f, tagRows, 0, nil)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// MemberResult is what a non-hub party learns from [Member].
type MemberResult struct {
	// Rows holds the positions in the party's ID list of the shared IDs,
	// in the aligned order (Run's Rows for this party).
	Rows []int
	// Bytes counts the bodies of the messages this party sent.
	Bytes int64
}

// Member runs a non-hub party's side of the protocol of [Run] against
// [Hub]; hub names the hub. It returns the positions in self.IDs of the
// shared IDs, in the aligned order (Run's Rows for this party), and what
// this party sent. If the parties share no ID, the error wraps
// [ErrNoOverlap].
//
// The member blinds each of the hub's batches again as it arrives and
// returns it; then it sends its own singly blinded points, at most a few
// batches ahead of the hub's acks, and reads its rows, which it checks
// (at most one per ID, each a distinct position of its list).
func Member(ctx context.Context, l relay.Link, self Party, hub string, o Options) (*MemberResult, error) {
	if err := checkParty(self); err != nil {
		return nil, err
	}
	if hub == self.Name {
		return nil, fmt.Errorf("psi: party %q is its own hub", hub)
	}
	m := &link{ctx: ctx, l: l, who: fmt.Sprintf("party %q", self.Name)}
	own := ownSizes(len(self.IDs), o)
	if err := m.send(hub, tagSizes, 0, own.encode()); err != nil {
		return nil, err
	}
	b, err := m.recv(hub, tagSizes, 0)
	if err != nil {
		return nil, err
	}
	theirs, err := parseSizes(b)
	if err != nil {
		return nil, fmt.Errorf("psi: party %q: the sizes from hub %q: %w", self.Name, hub, err)
	}

	// Step 3: the hub's points, doubly blinded as they come.
	for b := range theirs.batches() {
		single, err := m.recv(hub, tagHub, b)
		if err != nil {
			return nil, err
		}
		if err := theirs.checkBatch(single, b); err != nil {
			return nil, fmt.Errorf("psi: party %q: the points of hub %q: %w", self.Name, hub, err)
		}
		lo, _ := theirs.span(b)
		double, err := self.Key.Reblind(single, lo, o.Workers)
		if err != nil {
			return nil, fmt.Errorf("psi: party %q blinding the points of hub %q: %w", self.Name, hub, err)
		}
		if err := m.send(hub, tagReblinded, b, double); err != nil {
			return nil, err
		}
	}

	// Step 1: this party's points, at most window batches ahead of the
	// hub's acks.
	n := own.batches()
	for c := range n {
		if c >= window {
			ack, err := m.recv(hub, tagAck, c-window)
			if err != nil {
				return nil, err
			}
			switch {
			case len(ack) == 1 && ack[0] == ackStop:
				return nil, fmt.Errorf("%w: hub %q stopped party %q: another party shares no ID with the hub", ErrNoOverlap, hub, self.Name)
			case len(ack) != 0:
				return nil, fmt.Errorf("psi: party %q: ack %d from hub %q: %w: body of %d bytes, want none or the stop byte", self.Name, c-window, hub, ErrMalformed, len(ack))
			}
		}
		lo, hi := own.span(c)
		if err := m.send(hub, tagPoints, c, self.Key.Blind(self.IDs[lo:hi], o.Workers)); err != nil {
			return nil, err
		}
	}

	// The rows.
	body, err := m.recv(hub, tagRows, 0)
	if err != nil {
		return nil, err
	}
	rows, err := parseRows(body, len(self.IDs))
	if err != nil {
		return nil, fmt.Errorf("psi: party %q: the rows from hub %q: %w", self.Name, hub, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%w: hub %q reports no ID held by every party", ErrNoOverlap, hub)
	}
	return &MemberResult{Rows: rows, Bytes: m.sent}, nil
}

// parseRows decodes a list of positions in a set of count IDs and checks
// it: a whole number of 4-byte positions, at most count of them, each
// below count and none repeated.
func parseRows(b []byte, count int) ([]int, error) {
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a whole number of 4-byte positions", ErrMalformed, len(b))
	}
	if len(b)/4 > count {
		return nil, fmt.Errorf("%w: %d rows for a set of %d IDs", ErrMalformed, len(b)/4, count)
	}
	rows := make([]int, len(b)/4)
	seen := make([]uint64, (count+63)/64)
	for i := range rows {
		p := binary.BigEndian.Uint32(b[4*i:])
		if uint64(p) >= uint64(count) {
			return nil, fmt.Errorf("%w: row %d is position %d, past the set's %d IDs", ErrMalformed, i, p, count)
		}
		if seen[p/64]&(1<<(p%64)) != 0 {
			return nil, fmt.Errorf("%w: row %d repeats position %d", ErrMalformed, i, p)
		}
		seen[p/64] |= 1 << (p % 64)
		rows[i] = int(p)
	}
	return rows, nil
}
