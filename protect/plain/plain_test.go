package plain_test

import (
	"fmt"
	"testing"

	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/protect/protecttest"
)

func TestConformance(t *testing.T) {
	for _, c := range []protecttest.Config{
		{N: 10, T: 6, Seed: 1},
		{N: 3, T: 2, Seed: 2},
		{N: 1, T: 1, Seed: 3},
	} {
		t.Run(fmt.Sprintf("N=%d,T=%d", c.N, c.T), func(t *testing.T) {
			protecttest.Run(t, plain.Scheme{}, c)
		})
	}
}
