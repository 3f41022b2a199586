package tee_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cloisterfl/cloister/protect/protecttest"
	"github.com/cloisterfl/cloister/protect/tee"
)

func TestConformance(t *testing.T) {
	id, err := tee.NewIdentity(rand.NewChaCha8([32]byte{7}))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []protecttest.Config{
		{N: 10, T: 6, Seed: 1, Dim: 101},
		{N: 3, T: 2, Seed: 2},
		{N: 1, T: 1, Seed: 3},
	} {
		t.Run(fmt.Sprintf("N=%d,T=%d", c.N, c.T), func(t *testing.T) {
			protecttest.Run(t, tee.Scheme{Identity: id}, c)
		})
	}
}
