package paillier

import (
	"errors"
	"math/big"
	mrand "math/rand/v2"
	"testing"
)

// TestPackingSums packs random digits for n members at the per-member
// bound, sums the plaintexts mod n as the ciphertexts' product does, and
// unpacks the exact digit sums.
func TestPackingSums(t *testing.T) {
	p := P2048
	n := new(big.Int).Lsh(big.NewInt(1), uint(p.lit.KeyBits-1))
	n.Add(n, big.NewInt(12345)) // any odd modulus of KeyBits bits
	pack := Packing{SlotBits: p.lit.SlotBits, Slots: p.slots}
	r := mrand.New(mrand.NewPCG(1, 2))
	for _, members := range []int{1, 2, 10, 1000} {
		per := int64(p.lit.MaxAbs/float64(members)*float64(int64(1)<<p.lit.Frac)) + 1 // largest |q| Protect makes
		want := make([]int64, p.slots)
		sum := new(big.Int)
		for range members {
			q := make([]int64, p.slots)
			for j := range q {
				switch r.IntN(3) {
				case 0:
					q[j] = per
				case 1:
					q[j] = -per
				default:
					q[j] = r.Int64N(2*per+1) - per
				}
				want[j] += q[j]
			}
			sum.Add(sum, pack.Pack(q, n))
			sum.Mod(sum, n)
		}
		got := make([]int64, p.slots)
		if err := pack.Unpack(sum, n, p.slots, p.bound, got); err != nil {
			t.Fatalf("%d members: %v", members, err)
		}
		for j := range got {
			if got[j] != want[j] {
				t.Fatalf("%d members: slot %d is %d, want %d", members, j, got[j], want[j])
			}
		}
	}
	// A random plaintext is refused.
	x := new(big.Int).Rsh(n, 3)
	x.Add(x, big.NewInt(987654321))
	if err := pack.Unpack(x, n, p.slots, p.bound, make([]int64, p.slots)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("random plaintext: %v", err)
	}
}

func TestPresets(t *testing.T) {
	for _, p := range Presets() {
		q, err := PresetByName(p.Name())
		if err != nil || q != p {
			t.Fatalf("PresetByName(%q) = %v, %v", p.Name(), q, err)
		}
	}
	if P2048.Slots() != 64 {
		t.Fatalf("paillier2048 packs %d values, want 64", P2048.Slots())
	}
	if per := float64(2*P2048.keySize()) / float64(P2048.Slots()); per > 8 {
		t.Fatalf("%.2f bytes per value at 2048 bits, want at most 8", per)
	}
	if _, err := NewPreset(Literal{Name: "weak", KeyBits: 1024, SlotBits: 31, CheckBits: 60, Frac: 19, MaxAbs: 1024, MaxParties: 10, MaxDim: 10}); !errors.Is(err, ErrInsecure) {
		t.Fatalf("1024-bit preset: %v", err)
	}
	if _, err := NewPreset(Literal{Name: "full", KeyBits: 2048, SlotBits: 31, CheckBits: 60, Frac: 25, MaxAbs: 1024, MaxParties: 10, MaxDim: 10}); err == nil {
		t.Fatal("a preset whose sums overflow a slot was accepted")
	}
	if _, err := PresetByName("nope"); !errors.Is(err, ErrUnknownPreset) {
		t.Fatal(err)
	}
}
