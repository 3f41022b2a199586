package round

import (
	"errors"
	"fmt"

	"github.com/cloisterfl/cloister/fl"
)

// Sentinel errors callers branch on. Step wraps them in a [*StepError] that
// names the sender, the message kind and the round.
var (
	// ErrNotMember: the sender is not a member of the federation (on a node:
	// not the coordinator).
	ErrNotMember = errors.New("round: sender is not a member")
	// ErrForged: the message claims an identity or origin other than its
	// authenticated sender: a signature that does not verify under the
	// sender's key, a local input from the network, or a coordinator-only
	// message sent by a node.
	ErrForged = errors.New("round: message does not come from its authenticated sender")
	// ErrWrongSession: the message belongs to another federation session.
	ErrWrongSession = errors.New("round: message from another session")
	// ErrReplay: the message is for a past key epoch or a past round.
	ErrReplay = errors.New("round: message for a past round or epoch (replay)")
	// ErrFuture: the message is for a key epoch or round that has not started.
	ErrFuture = errors.New("round: message for a future round or epoch")
	// ErrWrongPhase: the message is for the current round but not for its
	// current phase.
	ErrWrongPhase = errors.New("round: message for another phase")
	// ErrNotSelected: the sender has no part in this step (not in the cohort,
	// not a revealer, not a leader of the round, not the key dealer).
	ErrNotSelected = errors.New("round: sender was not selected for this step")
	// ErrDuplicate: the step was already taken (a second upload, a second
	// commit of a committed round, a second training of a round).
	ErrDuplicate = errors.New("round: duplicate message")
	// ErrStale: the message belongs to a superseded part of the current round
	// or setup (an abandoned reveal, a finished training task).
	ErrStale = errors.New("round: stale message")
	// ErrMalformed: a payload that does not decode or does not pass the
	// scheme's checks.
	ErrMalformed = errors.New("round: malformed payload")
	// ErrRefused: a node refuses the request (a bad included set, a failed
	// attestation, a reveal-once violation).
	ErrRefused = errors.New("round: request refused")
	// ErrUnknownKind: a message kind this machine does not know.
	ErrUnknownKind = errors.New("round: unknown message kind")
	// ErrExcluded: the sender is excluded from the session
	// ([Coordinator.Exclude]) until it is readmitted.
	ErrExcluded = errors.New("round: sender is excluded")
)

// StepError is the error Step returns for a rejected message. The machine's
// state is unchanged; the rejection is also reported as an [EventRejected]
// audit event.
type StepError struct {
	From  fl.NodeID // the authenticated sender
	Kind  Kind
	Epoch uint64
	Round fl.Round
	Err   error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("round: rejected %s from %s (epoch %d, round %d): %v", e.Kind, e.From, e.Epoch, e.Round, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }
