package vertical

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/paillier"
	"github.com/cloisterfl/cloister/relay"
	"github.com/cloisterfl/cloister/relay/relaytest"
)

// netTimeout bounds every networked test, so that a protocol bug fails
// rather than hangs.
const netTimeout = 10 * time.Second

// dealNet deals a fresh 512-bit all-of-l key, as the federation admin does.
func dealNet(t *testing.T, l int) []*paillier.KeyShare {
	t.Helper()
	sk, err := paillier.GenerateKey(512, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, shares, err := paillier.Deal(sk, l, l, rand.Reader)
	sk.Erase()
	if err != nil {
		t.Fatal(err)
	}
	return shares
}

// names returns the tables' names, the relay's party list.
func names(tables []*Table) []string {
	out := make([]string, len(tables))
	for i, tb := range tables {
		out[i] = tb.Name
	}
	return out
}

// runParties runs f for every party at once, each in its own goroutine
// (as each would in its own process), and returns their errors.
func runParties(t *testing.T, n int, f func(ctx context.Context, i int) error) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), netTimeout)
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = f(ctx, i) })
	}
	wg.Wait()
	return errs
}

// netTables returns aligned tables of 2 or 3 parties: synthetic's, and a
// third party's noise columns.
func netTables(rows, parties int) []*Table {
	a, b := synthetic(rows, 7)
	out := []*Table{a, b}
	if parties == 3 {
		_, c := synthetic(rows, 8)
		c.Name, c.Columns = "bank", []string{"c0", "c1", "c2"}
		out = append(out, c)
	}
	return out
}

// TestTrainPartyMatchesTrain: the networked parties compute exactly the
// in-process Train's model, part by part, and Predict's scores.
func TestTrainPartyMatchesTrain(t *testing.T) {
	for _, l := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d parties", l), func(t *testing.T) {
			tables := netTables(150, l)
			c := testConfig()
			c.Epochs, c.L2 = 2, 0.01
			m, st, err := Train(tables[0], tables[1:], c, mrand.NewChaCha8([32]byte{1}))
			if err != nil {
				t.Fatal(err)
			}
			shares := dealNet(t, l)
			parties := names(tables)
			ss := relaytest.Sessions(t, parties...)
			pms := make([]*PartyModel, l)
			sts := make([]Stats, l)
			errs := runParties(t, l, func(ctx context.Context, i int) error {
				var err error
				pms[i], sts[i], err = TrainParty(ctx, ss[parties[i]], parties, i, tables[i], shares[i], c, rand.Reader)
				return err
			})
			var sent int64
			for i, err := range errs {
				if err != nil {
					t.Fatalf("party %d: %v", i, err)
				}
				if !reflect.DeepEqual(*pms[i], m.Parties[i]) {
					t.Errorf("party %d: weights %v intercept %v, Train's %v %v", i, pms[i].Weights, pms[i].Intercept, m.Parties[i].Weights, m.Parties[i].Intercept)
				}
				if sts[i].Rows != st.Rows || sts[i].Batches != st.Batches || sts[i].Bytes <= 0 {
					t.Errorf("party %d: stats %+v, Train's %+v", i, sts[i], st)
				}
				sent += sts[i].Bytes
			}
			// Train counts the same ciphertexts and shares; the parties
			// also sent the row counts.
			if want := st.Bytes + int64(l-1)*rowsMessageBytes; sent != want {
				t.Errorf("the parties sent %d bytes, want %d", sent, want)
			}

			want, _, err := Predict(m, tables[0], tables[1:], 512, mrand.NewChaCha8([32]byte{2}))
			if err != nil {
				t.Fatal(err)
			}
			scores := make([][]float64, l)
			errs = runParties(t, l, func(ctx context.Context, i int) error {
				var err error
				scores[i], _, err = PredictParty(ctx, ss[parties[i]], parties, i, tables[i], pms[i], shares[i], rand.Reader)
				return err
			})
			for i, err := range errs {
				if err != nil {
					t.Fatalf("predicting, party %d: %v", i, err)
				}
			}
			if !slices.Equal(scores[0], want) {
				t.Errorf("PredictParty's scores differ from Predict's")
			}
			for i := 1; i < l; i++ {
				if scores[i] != nil {
					t.Errorf("feature party %d got scores", i)
				}
			}
		})
	}
}

// TestTrainPartyMisaligned: a feature party with another number of rows
// stops with a clear error, and its abort stops the label party.
func TestTrainPartyMisaligned(t *testing.T) {
	tables := netTables(60, 2)
	rows := make([]int, 59)
	for i := range rows {
		rows[i] = i
	}
	tables[1] = tables[1].Select(rows)
	shares := dealNet(t, 2)
	parties := names(tables)
	ss := relaytest.Sessions(t, parties...)
	errs := runParties(t, 2, func(ctx context.Context, i int) error {
		_, _, err := TrainParty(ctx, ss[parties[i]], parties, i, tables[i], shares[i], testConfig(), rand.Reader)
		return err
	})
	t.Log(errs)
	want := `the label party "hospital" has 60 aligned rows, party "insurer" has 59`
	if errs[1] == nil || !strings.Contains(errs[1].Error(), want) {
		t.Errorf("feature party: %v, want %q", errs[1], want)
	}
	if errs[0] == nil || !strings.Contains(errs[0].Error(), tagAbort) {
		t.Errorf("label party: %v, want the feature party's abort", errs[0])
	}
}

// TestTrainPartyRefuses: the arguments are checked before anything is sent.
func TestTrainPartyRefuses(t *testing.T) {
	tables := netTables(20, 2)
	parties := names(tables)
	shares := dealNet(t, 2)
	other := dealNet(t, 3)
	noLabels := *tables[0]
	noLabels.Y = nil
	for _, tc := range []struct {
		name  string
		self  int
		t     *Table
		share *paillier.KeyShare
		want  string
	}{
		{"another party's share", 0, tables[0], shares[1], "holds key share 2, want 1"},
		{"a 3-party key", 1, tables[1], other[1], "of a 3-of-3 key, want all-of-2"},
		{"no share", 1, tables[1], nil, "key share is missing"},
		{"no labels", 0, &noLabels, shares[0], "has 0 labels for 20 rows"},
		{"no such party", 2, tables[1], shares[1], "party number 2"},
	} {
		_, _, err := TrainParty(t.Context(), nil, parties, tc.self, tc.t, tc.share, testConfig(), rand.Reader)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestTrainPartyHostile: a feature party (written against its session)
// that sends malformed values makes the label party fail with an error
// that names it; nothing panics.
func TestTrainPartyHostile(t *testing.T) {
	const batch = 64 // the first batch: testConfig's, of 100 rows
	type script struct {
		u, grad, shares func(pk *paillier.PublicKey) []byte // nil: valid
	}
	valid := func(k int) func(pk *paillier.PublicKey) []byte {
		return func(pk *paillier.PublicKey) []byte {
			var b []byte
			for range k {
				c, err := pk.Encrypt(big.NewInt(0), rand.Reader)
				if err != nil {
					panic(err)
				}
				b = pk.AppendCiphertext(b, c)
			}
			return b
		}
	}
	// withBytes replaces value i of k valid ones by raw.
	withBytes := func(k, i int, raw func(size int) []byte) func(pk *paillier.PublicKey) []byte {
		return func(pk *paillier.PublicKey) []byte {
			b := valid(k)(pk)
			size := pk.CiphertextSize()
			copy(b[i*size:], raw(size))
			return b
		}
	}
	ones := func(size int) []byte { return slices.Repeat([]byte{0xff}, size) }
	zeros := func(size int) []byte { return make([]byte, size) }
	for _, tc := range []struct {
		name string
		s    script
		want string
	}{
		{"too few partial predictors", script{u: valid(batch - 1)}, `the encrypted partial predictors of batch 0 from party "insurer": 8064 bytes, want 64 ciphertexts of 128 bytes`},
		{"partial predictor out of range", script{u: withBytes(batch, 5, ones)}, `the encrypted partial predictors of batch 0 from party "insurer": value 5 of 64: paillier: malformed value: ciphertext outside (0, n²)`},
		{"zero partial predictor", script{u: withBytes(batch, 0, zeros)}, `from party "insurer": value 0 of 64`},
		{"empty gradient", script{grad: func(*paillier.PublicKey) []byte { return nil }}, `the packed gradient of batch 0 from party "insurer": 0 bytes`},
		{"ragged gradient", script{grad: func(*paillier.PublicKey) []byte { return []byte{1, 2, 3} }}, `the packed gradient of batch 0 from party "insurer": 3 bytes`},
		{"too many decryption shares", script{shares: valid(2)}, `the decryption shares of party "hospital"'s gradient of batch 0 from party "insurer": 256 bytes, want 1`},
		{"decryption share out of range", script{shares: withBytes(1, 0, ones)}, `the decryption shares of party "hospital"'s gradient of batch 0 from party "insurer": value 0 of 1`},
		{"wrong decryption share", script{shares: valid(1)}, `party "hospital"'s gradient of batch 0 does not decrypt: a decryption share from one of ["insurer"] is wrong`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tables := netTables(100, 2)
			shares := dealNet(t, 2)
			parties := names(tables)
			ss := relaytest.Sessions(t, parties...)
			pk := &shares[0].Key.PublicKey
			errs := runParties(t, 2, func(ctx context.Context, i int) error {
				if i == 0 {
					_, _, err := TrainParty(ctx, ss["hospital"], parties, 0, tables[0], shares[0], testConfig(), rand.Reader)
					return err
				}
				return hostile(ctx, ss["insurer"], pk, batch, tc.s.u, tc.s.grad, tc.s.shares, valid)
			})
			if errs[0] == nil || !strings.Contains(errs[0].Error(), tc.want) {
				t.Errorf("label party: %v\nwant %q", errs[0], tc.want)
			}
			t.Log(errs[0])
		})
	}
}

// hostile plays a feature party's first batch with the given bodies (nil:
// valid ones, all encryptions of 0), stopping once the label party has
// refused one.
func hostile(ctx context.Context, s *relay.Session, pk *paillier.PublicKey, batch int, u, grad, shares func(*paillier.PublicKey) []byte, valid func(int) func(*paillier.PublicKey) []byte) error {
	or := func(f func(*paillier.PublicKey) []byte, k int) []byte {
		if f == nil {
			f = valid(k)
		}
		return f(pk)
	}
	const label = "hospital"
	if _, err := s.Recv(ctx, label, tagRows, 0); err != nil {
		return err
	}
	if err := s.Send(ctx, label, tagPartials, 0, or(u, batch)); err != nil {
		return err
	}
	if u != nil {
		return nil
	}
	if _, err := s.Recv(ctx, label, tagResiduals, 0); err != nil {
		return err
	}
	if err := s.Send(ctx, label, tagGradient, 0, or(grad, 1)); err != nil {
		return err
	}
	if grad != nil {
		return nil
	}
	if _, err := s.Recv(ctx, label, tagGradient, 0); err != nil {
		return err
	}
	return s.Send(ctx, label, tagGradShares, 0, or(shares, 1))
}

func FuzzDecodeCiphertexts(f *testing.F) {
	n, _ := new(big.Int).SetString("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 16)
	n.SetBit(n, 0, 1)
	pk, err := paillier.NewPublicKey(n)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(make([]byte, pk.CiphertextSize()), int8(1))
	f.Add([]byte{1, 2, 3}, int8(-1))
	f.Fuzz(func(t *testing.T, b []byte, count int8) {
		cts, err := decodeCiphertexts(pk, b, int(count))
		if err != nil {
			return
		}
		for i, c := range cts {
			if c.Sign() <= 0 || c.Cmp(pk.N2) >= 0 {
				t.Fatalf("ciphertext %d accepted outside (0, n²): %v", i, c)
			}
		}
		if count >= 0 && len(cts) != int(count) {
			t.Fatalf("%d ciphertexts for a count of %d", len(cts), count)
		}
	})
}
