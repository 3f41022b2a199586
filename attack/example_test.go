package attack_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/cloisterfl/cloister/attack"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/robust"
)

// Five of 25 nodes attack a round whose honest updates scatter around
// (1, 1). The mean follows sign flipping far off; the median and Krum
// resist it. ALIE's forged update sits inside the honest spread, so no norm
// or distance check flags it, yet it moves the median exactly as far as
// sign flipping does: five values below the median shift it the same
// whether they are at −4 or at 0.8.
func Example() {
	rng := rand.New(rand.NewPCG(1, 2))
	var honest []fl.Vector
	for range 20 {
		honest = append(honest, fl.Vector{1 + 0.5*rng.NormFloat64(), 1 + 0.5*rng.NormFloat64()})
	}
	own := make([]fl.Vector, 5) // what the attackers trained; ALIE ignores it
	for i := range own {
		own[i] = fl.Vector{1, 1}
	}
	mean := robust.NewMean()
	median, _ := robust.Parse("median", 25)
	krum, _ := robust.Parse("krum:f=5", 25)
	for _, spec := range []string{"none", "sign-flip", "alie"} {
		a, err := attack.Parse(spec, 25, 5)
		if err != nil {
			panic(err)
		}
		bad, err := a.Forge(own, honest, rng)
		if err != nil {
			panic(err)
		}
		all := append(bad, honest...)
		m1, _ := mean.Aggregate(all)
		m2, _ := median.Aggregate(all)
		m3, _ := krum.Aggregate(all)
		fmt.Printf("%-9s sends %5.2f  mean %5.2f  median %.2f  krum %.2f\n", a.Name(), bad[0], m1, m2, m3)
	}
	// Output:
	// none      sends [ 1.00  1.00]  mean [ 1.05  0.99]  median [1.00 1.00]  krum [1.00 1.00]
	// sign-flip sends [-4.00 -4.00]  mean [ 0.05 -0.01]  median [0.98 0.85]  krum [0.98 1.11]
	// alie      sends [ 0.84  0.71]  mean [ 1.02  0.94]  median [0.98 0.85]  krum [0.97 0.81]
}
