package transport

import (
	"errors"
	"fmt"

	"github.com/cloisterfl/cloister/fl"
)

// Sentinel errors callers branch on. They are wrapped with context that
// names the peer and the bad input.
var (
	// ErrConfig: a ServerConfig or ClientConfig that cannot be used, such
	// as a TLS configuration that does not authenticate the peer.
	ErrConfig = errors.New("transport: invalid configuration")
	// ErrNotConnected: Send to a node that has no open stream.
	ErrNotConnected = errors.New("transport: node not connected")
	// ErrServerClosed: the server is shut down (Serve, Recv and Send after
	// Shutdown; on a node, the coordinator shut down).
	ErrServerClosed = errors.New("transport: server closed")
	// ErrClosed: the Conn was closed by its owner.
	ErrClosed = errors.New("transport: connection closed")
	// ErrReplaced: a newer stream of the same node replaced this one. On a
	// node it usually means that another process holds the same identity.
	ErrReplaced = errors.New("transport: stream replaced by a newer stream of the same node")
	// ErrRejected: on a node, the coordinator dropped the stream because of
	// what this node sent. The error also wraps the reason's sentinel
	// (ErrImpersonation, ErrTooLarge, ErrFrame or ErrMalformed).
	ErrRejected = errors.New("transport: rejected by the coordinator")

	// ErrImpersonation: a message whose sender claim is not the NodeID of
	// the peer certificate. See [ClaimError].
	ErrImpersonation = errors.New("transport: message claims another NodeID")
	// ErrUnauthenticated: a stream whose peer certificate names no node.
	ErrUnauthenticated = errors.New("transport: peer has no node identity")
	// ErrTooLarge: a message larger than Limits.MaxMessage, declared by a
	// header or given to Send.
	ErrTooLarge = errors.New("transport: message too large")
	// ErrFrame: a frame out of order, a chunk without a header, a header in
	// the middle of a message, a digest mismatch, or other garbage framing.
	ErrFrame = errors.New("transport: bad frame")
	// ErrMalformed: a message that does not decode or does not pass
	// validation (unknown kind, bad NodeID, impossible number or count).
	ErrMalformed = errors.New("transport: malformed message")
	// ErrMisaddressed: a message whose To names another node.
	ErrMisaddressed = errors.New("transport: message addressed to another node")
)

// ClaimError reports a message whose sender claim (the frame header's
// from) is not the NodeID of the peer certificate. It matches
// [ErrImpersonation] with errors.Is.
type ClaimError struct {
	Peer    fl.NodeID // authenticated by the peer certificate
	Claimed string    // what the message said
}

func (e *ClaimError) Error() string {
	return fmt.Sprintf("transport: node %s sent a message claiming to be %q", e.Peer, e.Claimed)
}

// Is reports whether target is ErrImpersonation.
func (e *ClaimError) Is(target error) bool { return target == ErrImpersonation }

// Reason classifies a rejection, for [Metrics.Rejected] and logs.
type Reason uint8

// Rejection reasons.
const (
	// ReasonHandshake: the TLS handshake failed: no client certificate, a
	// certificate from another CA, expired, revoked or not admitted (server
	// only).
	ReasonHandshake Reason = iota + 1
	// ReasonIdentity: the handshake passed but the certificate names no node
	// (ErrUnauthenticated).
	ReasonIdentity
	// ReasonImpersonation: a message claiming another NodeID (ErrImpersonation).
	ReasonImpersonation
	// ReasonTooLarge: a declared length above Limits.MaxMessage (ErrTooLarge).
	ReasonTooLarge
	// ReasonFrame: garbage or out-of-order frames, a digest mismatch (ErrFrame).
	ReasonFrame
	// ReasonMalformed: a message that does not decode or validate (ErrMalformed).
	ReasonMalformed
	// ReasonMisaddressed: a message for another node (ErrMisaddressed, node only).
	ReasonMisaddressed

	reasonEnd
)

var reasonNames = [...]string{
	ReasonHandshake: "handshake", ReasonIdentity: "identity", ReasonImpersonation: "impersonation",
	ReasonTooLarge: "too-large", ReasonFrame: "frame", ReasonMalformed: "malformed",
	ReasonMisaddressed: "misaddressed",
}

var reasonErrs = [...]error{
	ReasonHandshake: nil, ReasonIdentity: ErrUnauthenticated, ReasonImpersonation: ErrImpersonation,
	ReasonTooLarge: ErrTooLarge, ReasonFrame: ErrFrame, ReasonMalformed: ErrMalformed,
	ReasonMisaddressed: ErrMisaddressed,
}

// String returns the reason's label, such as "too-large".
func (r Reason) String() string {
	if r > 0 && r < reasonEnd {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// Reasons returns every rejection reason, in order.
func Reasons() []Reason {
	rs := make([]Reason, 0, reasonEnd-1)
	for r := Reason(1); r < reasonEnd; r++ {
		rs = append(rs, r)
	}
	return rs
}

// reasonOf returns the reason of a protocol violation, or 0 if err is not one.
func reasonOf(err error) Reason {
	for r := Reason(1); r < reasonEnd; r++ {
		if reasonErrs[r] != nil && errors.Is(err, reasonErrs[r]) {
			return r
		}
	}
	return 0
}

// parseReason is the inverse of Reason.String.
func parseReason(s string) Reason {
	for r := Reason(1); r < reasonEnd; r++ {
		if reasonNames[r] == s {
			return r
		}
	}
	return 0
}
