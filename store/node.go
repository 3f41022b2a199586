package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// Node is a node's view of one session in a [DB]: its secrets, sealed at
// rest with an [AtRest], its reveal-once ledger, and the newest sealed
// model. A Node is a [protect.Ledger].
type Node struct {
	db      *DB
	session []byte
	sealer  AtRest
}

var _ protect.Ledger = (*Node)(nil)

// Node returns the node's view of the session with the given ID, sealing
// and opening its secrets with s. The session must have been created
// ([DB.CreateSession]); methods return an error wrapping [ErrNotFound]
// otherwise.
func (db *DB) Node(session []byte, s AtRest) *Node {
	return &Node{db: db, session: append([]byte(nil), session...), sealer: s}
}

// NodeBatch is what one Ready of a node's engine persists. [Node.Save]
// writes all of it in one transaction; [Node.Load] returns what is stored.
// State and Keys are secret: the store seals each with the node's AtRest
// before it writes it, and never writes them in plaintext.
type NodeBatch struct {
	// State is the engine's new persistent state (NodeState MarshalBinary).
	State []byte
	// Keys, if not nil, replaces the stored key material, all of it.
	Keys *Keys
	// Epoch, if not 0, is the session's new key epoch.
	Epoch uint64
	// Model is the newest sealed model the node holds. Its round must not be
	// older than the stored one's; a model of the stored round must be the
	// stored one (else [ErrExists]) unless Resealed.
	Model *Model
	// Resealed says that Model, of the stored model's round, replaces it:
	// the same model sealed again under a new group key (a re-key). The
	// caller checked that it opens under that key.
	Resealed bool
}

// Keys is a node's key material (the engine's NodeKeys). Empty fields are
// stored empty.
type Keys struct {
	// Party is the protect.Party's MarshalBinary (its key shares).
	Party []byte
	// GroupKey is the group key (target secret and model key).
	GroupKey []byte
	// Target is the group key's public part.
	Target []byte
}

// Secret slots, part of each secret's additional data: a sealed secret
// opens only in the slot and session it was sealed for.
const (
	slotState    = "state"
	slotParty    = "party"
	slotGroupKey = "group-key"
	slotTarget   = "target"
)

// Save writes b in one transaction: nil fields leave the stored values
// unchanged. When it returns nil, all of b is durable; when it returns an
// error, none of it is stored.
func (n *Node) Save(ctx context.Context, b NodeBatch) error {
	// Seal before the transaction: an AtRest may be slow (a TEE call).
	secrets := []struct {
		slot  string
		plain []byte
	}{{slotState, b.State}}
	if k := b.Keys; k != nil {
		secrets = append(secrets, []struct {
			slot  string
			plain []byte
		}{{slotParty, nonNil(k.Party)}, {slotGroupKey, nonNil(k.GroupKey)}, {slotTarget, nonNil(k.Target)}}...)
	}
	sealed := make([][]byte, len(secrets))
	for i, s := range secrets {
		if s.plain == nil {
			continue
		}
		var err error
		if sealed[i], err = n.seal(s.slot, s.plain); err != nil {
			return err
		}
	}
	err := n.db.write(ctx, func(tx *sql.Tx) error {
		if err := n.db.lockSession(ctx, tx, n.session); err != nil {
			return err
		}
		if err := setEpoch(ctx, tx, n.session, b.Epoch); err != nil {
			return err
		}
		for i, s := range secrets {
			if sealed[i] == nil {
				continue
			}
			if _, err := tx.ExecContext(ctx, qSecretPut, n.session, s.slot, n.sealer.KeyID(), sealed[i]); err != nil {
				return fmt.Errorf("%s: %w", s.slot, err)
			}
		}
		if b.Model != nil {
			if err := n.putModel(ctx, tx, *b.Model, b.Resealed); err != nil {
				return fmt.Errorf("sealed model of round %d: %w", b.Model.Round, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: session %s: %w", sid(n.session), err)
	}
	return nil
}

func (n *Node) putModel(ctx context.Context, tx *sql.Tx, m Model, resealed bool) error {
	round, err := toInt(uint64(m.Round), "round")
	if err != nil {
		return err
	}
	d, err := checkDigest(m.Sealed, m.Digest)
	if err != nil {
		return err
	}
	var stored int64
	var sd []byte
	switch err := tx.QueryRowContext(ctx, qNodeModelRound, n.session).Scan(&stored, &sd); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return err
	case round < stored:
		return fmt.Errorf("older than the stored model of round %d", stored)
	case round == stored && [32]byte(sd) == d:
		return nil
	case round == stored && !resealed:
		return fmt.Errorf("stored digest %x, new %x: %w", head(sd), d[:6], ErrExists)
	}
	_, err = tx.ExecContext(ctx, qNodeModelPut, n.session, round, nonNil(m.Sealed), d[:])
	return err
}

// Load returns the node's stored state: its secrets, opened, the session's
// epoch and the newest sealed model (nil if none). Fields never saved are
// nil. It returns an error wrapping [ErrNotFound] if the session does not
// exist, [ErrWrongKey] if a secret was sealed under another key than the
// node's AtRest, and [ErrCorrupt] if a secret fails to open.
func (n *Node) Load(ctx context.Context) (NodeBatch, error) {
	var b NodeBatch
	sealed := make(map[string][]byte)
	err := n.db.read(ctx, func(tx *sql.Tx) error {
		s, err := scanSession(tx.QueryRowContext(ctx, qSessionGet, n.session))
		if err != nil {
			return err
		}
		b.Epoch = s.Epoch
		for _, slot := range [...]string{slotState, slotParty, slotGroupKey, slotTarget} {
			var keyID string
			var box []byte
			err := tx.QueryRowContext(ctx, qSecretGet, n.session, slot).Scan(&keyID, &box)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: %w", slot, err)
			}
			if n.sealer == nil {
				return fmt.Errorf("opening %s: node has no at-rest key", slot)
			}
			if keyID != n.sealer.KeyID() {
				return fmt.Errorf("%s sealed under key %q, this node's key is %q: %w", slot, keyID, n.sealer.KeyID(), ErrWrongKey)
			}
			sealed[slot] = box
		}
		m, err := scanModel(tx.QueryRowContext(ctx, qNodeModelGet, n.session))
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return err
		default:
			b.Model = &m
		}
		return nil
	})
	if err != nil {
		return NodeBatch{}, fmt.Errorf("store: session %s: %w", sid(n.session), err)
	}
	var k Keys
	for slot, dst := range map[string]*[]byte{slotState: &b.State, slotParty: &k.Party, slotGroupKey: &k.GroupKey, slotTarget: &k.Target} {
		if box, ok := sealed[slot]; ok {
			if slot != slotState {
				b.Keys = &k
			}
			if *dst, err = n.open(slot, box); err != nil {
				return NodeBatch{}, err
			}
		}
	}
	return b, nil
}

// Record implements [protect.Ledger]: it durably records that the node
// reveals the aggregate with the given digest in round r. It returns an
// error wrapping [ErrRevealed] (protect.ErrRevealed) and records nothing if
// the session's ledger already holds a reveal for r, whatever its digest or
// key epoch, even one recorded by an earlier process or another goroutine.
// Rounds are numbered per session across key epochs, so a key refresh
// never reopens a round.
func (n *Node) Record(r fl.Round, digest [32]byte) error {
	ctx := context.Background()
	err := n.db.write(ctx, func(tx *sql.Tx) error {
		round, err := toInt(uint64(r), "round")
		if err != nil {
			return err
		}
		if err := n.db.lockSession(ctx, tx, n.session); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, qRevealInsert, n.session, round, digest[:])
		if err != nil {
			return err
		}
		if affected(res) == nil {
			return nil
		}
		var stored []byte
		if err := tx.QueryRowContext(ctx, qRevealGet, n.session, round).Scan(&stored); err != nil {
			return err
		}
		return fmt.Errorf("recorded digest %x, asked %x: %w", head(stored), digest[:6], ErrRevealed)
	})
	if err != nil {
		return fmt.Errorf("store: session %s: reveal in round %d: %w", sid(n.session), r, err)
	}
	return nil
}

// Revealed returns the digest of the aggregate the node revealed in round
// r, or an error wrapping [ErrNotFound] if it revealed nothing then.
func (n *Node) Revealed(ctx context.Context, r fl.Round) ([32]byte, error) {
	fail := func(err error) ([32]byte, error) {
		return [32]byte{}, fmt.Errorf("store: session %s: reveal in round %d: %w", sid(n.session), r, err)
	}
	round, err := toInt(uint64(r), "round")
	if err != nil {
		return fail(ErrNotFound)
	}
	var d []byte
	if err := n.db.sql.QueryRowContext(ctx, qRevealGet, n.session, round).Scan(&d); err != nil {
		return fail(noRows(err))
	}
	if len(d) != 32 {
		return fail(fmt.Errorf("%w: digest of %d bytes", ErrCorrupt, len(d)))
	}
	return [32]byte(d), nil
}

func (n *Node) seal(slot string, plain []byte) ([]byte, error) {
	if n.sealer == nil {
		return nil, fmt.Errorf("store: session %s: sealing %s: node has no at-rest key", sid(n.session), slot)
	}
	box, err := n.sealer.Seal(plain, n.aad(slot))
	if err != nil {
		return nil, fmt.Errorf("store: session %s: sealing %s with key %q: %w", sid(n.session), slot, n.sealer.KeyID(), err)
	}
	return box, nil
}

func (n *Node) open(slot string, box []byte) ([]byte, error) {
	plain, err := n.sealer.Open(box, n.aad(slot))
	if err != nil {
		return nil, fmt.Errorf("store: session %s: %s sealed under key %q does not open (%v): %w",
			sid(n.session), slot, n.sealer.KeyID(), err, ErrCorrupt)
	}
	if plain == nil {
		plain = []byte{}
	}
	return plain, nil
}

// aad binds a sealed secret to its session and slot.
func (n *Node) aad(slot string) []byte {
	b := []byte("cloister/store/v1\x00")
	b = binary.AppendUvarint(b, uint64(len(n.session)))
	b = append(b, n.session...)
	return append(b, slot...)
}
