package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/cloisterfl/cloister/fl"
)

// Digest is a SHA-256 digest: a record hash, or the digest of something a
// record refers to (an update, an aggregate, a model, a manifest, a
// certificate). It encodes as 64 lowercase hex digits.
type Digest [sha256.Size]byte

// String returns the digest in hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// IsZero reports whether d is all zeros (the Prev of the first record).
func (d Digest) IsZero() bool { return d == Digest{} }

// MarshalText implements encoding.TextMarshaler.
func (d Digest) MarshalText() ([]byte, error) {
	b := make([]byte, hex.EncodedLen(len(d)))
	hex.Encode(b, d[:])
	return b, nil
}

// UnmarshalText implements encoding.TextUnmarshaler. It accepts exactly 64
// lowercase hex digits.
func (d *Digest) UnmarshalText(b []byte) error {
	if len(b) != 2*len(d) {
		return fmt.Errorf("digest has %d characters, want %d", len(b), 2*len(d))
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("digest has character %q; want lowercase hex", rune(c))
		}
	}
	_, err := hex.Decode(d[:], b)
	return err
}

// Kind says what a record records.
type Kind string

// The record kinds. Each takes a fixed set of [Data] fields (see the table
// in the package documentation); anything else is refused.
const (
	SessionStarted    Kind = "session-started"    // a session began under a manifest
	NodeAdmitted      Kind = "node-admitted"      // a node passed mTLS and joined
	NodeRefused       Kind = "node-refused"       // a connection or node was refused
	KeySetup          Kind = "key-setup"          // collective key setup completed for an epoch
	PayloadRelayed    Kind = "payload-relayed"    // a sealed payload was relayed from Node to Recipient
	RoundStarted      Kind = "round-started"      // a round began, with its cohort and leader
	UpdateAccepted    Kind = "update-accepted"    // an update (its digest only) was accepted
	NodeDropped       Kind = "node-dropped"       // a node dropped out
	Revealed          Kind = "revealed"           // a reveal share was made for an aggregate
	Committed         Kind = "committed"          // a round's model was committed
	Aborted           Kind = "aborted"            // a round or the session was aborted
	EpsilonSpent      Kind = "epsilon-spent"      // privacy budget spent, in micro-ε
	BudgetExhausted   Kind = "budget-exhausted"   // the session stopped: another round would pass the ε budget
	AttestationOK     Kind = "attestation-ok"     // a node's evidence verified
	AttestationFailed Kind = "attestation-failed" // a node's evidence failed
	KeyRotated        Kind = "key-rotated"        // the group key was rotated to a new epoch
	NodeReadmitted    Kind = "node-readmitted"    // an excluded node's exclusion ended (valid evidence again)
	Amended           Kind = "amended"            // an amended manifest took effect: its hash, the members, what changed
)

// Data holds a record's typed fields. Which fields a kind requires and
// allows is fixed (see the package documentation); zero fields are
// omitted from the encoding. There is deliberately no free-form payload:
// an audit log records digests and identities, never content.
type Data struct {
	Session   string    `json:"session,omitzero"`   // session (federation) ID
	Manifest  Digest    `json:"manifest,omitzero"`  // hash of the signed manifest
	Node      fl.NodeID `json:"node,omitzero"`      // the node concerned; a payload's sender
	Recipient fl.NodeID `json:"recipient,omitzero"` // a relayed payload's recipient
	Leader    fl.NodeID `json:"leader,omitzero"`    // a round's leader
	Round     fl.Round  `json:"round,omitzero"`
	Epoch     uint64    `json:"epoch,omitzero"`  // key epoch
	Digest    Digest    `json:"digest,omitzero"` // of the update, aggregate, model, payload, evidence or certificate
	// Members lists a cohort or key-setup members, distinct.
	Members      []fl.NodeID `json:"members,omitempty"`
	Size         int64       `json:"size,omitzero"`          // payload size in bytes
	MicroEpsilon int64       `json:"micro_epsilon,omitzero"` // ε × 10⁶, rounded up by the caller
	// TotalMicroEpsilon is the cumulative ε × 10⁶ after the record; in an
	// epsilon-spent record it equals the sum of the log's micro_epsilon.
	TotalMicroEpsilon int64   `json:"total_micro_epsilon,omitzero"`
	Delta             float64 `json:"delta,omitzero"`  // the δ at which ε is stated, in (0, 1)
	Format            string  `json:"format,omitzero"` // evidence format, e.g. "sev-snp"
	Reason            string  `json:"reason,omitzero"` // short, human-readable
}

type field uint16

const (
	fSession field = 1 << iota
	fManifest
	fNode
	fRecipient
	fLeader
	fRound
	fEpoch
	fDigest
	fMembers
	fSize
	fMicroEpsilon
	fFormat
	fReason
	fTotalMicroEpsilon
	fDelta
)

var fieldNames = []string{"session", "manifest", "node", "recipient", "leader", "round", "epoch", "digest", "members", "size", "micro_epsilon", "format", "reason", "total_micro_epsilon", "delta"}

func (f field) String() string {
	var b []byte
	for i, n := range fieldNames {
		if f&(1<<i) != 0 {
			if len(b) > 0 {
				b = append(b, ',')
			}
			b = append(b, n...)
		}
	}
	return string(b)
}

func (d *Data) fields() field {
	var f field
	set := func(ok bool, x field) {
		if ok {
			f |= x
		}
	}
	set(d.Session != "", fSession)
	set(!d.Manifest.IsZero(), fManifest)
	set(d.Node != "", fNode)
	set(d.Recipient != "", fRecipient)
	set(d.Leader != "", fLeader)
	set(d.Round != 0, fRound)
	set(d.Epoch != 0, fEpoch)
	set(!d.Digest.IsZero(), fDigest)
	set(len(d.Members) > 0, fMembers)
	set(d.Size != 0, fSize)
	set(d.MicroEpsilon != 0, fMicroEpsilon)
	set(d.Format != "", fFormat)
	set(d.Reason != "", fReason)
	set(d.TotalMicroEpsilon != 0, fTotalMicroEpsilon)
	set(d.Delta != 0, fDelta)
	return f
}

type kindSpec struct {
	required, optional field
	cosign             bool // may carry a cosignature
}

var kinds = map[Kind]kindSpec{
	SessionStarted:    {required: fSession | fManifest, optional: fMembers | fEpoch},
	NodeAdmitted:      {required: fNode, optional: fDigest},
	NodeRefused:       {required: fReason, optional: fNode | fDigest},
	KeySetup:          {required: fEpoch, optional: fMembers | fDigest},
	PayloadRelayed:    {required: fNode | fRecipient | fDigest, optional: fRound | fEpoch | fSize},
	RoundStarted:      {required: fRound, optional: fMembers | fLeader},
	UpdateAccepted:    {required: fRound | fNode | fDigest, optional: fSize},
	NodeDropped:       {required: fNode, optional: fRound | fReason},
	Revealed:          {required: fRound | fDigest, optional: fNode},
	Committed:         {required: fRound | fDigest, optional: fLeader | fSession, cosign: true},
	Aborted:           {required: fReason, optional: fRound},
	EpsilonSpent:      {required: fMicroEpsilon, optional: fRound | fNode | fTotalMicroEpsilon | fDelta},
	BudgetExhausted:   {required: fRound | fReason, optional: fTotalMicroEpsilon | fDelta},
	AttestationOK:     {required: fNode, optional: fFormat | fDigest},
	AttestationFailed: {required: fNode | fReason, optional: fFormat | fDigest},
	KeyRotated:        {required: fEpoch, optional: fMembers | fDigest | fReason},
	NodeReadmitted:    {required: fNode, optional: fRound | fReason},
	Amended:           {required: fManifest | fMembers | fReason, optional: fRound | fSession},
}

// Limits on what a record may hold.
const (
	MaxLine    = 1 << 20 // bytes in one encoded record, newline included
	MaxMembers = 4096
	MaxReason  = 200
)

// ValidateData checks that data has exactly the fields kind requires, at
// most the ones it allows, and well-formed values. Errors wrap
// [ErrMalformed].
func ValidateData(kind Kind, data Data) error {
	spec, ok := kinds[kind]
	if !ok {
		return fmt.Errorf("%w: unknown kind %q", ErrMalformed, truncate(string(kind)))
	}
	have := data.fields()
	if missing := spec.required &^ have; missing != 0 {
		return fmt.Errorf("%w: %s record lacks %s", ErrMalformed, kind, missing)
	}
	if extra := have &^ (spec.required | spec.optional); extra != 0 {
		return fmt.Errorf("%w: %s record may not carry %s", ErrMalformed, kind, extra)
	}
	if have&fSession != 0 {
		if err := validateSession(data.Session); err != nil {
			return err
		}
	}
	for _, n := range []struct {
		what string
		id   fl.NodeID
	}{{"node", data.Node}, {"recipient", data.Recipient}, {"leader", data.Leader}} {
		if n.id != "" {
			if err := validateName(string(n.id)); err != nil {
				return fmt.Errorf("%w: %s: %w", ErrMalformed, n.what, err)
			}
		}
	}
	if len(data.Members) > MaxMembers {
		return fmt.Errorf("%w: %d members, at most %d", ErrMalformed, len(data.Members), MaxMembers)
	}
	seen := make(map[fl.NodeID]bool, len(data.Members))
	for _, m := range data.Members {
		if err := validateName(string(m)); err != nil {
			return fmt.Errorf("%w: members: %w", ErrMalformed, err)
		}
		if seen[m] {
			return fmt.Errorf("%w: member %s listed twice", ErrMalformed, m)
		}
		seen[m] = true
	}
	if data.Size < 0 {
		return fmt.Errorf("%w: negative size %d", ErrMalformed, data.Size)
	}
	if data.MicroEpsilon < 0 {
		return fmt.Errorf("%w: negative micro_epsilon %d", ErrMalformed, data.MicroEpsilon)
	}
	if data.TotalMicroEpsilon < 0 {
		return fmt.Errorf("%w: negative total_micro_epsilon %d", ErrMalformed, data.TotalMicroEpsilon)
	}
	if data.Delta != 0 && !(data.Delta > 0 && data.Delta < 1) {
		return fmt.Errorf("%w: delta %v outside (0, 1)", ErrMalformed, data.Delta)
	}
	if data.Format != "" {
		if len(data.Format) > 32 || validateName(data.Format) != nil {
			return fmt.Errorf("%w: format %q: want 1 to 32 characters from a-z, 0-9, '-'", ErrMalformed, truncate(data.Format))
		}
	}
	if data.Reason != "" {
		if len(data.Reason) > MaxReason || !utf8.ValidString(data.Reason) {
			return fmt.Errorf("%w: reason must be 1 to %d bytes of UTF-8", ErrMalformed, MaxReason)
		}
		for _, r := range data.Reason {
			if r < 0x20 || r == 0x7f {
				return fmt.Errorf("%w: reason has a control character", ErrMalformed)
			}
		}
	}
	return nil
}

// validateName applies fl.ValidateName's rule (1 to 64 characters from
// [a-z0-9-], no leading or trailing '-') to actors and node names. audit
// does not import pki, so the rule is restated here.
func validateName(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("name %q must have 1 to 64 characters", truncate(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(s)-1) {
			return fmt.Errorf("name %q: character %q at offset %d not allowed", truncate(s), rune(c), i)
		}
	}
	return nil
}

func validateSession(s string) error {
	if s == "" || len(s) > 128 {
		return fmt.Errorf("%w: session %q must have 1 to 128 characters", ErrMalformed, truncate(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: session %q has character %q", ErrMalformed, truncate(s), rune(c))
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Record is one entry of an audit log: a JSON line.
//
// Seq counts from 1. Prev is the [Record.Hash] of the previous record
// (zero for the first), which chains the log: editing, removing,
// inserting or reordering a record breaks the chain after it. Sig is the
// writer's Ed25519 signature of the record's hash. A Committed record may
// also carry a Cosign by the round's leader.
type Record struct {
	Seq    uint64       `json:"seq"`
	Prev   Digest       `json:"prev"`
	Time   time.Time    `json:"time"`  // UTC, from the writer's injected clock
	Actor  string       `json:"actor"` // the writer: a NodeID, or the coordinator's name
	Kind   Kind         `json:"kind"`
	Data   Data         `json:"data"`
	Cosign *Cosignature `json:"cosign,omitempty"`
	Sig    []byte       `json:"sig"`
}

// body is what a record's hash covers: everything but the writer's
// signature. It includes the cosignature, so a cosignature cannot be
// stripped or swapped without breaking the writer's signature.
type body struct {
	Seq    uint64       `json:"seq"`
	Prev   Digest       `json:"prev"`
	Time   time.Time    `json:"time"`
	Actor  string       `json:"actor"`
	Kind   Kind         `json:"kind"`
	Data   Data         `json:"data"`
	Cosign *Cosignature `json:"cosign,omitempty"`
}

// Domain-separation prefixes of the hashes that get signed.
const (
	recordContext    = "cloister audit record v1\x00"
	statementContext = "cloister audit cosign v1\x00"
)

// Hash returns the record's hash: SHA-256 over a context string and the
// canonical JSON of every field except Sig. The writer signs it and the
// next record's Prev holds it.
func (r *Record) Hash() (Digest, error) {
	b, err := json.Marshal(body{r.Seq, r.Prev, r.Time, r.Actor, r.Kind, r.Data, r.Cosign})
	if err != nil {
		return Digest{}, fmt.Errorf("%w: encoding record %d: %w", ErrMalformed, r.Seq, err)
	}
	return digest(recordContext, b), nil
}

func digest(context string, b []byte) Digest {
	h := sha256.New()
	h.Write([]byte(context))
	h.Write(b)
	var d Digest
	h.Sum(d[:0])
	return d
}

// Cosignature is a second party's signature on a record's statement (its
// kind and data): for a Committed record, the round leader's.
type Cosignature struct {
	Signer fl.NodeID `json:"signer"`
	Sig    []byte    `json:"sig"`
}

// Statement returns what a cosigner signs: SHA-256 over a context string
// and the canonical JSON of kind and data.
//
// The cosignature covers the statement rather than the record hash so that
// the leader can sign before the writer has placed the record in its log
// (the writer's Seq, Prev and Time are not the leader's to know, and the
// writer's log must not wait on a node). The record hash in turn covers
// the cosignature. To tie a statement to one session, put the session ID
// in Data.Session.
func Statement(kind Kind, data Data) (Digest, error) {
	b, err := json.Marshal(struct {
		Kind Kind `json:"kind"`
		Data Data `json:"data"`
	}{kind, data})
	if err != nil {
		return Digest{}, fmt.Errorf("%w: encoding statement: %w", ErrMalformed, err)
	}
	return digest(statementContext, b), nil
}

// Cosign returns signer's cosignature on a record of kind with data, made
// with signer's audit key. Only kinds that allow a cosignature (Committed)
// can be cosigned; if data names a Leader, signer must be that leader.
func Cosign(key ed25519.PrivateKey, signer fl.NodeID, kind Kind, data Data) (Cosignature, error) {
	if len(key) != ed25519.PrivateKeySize {
		return Cosignature{}, fmt.Errorf("audit: cosigning key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if err := checkCosign(kind, data, &Cosignature{Signer: signer, Sig: make([]byte, ed25519.SignatureSize)}); err != nil {
		return Cosignature{}, err
	}
	st, err := Statement(kind, data)
	if err != nil {
		return Cosignature{}, err
	}
	return Cosignature{Signer: signer, Sig: ed25519.Sign(key, st[:])}, nil
}

func checkCosign(kind Kind, data Data, c *Cosignature) error {
	if err := ValidateData(kind, data); err != nil {
		return err
	}
	if !kinds[kind].cosign {
		return fmt.Errorf("%w: a %s record cannot be cosigned", ErrMalformed, kind)
	}
	if err := validateName(string(c.Signer)); err != nil {
		return fmt.Errorf("%w: cosigner: %w", ErrMalformed, err)
	}
	if data.Leader != "" && c.Signer != data.Leader {
		return fmt.Errorf("%w: %s record of round %d cosigned by %s, but the round's leader is %s", ErrMalformed, kind, data.Round, c.Signer, data.Leader)
	}
	if len(c.Sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: cosignature has %d bytes, want %d", ErrMalformed, len(c.Sig), ed25519.SignatureSize)
	}
	return nil
}

// validate checks a record's form, not its signatures or its place in the
// chain.
func (r *Record) validate() error {
	if r.Seq == 0 {
		return fmt.Errorf("%w: seq 0 (records count from 1)", ErrMalformed)
	}
	if r.Seq == 1 != r.Prev.IsZero() {
		return fmt.Errorf("%w: seq %d with prev %s: only the first record has a zero prev", ErrMalformed, r.Seq, r.Prev)
	}
	if err := validateName(r.Actor); err != nil {
		return fmt.Errorf("%w: actor: %w", ErrMalformed, err)
	}
	if r.Time.Location() != time.UTC || r.Time.Year() < 1970 || r.Time.Year() > 9999 {
		return fmt.Errorf("%w: time %s is not a UTC time between 1970 and 9999", ErrMalformed, r.Time)
	}
	if err := ValidateData(r.Kind, r.Data); err != nil {
		return err
	}
	if r.Cosign != nil {
		if err := checkCosign(r.Kind, r.Data, r.Cosign); err != nil {
			return err
		}
	}
	if len(r.Sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature has %d bytes, want %d", ErrMalformed, len(r.Sig), ed25519.SignatureSize)
	}
	return nil
}

// encode returns the record's line, without the newline.
func (r *Record) encode() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding record %d: %w", ErrMalformed, r.Seq, err)
	}
	return b, nil
}

// ParseRecord parses one line of a log (without its newline) and checks its
// form: known kind, the kind's fields, well-formed values, and canonical
// encoding, so that every byte of the line is accounted for. It does not
// check signatures or the chain; [Verify] does. Errors wrap
// [ErrMalformed].
func ParseRecord(line []byte) (Record, error) {
	var r Record
	if len(line) >= MaxLine {
		return r, fmt.Errorf("%w: line of %d bytes, at most %d", ErrMalformed, len(line), MaxLine-1)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Record{}, fmt.Errorf("%w: data after the record", ErrMalformed)
	}
	if err := r.validate(); err != nil {
		return Record{}, err
	}
	again, err := r.encode()
	if err != nil {
		return Record{}, err
	}
	if !bytes.Equal(again, line) {
		return Record{}, fmt.Errorf("%w: record %d is not in canonical form", ErrMalformed, r.Seq)
	}
	return r, nil
}

// Sentinel errors callers branch on.
var (
	// ErrMalformed: a line that is not a well-formed, canonical record.
	ErrMalformed = errors.New("audit: malformed record")
	// ErrTorn: the log's last line is incomplete, as a crash during a write
	// leaves it. See Options.RepairTorn.
	ErrTorn = errors.New("audit: torn last line")
	// ErrBrokenChain: a record out of sequence or not linked to its
	// predecessor, or by another actor: a record was removed, inserted,
	// reordered or edited.
	ErrBrokenChain = errors.New("audit: broken hash chain")
	// ErrBadSignature: a signature or cosignature that does not verify.
	ErrBadSignature = errors.New("audit: bad signature")
	// ErrNotCosigned: a committed record of the coordinator's log without
	// its round leader's cosignature (checked when verifying with a
	// [Federation]).
	ErrNotCosigned = errors.New("audit: commit not cosigned by its leader")
	// ErrUnknownSigner: no public key for a writer or cosigner.
	ErrUnknownSigner = errors.New("audit: unknown signer")
	// ErrDuplicateCommit: a round committed twice in one log.
	ErrDuplicateCommit = errors.New("audit: round committed twice")
	// ErrDuplicateReveal: a second reveal by the same node for a round.
	ErrDuplicateReveal = errors.New("audit: second reveal in a round")
	// ErrInvariant: another protocol rule broken (a second session start,
	// an ε total that overflows).
	ErrInvariant = errors.New("audit: log breaks a protocol invariant")
)

// Reason makes s a valid [Data.Reason]: control characters and invalid
// UTF-8 become spaces, it is cut to at most MaxReason bytes on a rune
// boundary, and an empty reason becomes "unspecified".
func Reason(s string) string {
	b := make([]rune, 0, len(s))
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			r = ' '
		}
		b = append(b, r)
	}
	s = string(b)
	for len(s) > MaxReason {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	if s == "" {
		s = "unspecified"
	}
	return s
}
