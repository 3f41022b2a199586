package secagg

import (
	"fmt"
	"testing"

	"github.com/cloisterfl/cloister/protect/protecttest"
)

func TestConformance(t *testing.T) {
	for _, p := range []*Preset{Q32, Q64, ring(t, "secagg32-k7")} {
		s, err := New(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []protecttest.Config{{N: 10, T: 6}, {N: 3, T: 2}, {N: 3, T: 3}, {N: 1, T: 1}} {
			t.Run(fmt.Sprintf("%s/N=%d,T=%d", p.Name(), c.N, c.T), func(t *testing.T) {
				protecttest.Run(t, s, c)
			})
		}
	}
}

func ring(t testing.TB, name string) *Preset {
	t.Helper()
	p, err := PresetByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
