package paillier_test

import (
	"crypto/rand"
	"fmt"
	"math/big"

	"github.com/cloisterfl/cloister/paillier"
)

// A 2-of-3 threshold key: any two shares decrypt a sum; the key itself is
// erased after dealing. (A 512-bit modulus, for speed: NOT SECURE.)
func Example() {
	sk, err := paillier.GenerateKey(512, rand.Reader)
	if err != nil {
		panic(err)
	}
	tk, shares, err := paillier.Deal(sk, 2, 3, rand.Reader)
	if err != nil {
		panic(err)
	}
	a, _ := tk.Encrypt(big.NewInt(20), rand.Reader)
	b, _ := tk.Encrypt(big.NewInt(22), rand.Reader)
	sum := tk.Add(nil, a, b)
	s1, _ := shares[0].Decrypt(sum)
	s3, _ := shares[2].Decrypt(sum)
	m, err := tk.Combine(map[int]*big.Int{1: s1, 3: s3})
	fmt.Println(m, err)
	_, err = tk.Combine(map[int]*big.Int{1: s1})
	fmt.Println(err)
	// Output:
	// 42 <nil>
	// paillier: cannot combine the decryption shares: 1 shares, need 2
}
