// Package protect is the two-sided interface every aggregation mode implements.
//
// The round engine never sees a key, a ciphertext or a mask: it moves opaque
// byte payloads between a [Party] on each node and a [Helper] on the
// coordinator, in the order below. Every mode reads alike, after age's
// Recipient/Identity pair and Lattigo's multiparty verbs. Four modes exist:
// mhe (package mhe, threshold multiparty CKKS, the default), secagg
// (package secagg, SecAgg+ masking with dropout recovery), tee (package
// protect/tee, updates sealed to an attested aggregator, whose Open runs
// in that aggregator and applies a robust rule) and plain (package
// protect/plain, no protection, for baselines). How to add one is
// in docs/ARCHITECTURE.md ("Where to add a mode").
//
// # The group
//
// A [Group] fixes the members, the threshold t and an identifier that every
// payload is bound to. Setup runs once per group:
//
//  1. Each party calls [Party.Announce] and the coordinator relays all the
//     announcements to everyone.
//  2. Each party calls [Party.Deal] with all announcements. The Public part goes
//     to the coordinator. Each Private payload is for one recipient only and
//     MUST be sealed end to end to that recipient (HPKE) before it leaves the
//     node: the coordinator only relays it.
//  3. The coordinator calls [Helper.Setup] with the announcements and the public
//     parts, and broadcasts the result.
//  4. Each party calls [Party.Accept] with the setup and the private payloads
//     dealt to it (opened by the runtime).
//
// # A round
//
//  1. Each party in the cohort calls [Party.Protect] on its (clipped, noised,
//     weighted) update and uploads the result.
//  2. The coordinator calls [Helper.Aggregate] on what arrived in time.
//  3. The runtime fixes a set of exactly [Helper.Needed] revealers. Each calls
//     [Party.Reveal], which records (round, digest) in its [Ledger] before it
//     returns the share, and refuses a second reveal for the round.
//  4. [Helper.Open] combines the shares into a result that only the holder of
//     the [Target] (the federation's group key) can read with [Target.Decrypt].
//
// A set of revealers is fixed before any share is made. If one of them drops
// out, that round's reveal is abandoned; it is never retried on the same
// aggregate.
//
// # Bytes
//
// Every method that takes bytes may be given hostile bytes from the network.
// Implementations validate them fully and return an error wrapping
// [ErrMalformed] (truncated, bad header, impossible lengths or values) or
// [ErrForeign] (a well-formed payload bound to another group, round,
// member, kind, aggregate, revealer set or target); they never panic and
// never allocate more than the declared, checked sizes allow. A NodeID that
// is not a member (as a map key, in Revealers, or as self) gives
// [ErrNotMember]. A call that returns an error changes nothing, so the caller
// can go on as if it had not been made.
//
// The conformance suite in protect/protecttest checks all of this; every
// scheme runs it. Package protect/plain is the reference implementation,
// which protects nothing.
package protect

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/cloisterfl/cloister/fl"
)

// Sentinel errors callers branch on. Implementations wrap them with context
// that names the input, e.g. fmt.Errorf("aggregate from %s: %w", node, ErrMalformed).
var (
	// ErrMalformed: the bytes are not a well-formed payload of this scheme
	// (truncated, bad header, impossible lengths, hostile values).
	ErrMalformed = errors.New("protect: malformed payload")
	// ErrForeign: a well-formed payload of another group, parameter set,
	// round, kind or member.
	ErrForeign = errors.New("protect: payload from another group or parameter set")
	// ErrRevealed: this party already revealed for that round.
	ErrRevealed = errors.New("protect: already revealed in this round")
	// ErrNotEnoughShares: fewer reveal shares than the threshold.
	ErrNotEnoughShares = errors.New("protect: not enough reveal shares")
	// ErrNotMember: a node that is not a member of the group.
	ErrNotMember = errors.New("protect: not a group member")
	// ErrNotReady: the method was called before setup completed.
	ErrNotReady = errors.New("protect: key setup has not completed")
	// ErrRange: an input outside the scheme's Capacity.
	ErrRange = errors.New("protect: value out of range")
	// ErrProtected: this party already protected an update in that round
	// (or a later one), and the scheme makes one upload per round at most.
	ErrProtected = errors.New("protect: already protected an update in this round")
)

// Group fixes who takes part in a key setup.
type Group struct {
	// ID binds every payload to this group (for example the hash of the
	// signed manifest and the key epoch). At most 64 bytes.
	ID []byte
	// Members lists the group's members, distinct, in any order.
	Members []fl.NodeID
	// Threshold t: any t members can reveal an aggregate; t−1 cannot.
	Threshold int
}

// Validate checks that the group is well-formed.
func (s Group) Validate() error {
	if len(s.ID) == 0 || len(s.ID) > 64 {
		return fmt.Errorf("protect: group ID must have 1 to 64 bytes, has %d", len(s.ID))
	}
	if len(s.Members) < 1 {
		return errors.New("protect: group has no members")
	}
	seen := make(map[fl.NodeID]bool, len(s.Members))
	for _, m := range s.Members {
		if m == "" {
			return errors.New("protect: group has an empty member name")
		}
		if seen[m] {
			return fmt.Errorf("protect: member %q listed twice", m)
		}
		seen[m] = true
	}
	if s.Threshold < 1 || s.Threshold > len(s.Members) {
		return fmt.Errorf("protect: threshold %d outside 1..%d", s.Threshold, len(s.Members))
	}
	return nil
}

// Index returns the position of id in the sorted member list, or -1.
func (s Group) Index(id fl.NodeID) int {
	sorted := s.Sorted()
	i, ok := slices.BinarySearch(sorted, id)
	if !ok {
		return -1
	}
	return i
}

// Sorted returns the members in ascending order (a copy).
func (s Group) Sorted() []fl.NodeID {
	m := slices.Clone(s.Members)
	slices.Sort(m)
	return m
}

// Capacity states what a scheme can carry and how exactly.
type Capacity struct {
	// MaxAbs bounds the absolute value of every coordinate of a SUM (and of
	// the summed weight) that Decrypt returns correctly. Callers scale their
	// inputs so that sums stay within it.
	MaxAbs float64
	// MaxError bounds the absolute error of every decrypted coordinate,
	// beyond the rounding of adding the inputs in float64 (which every
	// scheme that returns float64 incurs). A scheme without encoding error,
	// like plain, has MaxError 0.
	MaxError float64
	// MaxParties is the largest number of summed inputs for which MaxError holds.
	MaxParties int
	// MaxDim is the longest vector Protect accepts.
	MaxDim int
	// Lossy names the compression a scheme applies to its inputs before
	// they leave the party (package compress: "topk:0.01", "q8"), or is
	// empty. A lossy scheme's sum is the exact sum of what its parties
	// sent, which is not the sum of their inputs: q8 is unbiased and off
	// by up to a bucket's step per input; top-k sends only the largest
	// coordinates and keeps the rest for the party's later rounds (error
	// feedback). MaxError then bounds only the scheme's own encoding, on
	// top of the compression's loss.
	Lossy string
	// SetBound reports a scheme whose reveal shares depend only on the
	// round and on the included set its aggregate names (checked against
	// RevealRequest.Included), never on the aggregate's other bytes, and
	// under which any aggregate but the true sum reveals nothing of an
	// honest member's input (mhe: see mhe/README.md, "The included set is
	// the key"). Its revealers need not re-sum the included uploads, and
	// reveal requests need not carry them.
	SetBound bool
}

// Sizes are the largest byte lengths of a scheme's payloads, for vectors of
// d values (the length given to Party.Protect) in a group of n members.
// The runtime derives its transport receive limits from them, so that both
// ends agree on them by construction and a peer cannot make the other hold
// more than the protocol needs. Every payload a method returns is at most
// its field's size; for mhe and plain the sizes are exact.
type Sizes struct {
	Announcement   int // Party.Announce
	PublicDealing  int // Dealing.Public
	PrivateDealing int // each Dealing.Private payload, before the runtime seals it
	Setup          int // Helper.Setup
	Update         int // Party.Protect
	Aggregate      int // Helper.Aggregate (of up to n updates)
	Share          int // Party.Reveal
	Result         int // Helper.Open
	TargetPublic   int // Target.Public
	TargetSecret   int // Target.MarshalBinary
}

// Max returns the largest of the sizes.
func (s Sizes) Max() int {
	return max(s.Announcement, s.PublicDealing, s.PrivateDealing, s.Setup, s.Update,
		s.Aggregate, s.Share, s.Result, s.TargetPublic, s.TargetSecret)
}

// Dealing is what Deal produces.
type Dealing struct {
	// Public goes to the coordinator (Helper.Setup).
	Public []byte
	// Private holds one payload per recipient (including, possibly, the dealer
	// itself). Each MUST be sealed to its recipient before it leaves the node.
	Private map[fl.NodeID][]byte
}

// RevealRequest names the aggregate to reveal and to whom.
type RevealRequest struct {
	Round     fl.Round
	Aggregate []byte      // Helper.Aggregate's output
	Revealers []fl.NodeID // exactly Helper.Needed() distinct members, fixed before any share
	Target    []byte      // Target.Public() of the key the result is switched to
	// Uploads are the included members' protected updates, keyed by
	// sender: the input of Helper.Aggregate that made Aggregate. A scheme
	// whose reveal shares depend on them (secagg: the Shamir shares dealt
	// in each upload) reads and checks them; mhe and plain ignore them.
	// Helper.Open does not use them.
	Uploads map[fl.NodeID][]byte
	// Included is the included set the runtime verified: each member's
	// upload signed by it under the round's pledge set. A scheme whose
	// reveal is keyed by the set its aggregate names (Capacity.SetBound)
	// refuses a request without it, or whose aggregate names another set.
	Included []fl.NodeID
	// InsecureTrustAggregateSet makes a SetBound scheme take the set its
	// aggregate names without checking it: TESTS ONLY (the positive
	// control of the attack the check stops).
	InsecureTrustAggregateSet bool
}

// Digest returns the SHA-256 of the aggregate the request reveals. The ledger
// records it.
func (r RevealRequest) Digest() [32]byte { return sha256.Sum256(r.Aggregate) }

// Sum is a decrypted aggregate: the sum of the protected vectors and of their
// weights.
type Sum struct {
	Vector fl.Vector
	Weight float64
}

// Party is the node side of a scheme.
type Party interface {
	// Announce returns this party's public announcement (a fresh nonce and
	// whatever else the scheme needs) for the setup.
	Announce() ([]byte, error)
	// Deal takes every member's announcement and returns this party's setup
	// contributions.
	Deal(announcements map[fl.NodeID][]byte) (Dealing, error)
	// Accept completes setup with the coordinator's Setup result and the
	// private payloads dealt to this party, keyed by dealer.
	Accept(setup []byte, private map[fl.NodeID][]byte) error
	// Protect hides v and its weight for round r. The result is uploaded.
	// It returns ErrNotReady before Accept has succeeded, and an error
	// wrapping ErrRange if v is longer than Capacity.MaxDim, or if v or weight
	// holds a value that is not finite or exceeds Capacity.MaxAbs. A scheme
	// may refuse a second Protect for a round, or for a round before the
	// newest it protected, with an error wrapping ErrProtected (mhe does:
	// its uploads of one round share a common polynomial, and two of them
	// would disclose their difference); the runtime never asks for one.
	Protect(r fl.Round, v fl.Vector, weight float64) ([]byte, error)
	// Reveal returns this party's reveal share for req. It first checks req
	// completely (the aggregate belongs to this group and req.Round, the
	// target is a key of this scheme, req.Revealers are exactly t distinct
	// members and include this party); a request it rejects records nothing.
	// Then it records (req.Round, req.Digest()) in l, and returns the share
	// only if Record succeeded: it refuses with ErrRevealed if l already
	// holds a reveal for that round (even of another aggregate), and returns
	// no share if the ledger fails.
	Reveal(req RevealRequest, l Ledger) ([]byte, error)
	// MarshalBinary returns the party's secret state (key shares) for
	// sealed storage at rest; Scheme.LoadParty restores it.
	MarshalBinary() ([]byte, error)
}

// Helper is the coordinator side of a scheme. It learns nothing secret.
type Helper interface {
	// Setup combines the announcements and public dealings into the
	// group's public setup, broadcast to all parties.
	Setup(announcements, publics map[fl.NodeID][]byte) ([]byte, error)
	// Aggregate sums the protected payloads of round r, keyed by sender.
	// Every key must be a member (ErrNotMember) and its payload that
	// member's, for this group and round r (ErrForeign). Payloads of
	// different lengths, or no payload at all, are an error.
	Aggregate(r fl.Round, protected map[fl.NodeID][]byte) ([]byte, error)
	// Needed is the number of reveal shares Open needs: the threshold t.
	Needed() int
	// Open combines the reveal shares for req, keyed by revealer, into a
	// result that only Target.Decrypt can read. It needs the share of every
	// one of req.Revealers: fewer give ErrNotEnoughShares. A share under a key
	// outside req.Revealers, or one made for another request (round,
	// aggregate, revealer set or target), is rejected with ErrForeign (or
	// ErrNotMember for a key that is not a member).
	Open(req RevealRequest, shares map[fl.NodeID][]byte) ([]byte, error)
}

// Checker is a Helper that can check one protected payload on its own. A
// Helper whose Aggregate is not a sum (plain with a robust rule, which
// needs a cohort of several updates) implements it; for the others
// checking one payload is aggregating it alone. See [Check].
type Checker interface {
	// Check reports what Aggregate would report about the payload of
	// member from in round r: ErrNotMember, ErrMalformed or ErrForeign.
	Check(r fl.Round, from fl.NodeID, protected []byte) error
}

// Check checks the protected payload of member from in round r alone, as
// the coordinator does with each upload as it arrives, so that one bad
// upload cannot spoil the aggregate: with h's Check if h is a [Checker],
// else by aggregating the payload alone.
func Check(h Helper, r fl.Round, from fl.NodeID, protected []byte) error {
	if c, ok := h.(Checker); ok {
		return c.Check(r, from, protected)
	}
	_, err := h.Aggregate(r, map[fl.NodeID][]byte{from: protected})
	return err
}

// Precomputer is a Party that can make ahead of time what its next reveal
// share needs and the aggregate does not (mhe: the key switch's encryption
// randomness and its noise flooding), so that Reveal costs less on the
// round's critical path. The runtime calls it while it waits for the
// round's reveal request, from another goroutine if it likes: it is safe
// alongside the party's other methods. What it makes serves one Reveal
// only, is erased after it and is never persisted.
type Precomputer interface {
	// Precompute prepares the next Reveal for vectors of d values
	// revealed to target (Target.Public()).
	Precompute(target []byte, d int) error
}

// Target is the key pair an aggregate is revealed to: the federation's group
// key, known to attested members and never to the coordinator.
type Target interface {
	// Public returns the public key, for RevealRequest.Target.
	Public() []byte
	// Decrypt reads a result of Helper.Open. A result opened to another
	// target is rejected with ErrForeign.
	Decrypt(result []byte) (Sum, error)
	// MarshalBinary returns the secret key, to be sealed to members.
	MarshalBinary() ([]byte, error)
}

// Scheme makes the parties, helpers and targets of one aggregation mode.
type Scheme interface {
	// Name is the mode's name, e.g. "mhe" or "plain".
	Name() string
	// Capacity states the scheme's range and precision.
	Capacity() Capacity
	// Sizes returns the payload sizes for vectors of d values in a group
	// of n members. It returns an error wrapping ErrRange if d is outside
	// 1..Capacity().MaxDim or n outside 1..Capacity().MaxParties.
	Sizes(d, n int) (Sizes, error)
	// NewParty returns member self's party for group s. rand is the source
	// of all its secret randomness (crypto/rand.Reader in production).
	NewParty(s Group, self fl.NodeID, rand io.Reader) (Party, error)
	// LoadParty restores a party from Party.MarshalBinary.
	LoadParty(s Group, self fl.NodeID, state []byte, rand io.Reader) (Party, error)
	// NewHelper returns the coordinator side for group s.
	NewHelper(s Group) (Helper, error)
	// NewTarget generates a fresh target key pair.
	NewTarget(rand io.Reader) (Target, error)
	// LoadTarget restores a target from Target.MarshalBinary.
	LoadTarget(secret []byte) (Target, error)
}

// Ledger is a party's durable reveal-once record.
type Ledger interface {
	// Record notes that the party reveals the aggregate with the given digest
	// in round r. It must be durable when it returns. If any reveal is already
	// recorded for r it returns an error wrapping ErrRevealed and records
	// nothing.
	Record(r fl.Round, digest [32]byte) error
}

// MemLedger is an in-memory Ledger for tests and simulations. It is not
// durable (a real node persists its ledger, see package store) and not safe
// for concurrent use. The zero value is empty and ready to use.
type MemLedger struct {
	seen map[fl.Round][32]byte
}

// Record implements Ledger.
func (l *MemLedger) Record(r fl.Round, digest [32]byte) error {
	if l.seen == nil {
		l.seen = make(map[fl.Round][32]byte)
	}
	if d, ok := l.seen[r]; ok {
		return fmt.Errorf("round %d (recorded digest %x, asked %x): %w", r, d[:6], digest[:6], ErrRevealed)
	}
	l.seen[r] = digest
	return nil
}
