package vertical

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"time"

	"github.com/cloisterfl/cloister/paillier"
	"github.com/cloisterfl/cloister/relay"
)

// Tags of the networked protocols' messages. A training message's index
// is its batch's number (0, 1, … over all epochs); the others' is 0.
const (
	tagRows          = "vertical/lr/rows"        // label → feature: the aligned rows, u64
	tagPartials      = "vertical/lr/u"           // feature → label: [[u_h,i]] of the batch
	tagResiduals     = "vertical/lr/d"           // label → feature: [[4d_i]] of the batch
	tagGradient      = "vertical/lr/grad"        // owner → every other: its packed gradient
	tagGradShares    = "vertical/lr/grad-shares" // back to the owner: a decryption share of each
	tagPredictRows   = "vertical/predict/rows"   // label → feature: the rows to score, u64
	tagPredictions   = "vertical/predict/u"      // feature → label: its packed partial predictors
	tagScores        = "vertical/predict/scores" // label → feature: the packed scores
	tagScoreShares   = "vertical/predict/shares" // back to the label party: a decryption share of each
	tagAbort         = "vertical/abort"          // a party gave up: the next Recv from it fails
	abortTimeout     = time.Second               // for sending the abort
	rowsMessageBytes = 8
)

// TrainParty runs party self's side of Train: parties[0] is the label party
// (t has labels), the others the feature parties, every process giving the
// same parties list and Config. share is this party's share of an all-of-l
// key (Index self+1, L = T = len(parties)). It returns this party's part of
// the model (as Train's Model.Parties[self]) and what this party sent.
//
// The key is not dealt here (Config.KeyBits is not used): an admin deals
// it beforehand (paillier.GenerateKey, then paillier.Deal(sk, l, l, …),
// shares[i] to parties[i]) and erases it. The protocol and its arithmetic
// are Train's, so each party's weights are exactly those Train computes.
// Before the first batch the label party sends every feature party its
// number of rows, which each checks against its own. Then, per batch (the
// rows every party draws from Config.Seed):
//
//  1. each feature party sends the label party [[u_h,i]];
//  2. the label party sends every feature party [[4d_i]];
//  3. every party sends its packed encrypted gradient to every other
//     party, answers theirs with a decryption share of each ciphertext,
//     then combines the shares it got back with its own and steps.
//
// Every Send precedes the Recv that waits for it, and the relay queues
// each sender's messages, so no party waits on itself. On an error the
// party sends every other party an abort message, which makes their next
// Recv from it fail rather than wait for ctx to end.
//
// # What each party and the relay learn
//
// What Train's parties learn (SECURITY.md): the label party receives the
// feature parties' partial predictors as ciphertexts only, the feature
// parties the residuals as ciphertexts only, and every party reads its own
// gradient and nothing else; nobody decrypts a per-sample value. Every
// party also learns the number of rows and, from the number of packed
// ciphertexts, each other party's number of columns to within a slot
// count. The relay sees sealed bodies only: who sends how many bytes to
// whom and when, which gives away the rows, the batch sizes and the same
// column counts.
//
// A party answers a request for decryption shares for whatever packed
// ciphertexts another party sends: there are no proofs that they are its
// gradient. The parties are semi-honest, as FATE assumes; one that sent
// [[4d_i]] instead would read the residuals. Malformed input (the wrong
// number of values, bytes that are not ciphertexts of the key) is an error
// that names its sender; a wrong decryption share that is in range makes
// the gradient fail to unpack, an error that names the parties that sent
// shares (all-of-l decryption cannot tell which).
func TrainParty(ctx context.Context, l relay.Link, parties []string, self int, t *Table, share *paillier.KeyShare, c Config, rnd io.Reader) (*PartyModel, Stats, error) {
	start := time.Now()
	if err := checkParty(parties, self, t, share); err != nil {
		return nil, Stats{}, err
	}
	if err := c.validateSteps(); err != nil {
		return nil, Stats{}, err
	}
	if self == 0 && len(t.Y) != t.Rows() {
		return nil, Stats{}, fmt.Errorf("vertical: the label party %q has %d labels for %d rows", parties[0], len(t.Y), t.Rows())
	}
	nd := newNode(l, parties, self, share, c.Workers)
	pm, p := modelParty(t, self == 0, share)
	rows := t.Rows()
	st := Stats{Rows: rows}
	err := nd.agreeRows(ctx, tagRows, rows)
	if err == nil {
		err = forBatches(rows, c, func(batch []int) error {
			if err := nd.trainBatch(ctx, uint64(st.Batches), p, batch, c, rnd); err != nil {
				return err
			}
			st.Batches++
			return nil
		})
	}
	st.Bytes = nd.sent
	if err != nil {
		nd.abort(ctx)
		return nil, st, err
	}
	pm.Weights, pm.Intercept = p.w, p.b
	st.Time = time.Since(start)
	return &pm, st, nil
}

// trainBatch runs this party's side of batch number b.
func (nd *node) trainBatch(ctx context.Context, b uint64, p *party, batch []int, c Config, rnd io.Reader) error {
	var d []*big.Int
	if nd.self == 0 {
		// 2. [[4d]] = [[u_G − 2y]] · Π_h [[u_h]], sent to every feature party.
		var err error
		if d, err = p.residuals(nd.pk, batch, rnd, c.Workers); err != nil {
			return err
		}
		for h := 1; h < len(nd.parties); h++ {
			u, err := nd.recvCiphertexts(ctx, h, tagPartials, b, len(batch), fmt.Sprintf("the encrypted partial predictors of batch %d", b))
			if err != nil {
				return err
			}
			addCiphertexts(nd.pk, d, u)
		}
		body := nd.encode(d)
		for h := 1; h < len(nd.parties); h++ {
			if err := nd.send(ctx, h, tagResiduals, b, body); err != nil {
				return err
			}
		}
	} else {
		// 1. [[u_h]] to the label party; [[4d]] back.
		u, err := p.partials(nd.pk, batch, rnd, c.Workers)
		if err != nil {
			return err
		}
		if err := nd.send(ctx, 0, tagPartials, b, nd.encode(u)); err != nil {
			return err
		}
		if d, err = nd.recvCiphertexts(ctx, 0, tagResiduals, b, len(batch), fmt.Sprintf("the encrypted residuals of batch %d", b)); err != nil {
			return err
		}
	}
	// 3. The packed gradient to every other party, their shares back.
	packed, err := p.gradient(nd.pk, d, batch, c.Workers)
	if err != nil {
		return err
	}
	body := nd.encode(packed)
	for _, q := range nd.others {
		if err := nd.send(ctx, q, tagGradient, b, body); err != nil {
			return err
		}
	}
	for _, q := range nd.others {
		if err := nd.answer(ctx, q, tagGradient, tagGradShares, b, -1, fmt.Sprintf("the packed gradient of batch %d", b)); err != nil {
			return err
		}
	}
	grad, err := nd.combine(ctx, tagGradShares, b, packed, p.cols(), fmt.Sprintf("party %q's gradient of batch %d", nd.parties[nd.self], b))
	if err != nil {
		return err
	}
	p.descend(grad, len(batch), c)
	return nil
}

// PredictParty runs party self's side of Predict with its part of a model;
// the label party (self 0) returns the scores of its rows, the others nil.
//
// As for TrainParty, share is this party's share of an all-of-l key dealt
// beforehand. The label party sends every feature party its number of
// rows, which each checks; each feature party sends the label party its
// packed encrypted partial predictors; the label party adds them and its
// own, sends the sums to every feature party and combines their decryption
// shares with its own. The label party learns the scores and the feature
// parties nothing (the ciphertexts they decrypt a share of are packed
// scores, as far as a semi-honest label party goes); the relay learns the
// message sizes, hence the number of rows.
func PredictParty(ctx context.Context, l relay.Link, parties []string, self int, t *Table, pm *PartyModel, share *paillier.KeyShare, rnd io.Reader) ([]float64, Stats, error) {
	start := time.Now()
	if err := checkParty(parties, self, t, share); err != nil {
		return nil, Stats{}, err
	}
	if pm == nil {
		return nil, Stats{}, fmt.Errorf("vertical: party %q has no model", parties[self])
	}
	if err := checkModel(pm, t); err != nil {
		return nil, Stats{}, err
	}
	nd := newNode(l, parties, self, share, 0)
	scores, err := nd.predict(ctx, scoringParty(pm, t, share), t.Rows(), rnd)
	st := Stats{Rows: t.Rows(), Bytes: nd.sent}
	if err != nil {
		nd.abort(ctx)
		return nil, st, err
	}
	st.Time = time.Since(start)
	return scores, st, nil
}

// predict runs this party's side of PredictParty.
func (nd *node) predict(ctx context.Context, p *party, rows int, rnd io.Reader) ([]float64, error) {
	if err := nd.agreeRows(ctx, tagPredictRows, rows); err != nil {
		return nil, err
	}
	pts := p.packedPredictors(nd.pk, rows)
	if nd.self != 0 {
		cts, err := encryptAll(nd.pk, pts, rnd, nd.workers)
		if err != nil {
			return nil, err
		}
		if err := nd.send(ctx, 0, tagPredictions, 0, nd.encode(cts)); err != nil {
			return nil, err
		}
		return nil, nd.answer(ctx, 0, tagScores, tagScoreShares, 0, len(pts), "the packed scores")
	}
	sum := make([]*big.Int, len(pts))
	for h := 1; h < len(nd.parties); h++ {
		cts, err := nd.recvCiphertexts(ctx, h, tagPredictions, 0, len(pts), "the encrypted partial predictors")
		if err != nil {
			return nil, err
		}
		if h == 1 {
			copy(sum, cts)
		} else {
			addCiphertexts(nd.pk, sum, cts)
		}
	}
	addPlaintexts(nd.pk, sum, pts)
	body := nd.encode(sum)
	for h := 1; h < len(nd.parties); h++ {
		if err := nd.send(ctx, h, tagScores, 0, body); err != nil {
			return nil, err
		}
	}
	out, err := nd.combine(ctx, tagScoreShares, 0, sum, rows, "the scores")
	if err != nil {
		return nil, err
	}
	return unscale(out), nil
}

// checkParty checks a networked party's arguments: the parties, its
// table and its key share.
func checkParty(parties []string, self int, t *Table, share *paillier.KeyShare) error {
	l := len(parties)
	if l < 2 || l > MaxHosts+1 {
		return fmt.Errorf("vertical: %d parties, want the label party and 1 to %d feature parties", l, MaxHosts)
	}
	if self < 0 || self >= l {
		return fmt.Errorf("vertical: party number %d of %d parties %q", self, l, parties)
	}
	for i, name := range parties {
		if name == "" || slices.Contains(parties[:i], name) {
			return fmt.Errorf("vertical: party name %q empty or listed twice in %q", name, parties)
		}
	}
	me := parties[self]
	switch {
	case t == nil || t.Rows() == 0:
		return fmt.Errorf("vertical: party %q has no rows", me)
	case len(t.X) != t.Rows()*len(t.Columns):
		return fmt.Errorf("vertical: party %q's table has %d values for %d rows of %d columns", me, len(t.X), t.Rows(), len(t.Columns))
	case share == nil || share.Check() != nil:
		return fmt.Errorf("vertical: party %q's key share is missing or malformed", me)
	case share.Key.T != l || share.Key.L != l:
		return fmt.Errorf("vertical: party %q's key share is of a %d-of-%d key, want all-of-%d (one share per party)", me, share.Key.T, share.Key.L, l)
	case share.Index != self+1:
		return fmt.Errorf("vertical: party %q holds key share %d, want %d (share i+1 goes to parties[i])", me, share.Index, self+1)
	case share.Key.N.BitLen() < minKeyBits:
		return fmt.Errorf("vertical: party %q's key has %d bits, want at least %d (2048 for real data)", me, share.Key.N.BitLen(), minKeyBits)
	}
	return nil
}

// node is one party's end of a networked run.
type node struct {
	l       relay.Link
	parties []string
	self    int
	others  []int // every party but self, in order
	share   *paillier.KeyShare
	pk      *paillier.PublicKey
	workers int
	sent    int64 // message bodies sent
}

func newNode(l relay.Link, parties []string, self int, share *paillier.KeyShare, workers int) *node {
	nd := &node{l: l, parties: parties, self: self, share: share, pk: &share.Key.PublicKey, workers: workers}
	for q := range parties {
		if q != self {
			nd.others = append(nd.others, q)
		}
	}
	return nd
}

// send sends body to party q.
func (nd *node) send(ctx context.Context, q int, tag string, index uint64, body []byte) error {
	if err := nd.l.Send(ctx, nd.parties[q], tag, index, body); err != nil {
		return fmt.Errorf("vertical: party %q: %w", nd.parties[nd.self], err)
	}
	nd.sent += int64(len(body))
	return nil
}

// abort tells every other party that this one gave up (best effort).
func (nd *node) abort(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	for _, q := range nd.others {
		nd.l.Send(ctx, nd.parties[q], tagAbort, 0, nil)
	}
}

// agreeRows has the label party send every feature party its number of
// rows, and each feature party check it against its own.
func (nd *node) agreeRows(ctx context.Context, tag string, rows int) error {
	if nd.self == 0 {
		body := binary.BigEndian.AppendUint64(nil, uint64(rows))
		for _, q := range nd.others {
			if err := nd.send(ctx, q, tag, 0, body); err != nil {
				return err
			}
		}
		return nil
	}
	label, me := nd.parties[0], nd.parties[nd.self]
	body, err := nd.l.Recv(ctx, label, tag, 0)
	if err != nil {
		return fmt.Errorf("vertical: party %q waiting for the row count of the label party %q: %w", me, label, err)
	}
	if len(body) != rowsMessageBytes {
		return fmt.Errorf("vertical: the row count from the label party %q is %d bytes, want %d", label, len(body), rowsMessageBytes)
	}
	if n := binary.BigEndian.Uint64(body); n != uint64(rows) {
		return fmt.Errorf("vertical: the label party %q has %d aligned rows, party %q has %d (the tables must be the same PSI's output)", label, n, me, rows)
	}
	return nil
}

// encode writes ciphertexts (or decryption shares, which are in the same
// range) as fixed-size big-endian numbers, one after the other.
func (nd *node) encode(cts []*big.Int) []byte {
	b := make([]byte, 0, len(cts)*nd.pk.CiphertextSize())
	for _, c := range cts {
		b = nd.pk.AppendCiphertext(b, c)
	}
	return b
}

// decodeCiphertexts reads count ciphertexts of pk's (any positive number
// if count < 0), checking the length before it allocates and each value's
// range.
func decodeCiphertexts(pk *paillier.PublicKey, b []byte, count int) ([]*big.Int, error) {
	size := pk.CiphertextSize()
	switch {
	case count < 0 && (len(b) == 0 || len(b)%size != 0):
		return nil, fmt.Errorf("%d bytes, not a positive number of %d-byte ciphertexts", len(b), size)
	case count < 0:
		count = len(b) / size
	case len(b)/size != count || len(b)%size != 0:
		return nil, fmt.Errorf("%d bytes, want %d ciphertexts of %d bytes", len(b), count, size)
	}
	out := make([]*big.Int, count)
	for i := range out {
		var err error
		if out[i], err = pk.ParseCiphertext(b[i*size : (i+1)*size]); err != nil {
			return nil, fmt.Errorf("value %d of %d: %w", i, count, err)
		}
	}
	return out, nil
}

// recvCiphertexts receives count ciphertexts (any positive number if
// count < 0) from party q, what they are naming them in errors.
func (nd *node) recvCiphertexts(ctx context.Context, q int, tag string, index uint64, count int, what string) ([]*big.Int, error) {
	body, err := nd.l.Recv(ctx, nd.parties[q], tag, index)
	if err != nil {
		return nil, fmt.Errorf("vertical: party %q waiting for %s from party %q: %w", nd.parties[nd.self], what, nd.parties[q], err)
	}
	cts, err := decodeCiphertexts(nd.pk, body, count)
	if err != nil {
		return nil, fmt.Errorf("vertical: %s from party %q: %w", what, nd.parties[q], err)
	}
	return cts, nil
}

// answer receives packed ciphertexts from party q (count of them, or any
// positive number if count < 0) and sends back this party's decryption
// share of each.
func (nd *node) answer(ctx context.Context, q int, tag, shareTag string, index uint64, count int, what string) error {
	cts, err := nd.recvCiphertexts(ctx, q, tag, index, count, what)
	if err != nil {
		return err
	}
	shares, err := decryptionShares(nd.share, cts, nd.workers)
	if err != nil {
		return err
	}
	return nd.send(ctx, q, shareTag, index, nd.encode(shares))
}

// combine receives from every other party a decryption share of each of
// the packed ciphertexts, adds this party's own and returns the count
// values they hold.
func (nd *node) combine(ctx context.Context, tag string, index uint64, packed []*big.Int, count int, what string) ([]int64, error) {
	own, err := decryptionShares(nd.share, packed, nd.workers)
	if err != nil {
		return nil, err
	}
	parts := map[int][]*big.Int{nd.share.Index: own}
	var from []string
	for _, q := range nd.others {
		sh, err := nd.recvCiphertexts(ctx, q, tag, index, len(packed), "the decryption shares of "+what)
		if err != nil {
			return nil, err
		}
		parts[q+1] = sh
		from = append(from, nd.parties[q])
	}
	vals, err := combinePacked(nd.share.Key, parts, count, nd.workers)
	if err != nil {
		if errors.Is(err, paillier.ErrMalformed) {
			return nil, fmt.Errorf("vertical: %s does not decrypt: a decryption share from one of %q is wrong: %w", what, from, err)
		}
		return nil, fmt.Errorf("vertical: decrypting %s: %w", what, err)
	}
	return vals, nil
}
