package audit

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/atomicfile"
	"github.com/cloisterfl/cloister/protect"
)

// ErrClosed: the log was closed, or a failed write left it in an unknown
// state; reopen it with [Open], which verifies it first.
var ErrClosed = errors.New("audit: log closed")

// Options tune [Open]. The zero value is usable.
type Options struct {
	// Now is the clock for record times; nil means time.Now.
	Now func() time.Time
	// Keys resolves cosigners' audit keys. AppendCosigned needs it; Open
	// uses it to check the cosignatures of a resumed log (without it they
	// are checked when appended, not on resume).
	Keys KeyResolver
	// RepairTorn lets Open cut an incomplete last line, the trace of a
	// crash in the middle of a write, after the rest of the log verified.
	// That record was never acknowledged, so nothing acted on it. Without
	// RepairTorn, Open refuses such a log with ErrTorn.
	RepairTorn bool
}

// Log is an open audit log that one actor appends to. It is safe for
// concurrent use. Every Append is on disk (fsync) before it returns, so
// callers persist an event before they send the messages that follow
// from it.
type Log struct {
	mu     sync.Mutex
	f      *os.File
	path   string
	actor  string
	key    ed25519.PrivateKey
	now    func() time.Time
	keys   KeyResolver
	state  State
	err    error // sticky: ErrClosed, or the failed write
	unlock func()
}

// Open opens the log at path for actor, who signs with signer. A missing
// file is created (mode 0600, O_EXCL). An existing one is verified first,
// with actor's public key and opts.Keys, and Open refuses to append to a
// log that does not verify, that another actor wrote, or whose last line
// is torn (unless opts.RepairTorn). It also refuses a log another process
// has open.
func Open(path string, signer ed25519.PrivateKey, actor string, opts Options) (*Log, error) {
	if len(signer) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("audit: signing key has %d bytes, want %d", len(signer), ed25519.PrivateKeySize)
	}
	if err := validateName(actor); err != nil {
		return nil, fmt.Errorf("audit: actor: %w", err)
	}
	l := &Log{path: path, actor: actor, key: signer, now: opts.Now, keys: opts.Keys}
	if l.now == nil {
		l.now = time.Now
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	created := err == nil
	if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: opening %s: %w", path, err)
	}
	unlock, err := lockFile(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: %s: %w", path, err)
	}
	l.f, l.unlock = f, unlock
	if created {
		if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
			l.Close()
			return nil, fmt.Errorf("audit: %w", err)
		}
		return l, nil
	}
	if err := l.resume(opts.RepairTorn); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// resume verifies the existing log and takes its state.
func (l *Log) resume(repairTorn bool) error {
	pub := l.key.Public().(ed25519.PublicKey)
	keys := selfKeys{actor: l.actor, pub: pub, others: l.keys}
	st, good, err := verifyStream(l.f, l.path, keys, true)
	var ve *VerifyError
	if errors.As(err, &ve) && errors.Is(err, ErrTorn) && repairTorn {
		if err := l.f.Truncate(good); err != nil {
			return fmt.Errorf("audit: cutting torn line of %s: %w", l.path, err)
		}
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("audit: %s: %w", l.path, err)
		}
		err = nil
	}
	if err != nil {
		return fmt.Errorf("audit: refusing to append to %s: %w", l.path, err)
	}
	if st.Seq > 0 && st.Actor != l.actor {
		return fmt.Errorf("audit: refusing to append to %s: it is %s's log, not %s's", l.path, st.Actor, l.actor)
	}
	l.state = st
	return nil
}

// selfKeys resolves the writer's own key and defers to others for
// cosigners.
type selfKeys struct {
	actor  string
	pub    ed25519.PublicKey
	others KeyResolver
}

func (k selfKeys) PublicKey(name string) (ed25519.PublicKey, error) {
	if name == k.actor {
		return k.pub, nil
	}
	if k.others == nil {
		return nil, fmt.Errorf("%w: no key for %q", ErrUnknownSigner, truncate(name))
	}
	return k.others.PublicKey(name)
}

// Append adds a record of kind with data, signed by the log's actor, and
// returns it once it is on disk. It refuses data that kind does not allow
// ([ErrMalformed]) and records that break an invariant
// ([ErrDuplicateCommit], [ErrDuplicateReveal], [ErrInvariant]); those leave
// the log unchanged.
func (l *Log) Append(kind Kind, data Data) (Record, error) {
	return l.append(kind, data, nil)
}

// AppendCosigned is Append for a record that carries a cosignature (see
// [Cosign]): a Committed record signed by the round's leader. The
// cosignature is checked against Options.Keys first.
func (l *Log) AppendCosigned(kind Kind, data Data, c Cosignature) (Record, error) {
	if err := checkCosign(kind, data, &c); err != nil {
		return Record{}, err
	}
	if err := verifyCosign(kind, data, &c, l.keys, false); err != nil {
		return Record{}, fmt.Errorf("audit: %w", err)
	}
	return l.append(kind, data, &c)
}

// Record implements protect.Ledger: it appends a Revealed record for round
// r and the aggregate digest, durably, and refuses (with an error wrapping
// both protect.ErrRevealed and ErrDuplicateReveal) if this actor already
// revealed in round r.
func (l *Log) Record(r fl.Round, digest [32]byte) error {
	_, err := l.Append(Revealed, Data{Round: r, Digest: digest})
	if errors.Is(err, ErrDuplicateReveal) {
		return fmt.Errorf("%w: %w", protect.ErrRevealed, err)
	}
	return err
}

var _ protect.Ledger = (*Log)(nil)

func (l *Log) append(kind Kind, data Data, c *Cosignature) (Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return Record{}, l.err
	}
	data.Members = append([]fl.NodeID(nil), data.Members...)
	if len(data.Members) == 0 {
		data.Members = nil
	}
	if c != nil {
		cc := Cosignature{Signer: c.Signer, Sig: append([]byte(nil), c.Sig...)}
		c = &cc
	}
	r := Record{
		Seq:    l.state.Seq + 1,
		Prev:   l.state.Head,
		Time:   l.now().UTC().Round(0),
		Actor:  l.actor,
		Kind:   kind,
		Data:   data,
		Cosign: c,
		Sig:    make([]byte, ed25519.SignatureSize), // placeholder for the form check
	}
	if err := l.state.check(&r); err != nil {
		return Record{}, err
	}
	h, err := r.Hash()
	if err != nil {
		return Record{}, err
	}
	r.Sig = ed25519.Sign(l.key, h[:])
	line, err := r.encode()
	if err != nil {
		return Record{}, err
	}
	if len(line) >= MaxLine {
		return Record{}, fmt.Errorf("%w: record of %d bytes, at most %d", ErrMalformed, len(line), MaxLine-1)
	}
	line = append(line, '\n')
	// One write of the whole line: a crash leaves at most a torn last line,
	// which Verify reports and Open can repair.
	if _, err := l.f.Write(line); err != nil {
		l.err = fmt.Errorf("%w: writing %s failed: %w", ErrClosed, l.path, err)
		return Record{}, l.err
	}
	if err := l.f.Sync(); err != nil {
		l.err = fmt.Errorf("%w: syncing %s failed: %w", ErrClosed, l.path, err)
		return Record{}, l.err
	}
	l.state.apply(&r, h)
	return r, nil
}

// State returns a copy of the log's current state.
func (l *Log) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state.Clone()
}

// Path returns the log's file name.
func (l *Log) Path() string { return l.path }

// Close closes the log. Further appends fail with ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	if l.err == nil {
		l.err = ErrClosed
	}
	l.unlock()
	err := l.f.Close()
	l.f = nil
	return err
}

var _ io.Closer = (*Log)(nil)
