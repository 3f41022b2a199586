package federation

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/cloisterfl/cloister/fl"
)

// ErrAmendment: a signed manifest that does not amend the running one: of
// another session, not newer, or changing what an amendment may not
// change. The running manifest stays in force.
var ErrAmendment = errors.New("federation: not an amendment of the running manifest")

// ErrPolicy: an amendment this party's own policy refuses (a threshold
// below its floor). The party leaves the federation rather than run under
// it.
var ErrPolicy = errors.New("federation: amendment refused by local policy")

// SessionID returns the ID of the session the manifest governs: the hash of
// the session's first manifest. A first manifest (Session empty) is its own
// session; an amended one names the first manifest's hash in Session, so
// that every manifest of one session, and every kit of it, agree on the
// session that the engine, the audit logs and the store are keyed by.
func (m *Manifest) SessionID() ([]byte, error) {
	if m.Session == "" {
		h, err := m.Hash()
		if err != nil {
			return nil, err
		}
		return h[:], nil
	}
	b, err := hex.DecodeString(m.Session)
	if err != nil || len(b) != 32 {
		return nil, invalid("session %q is not a hex SHA-256", truncate(m.Session))
	}
	return b, nil
}

// Amendment is a change to a running federation that the admin signs as a
// new manifest ([Amend]): members added or removed, a member's renewed
// certificate, the threshold and minimum cohort, more rounds, another ε
// budget. Everything else (mode, preset, model, training, DP noise and
// clip, attestation policy, coordinator) is fixed for a session: changing
// it starts a new session. The zero value changes nothing.
type Amendment struct {
	Add    []Principal // new members
	Remove []string    // members to remove, by name
	// Renew replaces listed members' certificate fingerprints (a renewed
	// certificate); name and audit key stay.
	Renew     []Principal
	Threshold int     // new t; 0: unchanged
	MinCohort int     // new minimum cohort; 0: unchanged
	AddRounds int     // more rounds to commit
	Epsilon   float64 // new ε budget; 0: unchanged
}

// Amend returns the manifest that cur becomes under a: the same session
// (Session names cur's session), Serial one higher, and the changes
// applied. It checks the result with [CheckAmendment]; sign it with [Sign].
func Amend(cur *Manifest, a Amendment) (*Manifest, error) {
	sid, err := cur.SessionID()
	if err != nil {
		return nil, err
	}
	next := *cur
	next.Session = hex.EncodeToString(sid)
	next.Serial = cur.Serial + 1
	next.Members = slices.Clone(cur.Members)
	for _, name := range a.Remove {
		i := slices.IndexFunc(next.Members, func(p Principal) bool { return p.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("%w: cannot remove %q: not a member", ErrAmendment, truncate(name))
		}
		next.Members = slices.Delete(next.Members, i, i+1)
	}
	for _, p := range a.Renew {
		i := slices.IndexFunc(next.Members, func(q Principal) bool { return q.Name == p.Name })
		if i < 0 {
			return nil, fmt.Errorf("%w: cannot renew the certificate of %q: not a member", ErrAmendment, truncate(p.Name))
		}
		next.Members[i].Fingerprint = p.Fingerprint
	}
	next.Members = append(next.Members, a.Add...)
	if a.Threshold != 0 {
		next.Threshold = a.Threshold
	}
	if a.MinCohort != 0 {
		next.MinCohort = a.MinCohort
	}
	if a.AddRounds < 0 {
		return nil, fmt.Errorf("%w: %d more rounds: rounds can only be added", ErrAmendment, a.AddRounds)
	}
	next.Training.Rounds += a.AddRounds
	if a.Epsilon != 0 {
		next.DP.Epsilon = a.Epsilon
	}
	if _, err := CheckAmendment(cur, &next); err != nil {
		return nil, err
	}
	return &next, nil
}

// Change describes what an amendment changes, for logs and audit records.
type Change struct {
	From, To             uint64 // serials
	Added, Removed       []string
	Renewed              []string
	Threshold, MinCohort [2]int // old, new
	Rounds               [2]int
	Epsilon              [2]float64
}

// Rekey reports whether the change needs new keys: the members or the
// threshold changed.
func (c Change) Rekey() bool {
	return len(c.Added) > 0 || len(c.Removed) > 0 || c.Threshold[0] != c.Threshold[1]
}

// String is a one-line summary, at most a couple of hundred characters for
// small changes: "serial 1→2: add node-6; t 3".
func (c Change) String() string {
	parts := []string{fmt.Sprintf("serial %d→%d", c.From, c.To)}
	list := func(verb string, names []string) {
		if len(names) > 0 {
			parts = append(parts, verb+" "+strings.Join(names, ","))
		}
	}
	list("add", c.Added)
	list("remove", c.Removed)
	list("renew", c.Renewed)
	ints := func(name string, v [2]int) {
		if v[0] != v[1] {
			parts = append(parts, fmt.Sprintf("%s %d→%d", name, v[0], v[1]))
		}
	}
	ints("t", c.Threshold)
	ints("min_cohort", c.MinCohort)
	ints("rounds", c.Rounds)
	if c.Epsilon[0] != c.Epsilon[1] {
		parts = append(parts, fmt.Sprintf("ε %g→%g", c.Epsilon[0], c.Epsilon[1]))
	}
	if len(parts) == 1 {
		parts = append(parts, "no change")
	}
	return strings.Join(parts, "; ")
}

// CheckAmendment checks that next amends cur: the same federation and
// session, a higher serial, and only what an [Amendment] may change
// changed, within bounds (rounds never fewer than cur's; under DP, the
// minimum cohort fixed, since the noise share and so the privacy rule
// depend on it). It returns the change. Errors wrap [ErrAmendment] and name
// the field.
func CheckAmendment(cur, next *Manifest) (Change, error) {
	bad := func(format string, args ...any) (Change, error) {
		return Change{}, fmt.Errorf("%w: %s", ErrAmendment, fmt.Sprintf(format, args...))
	}
	if err := next.Validate(); err != nil {
		return Change{}, err
	}
	if next.Federation != cur.Federation {
		return bad("federation %q, running %q", next.Federation, cur.Federation)
	}
	sid, err := cur.SessionID()
	if err != nil {
		return Change{}, err
	}
	if next.Session != hex.EncodeToString(sid) {
		return bad("manifest serial %d is of session %.16s…, running session %x: a new session needs new state", next.Serial, next.Session, sid[:8])
	}
	if next.Serial <= cur.Serial {
		return bad("serial %d is not above the running serial %d", next.Serial, cur.Serial)
	}
	// Everything but the amendable fields must be equal: compare the
	// canonical forms with those fields copied over.
	same := *next
	same.Session, same.Serial = cur.Session, cur.Serial
	same.Members, same.Threshold, same.MinCohort = cur.Members, cur.Threshold, cur.MinCohort
	same.Training.Rounds, same.DP.Epsilon = cur.Training.Rounds, cur.DP.Epsilon
	a, err1 := same.Canonical()
	b, err2 := cur.Canonical()
	if err1 != nil || err2 != nil {
		return Change{}, errors.Join(err1, err2)
	}
	if !bytes.Equal(a, b) {
		return bad("serial %d changes %s, which is fixed for a session (only members, threshold, min_cohort, rounds and the ε budget are amendable): start a new session", next.Serial, fixedDiff(cur, next))
	}
	ch := Change{From: cur.Serial, To: next.Serial,
		Threshold: [2]int{cur.Threshold, next.Threshold}, MinCohort: [2]int{cur.MinCohort, next.MinCohort},
		Rounds: [2]int{cur.Training.Rounds, next.Training.Rounds}, Epsilon: [2]float64{cur.DP.Epsilon, next.DP.Epsilon}}
	if next.Training.Rounds < cur.Training.Rounds {
		return bad("rounds %d below the running %d: rounds can only be added", next.Training.Rounds, cur.Training.Rounds)
	}
	if cur.DP.NoiseMultiplier > 0 && next.MinCohort != cur.MinCohort {
		return bad("min_cohort %d→%d under DP: each member's noise share, and so the privacy accounting, depends on it", cur.MinCohort, next.MinCohort)
	}
	if math.IsNaN(next.DP.Epsilon) {
		return bad("ε is NaN")
	}
	if next.Coordinator.Name != cur.Coordinator.Name {
		return bad("coordinator %q, running %q", next.Coordinator.Name, cur.Coordinator.Name)
	}
	for _, p := range cur.Members {
		q, ok := next.Member(fl.NodeID(p.Name))
		switch {
		case !ok:
			ch.Removed = append(ch.Removed, p.Name)
		case !bytes.Equal(q.AuditKey, p.AuditKey):
			return bad("member %s's audit key changed: its audit log would no longer verify (remove it and add it under a new name)", p.Name)
		case q.Fingerprint != p.Fingerprint:
			ch.Renewed = append(ch.Renewed, p.Name)
		}
	}
	for _, q := range next.Members {
		if _, ok := cur.Member(fl.NodeID(q.Name)); !ok {
			ch.Added = append(ch.Added, q.Name)
		}
	}
	return ch, nil
}

// fixedDiff names the top-level fields that differ between a and b, other
// than the amendable ones.
func fixedDiff(a, b *Manifest) string {
	var d []string
	eq := func(name string, x, y any) {
		if fmt.Sprint(x) != fmt.Sprint(y) {
			d = append(d, name)
		}
	}
	eq("version", a.Version, b.Version)
	eq("coordinator", a.Coordinator, b.Coordinator)
	eq("mode", a.Mode, b.Mode)
	eq("he_preset", a.Preset, b.Preset)
	eq("rule", a.Rule, b.Rule)
	eq("compress", a.Compress, b.Compress)
	eq("dp", DP{a.DP.NoiseMultiplier, a.DP.Clip, 0, a.DP.Delta}, DP{b.DP.NoiseMultiplier, b.DP.Clip, 0, b.DP.Delta})
	eq("model", a.Model, b.Model)
	ta, tb := a.Training, b.Training
	ta.Rounds, tb.Rounds = 0, 0
	eq("training", ta, tb)
	eq("attestation", a.Attestation, b.Attestation)
	if len(d) == 0 {
		return "a fixed field"
	}
	return strings.Join(d, ", ")
}

// Policy is a party's own floor under amendments: what it refuses to run
// under, whatever the admin signs.
type Policy struct {
	// MinThreshold: the party refuses a threshold below it (0: no floor).
	MinThreshold int
}

// Check returns an error wrapping [ErrPolicy] if next is below the policy.
func (p Policy) Check(next *Manifest) error {
	if p.MinThreshold > 0 && next.Threshold < p.MinThreshold {
		return fmt.Errorf("%w: threshold %d in manifest serial %d is below this party's floor of %d (--min-threshold)",
			ErrPolicy, next.Threshold, next.Serial, p.MinThreshold)
	}
	return nil
}
