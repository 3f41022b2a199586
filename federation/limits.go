package federation

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/round"
)

// ErrLimitTooSmall reports a receive limit below what the federation's
// largest message needs: with it, some round would fail.
var ErrLimitTooSmall = errors.New("federation: message limit below what the federation needs")

// Bounds on what the engine and the daemons add to the scheme's payloads.
// They are upper bounds; package node's tests check its sealing against
// them. A member's Hello evidence (its process keys and TEE evidence, which
// the coordinator relays to every member in a Welcome or SetupStart) is at
// most round.MaxEvidence (package pki's MaxEvidence).
const (
	// SealOverhead bounds what sealing a payload to one member adds: the
	// engine's envelope and encoding (labels, session, epoch, sender and
	// recipient names), and HPKE with ML-KEM-768+X25519 (a 1,120-byte
	// encapsulation, a 64-byte session-key signature, a 16-byte AES-GCM tag).
	SealOverhead = 4 << 10
	// ModelOverhead bounds what a sealed model adds to its 8 bytes per
	// parameter and its optimizer state: the engine's encoding (label,
	// lengths) and AES-256-GCM (nonce, tag).
	ModelOverhead = 1 << 10
	// MessageOverhead bounds a message's fields besides the payloads
	// counted here: kind, session, epoch, round, names, the round record,
	// signatures, metrics, the training configuration, a refusal's reason,
	// and their protobuf framing.
	MessageOverhead = 64 << 10
	// MemberOverhead bounds what each member adds to a message besides its
	// payload: its NodeID (at most 64 bytes) as a map key or in a cohort,
	// a revealer set or an included set (with an upload digest and
	// signature), and the protobuf framing of each.
	MemberOverhead = 1 << 10
)

// maxMaxMessage is package transport's MaxMaxMessage, the largest limit
// it takes (this package cannot import transport, which imports pki).
const maxMaxMessage = 1<<31 - 1

// Margin is the share the transport limit adds to the largest message,
// for what the bounds above may have missed: MaxMessage = Need × (1 +
// 1/Margin), rounded up to 64 KiB. (Margin 4: 25 %.)
const Margin = 4

// Sizes are the largest messages of a federation, as its signed manifest
// implies them: the coordinator and every node compute the same, so both
// ends of every stream agree on the limit by construction.
type Sizes struct {
	// Params is d, the model's parameter count (ModelSpec.NumParams of
	// the manifest's model), and Members n.
	Params, Members int
	// Dim is the length of the vectors the engine protects and seals: d,
	// or 2d under SCAFFOLD (the model joined with the control variate).
	Dim int
	// Payload is the scheme's payload sizes for Dim values and n members.
	Payload protect.Sizes
	// Model bounds a sealed model: 8 bytes per value of Dim, the
	// optimizer's state (strategy.Strategy.StateSize) and ModelOverhead.
	Model int64
	// Kinds bounds each kind of message that crosses the network.
	Kinds map[round.Kind]int64
	// Need is the largest of Kinds, and Largest its kind.
	Need    int64
	Largest round.Kind
	// MaxMessage is Need with the Margin: the transport's limit.
	MaxMessage int64
}

// MessageSizes computes the message sizes of the federation man describes,
// with the scheme of its mode (scheme nil: Scheme(man.Mode, man.Preset)).
func MessageSizes(man *Manifest, scheme protect.Scheme) (Sizes, error) {
	if scheme == nil {
		var err error
		if scheme, err = Scheme(man.Mode, man.Preset); err != nil {
			return Sizes{}, err
		}
	}
	spec := man.Model
	if err := spec.validate(); err != nil {
		return Sizes{}, fmt.Errorf("federation: the manifest's model: %w", err)
	}
	opt, err := man.Training.Optimizer()
	if err != nil {
		return Sizes{}, err
	}
	s := Sizes{Params: spec.NumParams(), Members: len(man.Members)}
	s.Dim = VectorLen(man)
	if s.Payload, err = scheme.Sizes(s.Dim, s.Members); err != nil {
		return Sizes{}, fmt.Errorf("federation: %s (%d parameters, vectors of %d) in mode %s with %d members: %w", spec, s.Params, s.Dim, scheme.Name(), s.Members, err)
	}
	n, p := int64(s.Members), s.Payload
	s.Model = 8*int64(s.Dim) + int64(opt.StateSize(s.Dim)) + ModelOverhead
	sealedKey := int64(p.TargetSecret) + SealOverhead // the group key: target secret and model key
	evidences := n * round.MaxEvidence
	private := n * int64(p.PrivateDealing+SealOverhead)
	const pledge = 32 + 64 // a pledge: a digest and an Ed25519 signature (names count in MemberOverhead)
	revealRequest := int64(p.Aggregate) + int64(p.TargetPublic)
	if !scheme.Capacity().SetBound {
		revealRequest += n * int64(p.Update) // with the included uploads, which the revealer sums
	}
	s.Kinds = map[round.Kind]int64{
		round.KindHello:         round.MaxEvidence,
		round.KindWelcome:       evidences + sealedKey + int64(p.TargetPublic),
		round.KindPeer:          evidences,
		round.KindSetupStart:    evidences,
		round.KindAnnounce:      int64(p.Announcement),
		round.KindAnnouncements: n * int64(p.Announcement),
		round.KindDeal:          int64(p.PublicDealing) + private,
		round.KindSetup:         int64(p.Setup) + private,
		round.KindAccept:        0,
		round.KindKeyRequest:    s.Model, // at a re-key: the newest model, to carry over
		round.KindGroupKey:      n*sealedKey + int64(p.TargetPublic) + s.Model,
		round.KindKeyDelivery:   sealedKey + int64(p.TargetPublic),
		round.KindKeyAck:        0,
		round.KindTrain:         s.Model,
		round.KindUpload:        int64(p.Update),
		round.KindRevealRequest: revealRequest,
		round.KindShare:         int64(p.Share),
		round.KindDecrypt:       s.Model + int64(p.Result) + n*pledge, // with the pledge set
		round.KindCommit:        s.Model,
		round.KindModel:         s.Model,
		round.KindMetrics:       0,
		round.KindRefuse:        0,
		round.KindDone:          0,
		round.KindAmend:         MaxSize, // a signed manifest
		round.KindPledge:        pledge,
		round.KindPledges:       n * pledge,
	}
	if man.Mode == ModeTEE {
		// The aggregator answers a reveal request with the round's result,
		// sealed to the group key, in a KindShare (round.Aggregator).
		s.Kinds[round.KindShare] = int64(max(p.Share, p.Result))
	}
	for _, k := range slices.Sorted(maps.Keys(s.Kinds)) {
		s.Kinds[k] += MessageOverhead + n*MemberOverhead
		if s.Kinds[k] > s.Need {
			s.Need, s.Largest = s.Kinds[k], k
		}
	}
	const unit = 64 << 10
	s.MaxMessage = (s.Need + s.Need/Margin + unit - 1) / unit * unit
	if s.MaxMessage > maxMaxMessage {
		return s, fmt.Errorf("federation: a %s message of this federation (%s, %d parameters, %d members) takes up to %d bytes, more than the transport's %d",
			s.Largest, spec, s.Params, s.Members, s.Need, int64(maxMaxMessage))
	}
	return s, nil
}

// VectorLen is the length of the vectors the engine protects, sums and
// seals for the manifest: the model's parameter count d, or 2d under
// SCAFFOLD, whose vectors join the model and the control variate
// (strategy/scaffold.Join). 0 if the model is invalid.
func VectorLen(man *Manifest) int {
	d := man.Model.NumParams()
	if man.Training.Scaffold() {
		return 2 * d
	}
	return d
}

// Limit returns the transport's message limit for these sizes: MaxMessage,
// or maxMessage if it is not 0 (an operator's override, e.g. for larger
// TEE evidence). An override below Need is refused with an error wrapping
// ErrLimitTooSmall: some message of the federation would not fit.
func (s Sizes) Limit(maxMessage int64) (int64, error) {
	if maxMessage == 0 {
		return s.MaxMessage, nil
	}
	if maxMessage < s.Need {
		return 0, fmt.Errorf("%w: %d bytes, but a %s message of this federation (%d parameters, %d members) may take %d bytes (the computed limit is %d)",
			ErrLimitTooSmall, maxMessage, s.Largest, s.Params, s.Members, s.Need, s.MaxMessage)
	}
	return maxMessage, nil
}
