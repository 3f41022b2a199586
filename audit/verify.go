package audit

import (
	"bufio"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cloisterfl/cloister/fl"
)

// KeyResolver returns the audit public key of a writer or cosigner by name.
type KeyResolver interface {
	PublicKey(name string) (ed25519.PublicKey, error)
}

// Keys is a KeyResolver over a fixed map, such as the one
// federation.Manifest.AuditKeys returns: audit.Keys(manifest.AuditKeys()).
type Keys map[string]ed25519.PublicKey

// PublicKey implements KeyResolver.
func (k Keys) PublicKey(name string) (ed25519.PublicKey, error) {
	key, ok := k[name]
	if !ok {
		return nil, fmt.Errorf("%w: no audit key for %q", ErrUnknownSigner, truncate(name))
	}
	if len(key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: audit key for %q has %d bytes", ErrUnknownSigner, name, len(key))
	}
	return key, nil
}

// Federation resolves the audit keys of one federation's parties (Keys,
// as from federation.Manifest.AuditKeys) and names its coordinator.
// Verifying with a Federation adds one rule: every committed record the
// coordinator writes must name the round's leader and carry that leader's
// cosignature (see [Cosign]), or the log fails with [ErrNotCosigned]. A
// member's committed records need none: a member records a commit whose
// leader-signed round record it verified itself. With a bare [Keys],
// cosignatures are checked where present and required nowhere.
//
// Aggregator names mode tee's aggregator, if any: it writes a log of its
// own (Keys holds its audit key), but it is never a round's leader, so a
// cosignature of its is refused wherever it appears.
type Federation struct {
	Keys        Keys
	Coordinator string // the coordinator's name in the manifest
	Aggregator  string // mode tee's aggregator's name; "" without one
}

// PublicKey implements KeyResolver.
func (f Federation) PublicKey(name string) (ed25519.PublicKey, error) { return f.Keys.PublicKey(name) }

// requireCosign applies the Federation's rule to a record whose writer's
// signature verified.
func (f Federation) requireCosign(r *Record) error {
	if f.Aggregator != "" && r.Cosign != nil && string(r.Cosign.Signer) == f.Aggregator {
		return fmt.Errorf("%w: %s record of round %d cosigned by the aggregator %s, which is never a leader", ErrNotCosigned, r.Kind, r.Data.Round, f.Aggregator)
	}
	if r.Kind != Committed || r.Actor != f.Coordinator {
		return nil
	}
	switch {
	case r.Data.Leader == "":
		return fmt.Errorf("%w: round %d committed by the coordinator names no leader to cosign it", ErrNotCosigned, r.Data.Round)
	case r.Cosign == nil:
		return fmt.Errorf("%w: round %d committed without the cosignature of its leader %s", ErrNotCosigned, r.Data.Round, r.Data.Leader)
	case r.Cosign.Signer != r.Data.Leader: // refused earlier, as malformed; kept for clarity
		return fmt.Errorf("%w: round %d cosigned by %s, but its leader is %s", ErrNotCosigned, r.Data.Round, r.Cosign.Signer, r.Data.Leader)
	}
	return nil
}

// VerifyError names the first bad record of a log. Err is the sentinel
// (ErrMalformed, ErrTorn, ErrBrokenChain, ErrBadSignature,
// ErrUnknownSigner, ErrDuplicateCommit, ErrDuplicateReveal, ErrInvariant)
// wrapped with detail; errors.Is sees through to it.
type VerifyError struct {
	Path   string
	Line   int    // 1-based line number
	Seq    uint64 // the record's Seq as written; 0 if the line did not parse
	Reason string // what is wrong, for people
	Err    error
}

func (e *VerifyError) Error() string {
	seq := ""
	if e.Seq != 0 {
		seq = fmt.Sprintf(" (seq %d)", e.Seq)
	}
	return fmt.Sprintf("audit: %s line %d%s: %s", e.Path, e.Line, seq, e.Reason)
}

func (e *VerifyError) Unwrap() error { return e.Err }

// Summary describes a verified log.
type Summary struct {
	Records int          // records verified
	Rounds  int          // rounds committed
	Kinds   map[Kind]int // records per kind
	Last    Digest       // hash of the last record (the head)
	State   State        // the fold of the whole log
}

func summarize(s *State) Summary {
	c := s.Clone()
	return Summary{Records: int(s.Seq), Rounds: len(s.Commits), Kinds: c.Kinds, Last: s.Head, State: c}
}

// Verify reads the log at path and checks every record: its form, its
// place in the chain, its writer's signature and any cosignature (keys
// resolves both), and the invariants of [State.Apply]; with a [Federation]
// as keys, also that the coordinator's commits are cosigned by their
// leaders. It returns a
// [*VerifyError] naming the first bad record, and the Summary of the
// records before it.
//
// A chain cannot show that records were cut from its end. To detect that,
// compare Summary.Last or Summary.Records with a copy kept elsewhere (a
// peer's log, a cosigned commit, a monitoring system).
func Verify(path string, keys KeyResolver) (Summary, error) {
	f, err := os.Open(path)
	if err != nil {
		return Summary{}, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	s, _, err := verifyStream(f, path, keys, false)
	return summarize(&s), err
}

// readLine returns the next line, newline included, reusing *buf for lines
// longer than br's buffer. It returns bufio.ErrBufferFull for a line of
// MaxLine bytes or more, and io.EOF with the partial data at the end.
func readLine(br *bufio.Reader, buf *[]byte) ([]byte, error) {
	b, err := br.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return b, err
	}
	*buf = append((*buf)[:0], b...)
	for errors.Is(err, bufio.ErrBufferFull) {
		if len(*buf) >= MaxLine {
			return nil, bufio.ErrBufferFull
		}
		b, err = br.ReadSlice('\n')
		*buf = append(*buf, b...)
	}
	if err == nil && len(*buf) > MaxLine {
		return nil, bufio.ErrBufferFull
	}
	return *buf, err
}

// verifyStream verifies a log read from r and returns its state and the
// offset just past the last good line. With skipUnknownCosigners, a
// cosignature whose signer keys cannot resolve is accepted unchecked
// (a writer resuming its own log checks cosignatures when it appends them).
func verifyStream(r io.Reader, path string, keys KeyResolver, skipUnknownCosigners bool) (State, int64, error) {
	var s State
	var good int64
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	for line := 1; ; line++ {
		b, err := readLine(br, &buf)
		fail := func(seq uint64, err error) (State, int64, error) {
			return s, good, &VerifyError{Path: path, Line: line, Seq: seq, Reason: trimPrefix(err), Err: err}
		}
		switch {
		case err == io.EOF && len(b) == 0:
			return s, good, nil
		case err == io.EOF:
			return fail(0, fmt.Errorf("%w: last line has %d bytes and no newline (a write was cut short)", ErrTorn, len(b)))
		case errors.Is(err, bufio.ErrBufferFull):
			return fail(0, fmt.Errorf("%w: line longer than %d bytes", ErrMalformed, MaxLine))
		case err != nil:
			return s, good, fmt.Errorf("audit: reading %s: %w", path, err)
		}
		rec, err := ParseRecord(b[:len(b)-1])
		if err != nil {
			return fail(0, err)
		}
		if err := s.check(&rec); err != nil {
			return fail(rec.Seq, err)
		}
		h, err := rec.Hash()
		if err != nil {
			return fail(rec.Seq, err)
		}
		if err := checkSignatures(&rec, h, keys, skipUnknownCosigners); err != nil {
			return fail(rec.Seq, err)
		}
		s.apply(&rec, h)
		good += int64(len(b))
	}
}

func checkSignatures(r *Record, h Digest, keys KeyResolver, skipUnknownCosigners bool) error {
	pub, err := keys.PublicKey(r.Actor)
	if err != nil {
		return fmt.Errorf("writer %s: %w", r.Actor, err)
	}
	if !ed25519.Verify(pub, h[:], r.Sig) {
		return fmt.Errorf("%w: %s record is not signed by %s's audit key (edited after signing?)", ErrBadSignature, r.Kind, r.Actor)
	}
	if f, ok := keys.(Federation); ok {
		if err := f.requireCosign(r); err != nil {
			return err
		}
	}
	if r.Cosign == nil {
		return nil
	}
	return verifyCosign(r.Kind, r.Data, r.Cosign, keys, skipUnknownCosigners)
}

func verifyCosign(kind Kind, data Data, c *Cosignature, keys KeyResolver, skipUnknown bool) error {
	var pub ed25519.PublicKey
	var err error
	if keys != nil {
		pub, err = keys.PublicKey(string(c.Signer))
	} else {
		err = fmt.Errorf("%w: no keys to check %s's cosignature", ErrUnknownSigner, c.Signer)
	}
	if err != nil {
		if skipUnknown && errors.Is(err, ErrUnknownSigner) {
			return nil
		}
		return fmt.Errorf("cosigner %s: %w", c.Signer, err)
	}
	st, err := Statement(kind, data)
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, st[:], c.Sig) {
		return fmt.Errorf("%w: %s record of round %d: cosignature by %s does not verify with %s's audit key", ErrBadSignature, kind, data.Round, c.Signer, c.Signer)
	}
	return nil
}

// trimPrefix drops the "audit: " of a sentinel from a reason string.
func trimPrefix(err error) string {
	msg, _ := strings.CutPrefix(err.Error(), "audit: ")
	return msg
}

// FileResult is the outcome of verifying one log file.
type FileResult struct {
	Path    string
	Summary Summary
	Err     error // nil if the log verified
}

// ErrNoLogs: VerifyDir found no log files.
var ErrNoLogs = errors.New("audit: no *.log or *.jsonl files")

// ErrConflict: two logs of the same session disagree about a committed
// round's model.
var ErrConflict = errors.New("audit: logs disagree")

// VerifyDir verifies every *.log and *.jsonl file under dir (recursively,
// without following symbolic links), in lexical order, with [Verify] (pass
// a [Federation] to require the leaders' cosignatures on the coordinator's
// commits), and returns one result per file. It then cross-checks the logs that verified: logs of the
// same session must agree on the model of every round they both committed
// ([ErrConflict]).
//
// The error is non-nil if any file failed or conflicted (it joins their
// errors), if dir could not be read, or if there were no logs
// ([ErrNoLogs]); the results are returned in every case.
func VerifyDir(dir string, keys KeyResolver) ([]FileResult, error) {
	var results []FileResult
	walkErr := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if ext := filepath.Ext(path); ext != ".log" && ext != ".jsonl" {
			return nil
		}
		s, err := Verify(path, keys)
		results = append(results, FileResult{Path: path, Summary: s, Err: err})
		return nil
	})
	var errs []error
	if walkErr != nil {
		errs = append(errs, fmt.Errorf("audit: reading %s: %w", dir, walkErr))
	}
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	errs = append(errs, crossCheck(results)...)
	if len(results) == 0 && walkErr == nil {
		errs = append(errs, fmt.Errorf("%w under %s", ErrNoLogs, dir))
	}
	return results, errors.Join(errs...)
}

// crossCheck compares the commits of verified logs of the same session.
func crossCheck(results []FileResult) []error {
	type seen struct {
		path  string
		model Digest
	}
	first := map[string]map[fl.Round]seen{}
	var errs []error
	for _, r := range results {
		st := r.Summary.State
		if r.Err != nil || st.Session == "" {
			continue
		}
		bySession := first[st.Session]
		if bySession == nil {
			bySession = map[fl.Round]seen{}
			first[st.Session] = bySession
		}
		rounds := slices.Sorted(maps.Keys(st.Commits))
		for _, round := range rounds {
			c := st.Commits[round]
			if prev, ok := bySession[round]; !ok {
				bySession[round] = seen{r.Path, c.Model}
			} else if prev.model != c.Model {
				errs = append(errs, fmt.Errorf("%w: session %s round %d committed model %.16s… in %s but %.16s… in %s",
					ErrConflict, st.Session, round, prev.model, prev.path, c.Model, r.Path))
			}
		}
	}
	return errs
}
