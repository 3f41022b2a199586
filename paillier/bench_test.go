package paillier

import (
	"crypto/rand"
	"flag"
	"math"
	"math/big"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"
)

var benchParams = flag.Int("paillier.params", 4096, "values per sample in BenchmarkPaillier (the unpacked sample is 1/16 of it)")

var (
	benchOnce   sync.Once
	benchKey    *ThresholdKey
	benchShares []*KeyShare
	benchErr    error
	benchKeyGen time.Duration
)

// benchKey2048 deals one 2048-bit 2-of-3 key for all benchmarks.
func benchKey2048(b *testing.B) (*ThresholdKey, []*KeyShare) {
	benchOnce.Do(func() {
		start := time.Now()
		sk, err := GenerateKey(2048, rand.Reader)
		if err != nil {
			benchErr = err
			return
		}
		benchKeyGen = time.Since(start)
		benchKey, benchShares, benchErr = Deal(sk, 2, 3, rand.Reader)
		sk.erase()
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchKey, benchShares
}

// BenchmarkPaillier measures, at 2048 bits and per million values, the
// time to encrypt one member's vector, to sum ten members' ciphertexts
// (nine products per ciphertext, the coordinator's work) and to decrypt
// the sum (two decryption shares, then combining and unpacking), packed
// (64 values per ciphertext) and unpacked (one value per ciphertext), in
// the same run; and the bytes per value of an update. The unpacked
// sample is 1/16 of the packed one: its costs are linear in the number of
// ciphertexts, so both are scaled to 10^6 values.
func BenchmarkPaillier(b *testing.B) {
	tk, shares := benchKey2048(b)
	b.Logf("2048-bit key generation (two 1024-bit safe primes): %v", benchKeyGen)
	sch, _ := New(P2048)
	pk := &tk.PublicKey
	for _, packed := range []bool{true, false} {
		name, per, d := "packed", P2048.slots, *benchParams
		if !packed {
			name, per, d = "unpacked", 1, *benchParams/16
		}
		b.Run(name, func(b *testing.B) {
			r := mrand.New(mrand.NewPCG(1, 2))
			vals := make([]float64, d-1)
			for i := range vals {
				vals[i] = (r.Float64()*2 - 1) / 10
			}
			var enc, sum, dec time.Duration
			var nct int
			for b.Loop() {
				// Encrypt.
				start := time.Now()
				var cts []*big.Int
				if packed {
					var err error
					cts, err = sch.encrypt(pk, append(vals, 1), rand.Reader)
					if err != nil {
						b.Fatal(err)
					}
				} else {
					all := append(vals, 1)
					cts = make([]*big.Int, len(all))
					rs := make([]*big.Int, len(all))
					for i := range rs {
						rs[i], _ = pk.randomUnit(rand.Reader)
					}
					scale := math.Ldexp(1, P2048.lit.Frac)
					parallel(len(all), func(i int) error {
						q := big.NewInt(int64(math.RoundToEven(all[i] * scale)))
						if q.Sign() < 0 {
							q.Add(q, pk.N)
						}
						cts[i] = pk.encryptWith(q, rs[i])
						return nil
					})
				}
				enc += time.Since(start)
				nct = len(cts)
				// Sum ten members' (the same ciphertexts ten times: the cost
				// of a product does not depend on the values).
				start = time.Now()
				acc := make([]*big.Int, len(cts))
				for i, c := range cts {
					acc[i] = new(big.Int).Set(c)
					for range 9 {
						pk.Add(acc[i], acc[i], c)
					}
				}
				sum += time.Since(start)
				// Decrypt with two of the three shares.
				start = time.Now()
				out := make([]int64, per)
				pack := Packing{SlotBits: P2048.lit.SlotBits, Slots: P2048.slots}
				err := parallel(len(acc), func(i int) error {
					s1, err := shares[0].Decrypt(acc[i])
					if err != nil {
						return err
					}
					s2, err := shares[1].Decrypt(acc[i])
					if err != nil {
						return err
					}
					m, err := tk.Combine(map[int]*big.Int{1: s1, 2: s2})
					if err != nil {
						return err
					}
					if packed {
						return pack.Unpack(m, pk.N, min(per, d-i*per), P2048.bound, make([]int64, per))
					}
					_ = out
					return nil
				})
				dec += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
			}
			scale := 1e6 / float64(d) / float64(b.N)
			b.ReportMetric(enc.Seconds()*scale, "enc-s/1M")
			b.ReportMetric(sum.Seconds()*scale, "sum10-s/1M")
			b.ReportMetric(dec.Seconds()*scale, "dec-s/1M")
			b.ReportMetric(float64(nct*pk.CiphertextSize())/float64(d), "bytes/value")
		})
	}
}
