package paillier

import (
	"fmt"
	"testing"

	"github.com/cloisterfl/cloister/protect/protecttest"
)

func TestConformance(t *testing.T) {
	s, err := New(InsecureTest)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []protecttest.Config{{N: 10, T: 6, Dim: 97}, {N: 3, T: 2, Dim: 97}, {N: 3, T: 3, Dim: 97}, {N: 1, T: 1, Dim: 97}} {
		t.Run(fmt.Sprintf("N=%d,T=%d", c.N, c.T), func(t *testing.T) {
			protecttest.Run(t, s, c)
		})
	}
}
