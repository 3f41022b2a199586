package simulation

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/cloisterfl/cloister/dp"
)

// noiseReader returns the seeded ChaCha8 stream a node draws its DP noise
// from in one round. Production nodes use crypto/rand.
func noiseReader(seed uint64, round, node int) *rand.ChaCha8 {
	var key [32]byte
	copy(key[:], "cloister-sim-dp-noise")
	binary.LittleEndian.PutUint64(key[8:], seed)
	binary.LittleEndian.PutUint32(key[16:], uint32(round))
	binary.LittleEndian.PutUint32(key[20:], uint32(node))
	return rand.NewChaCha8(key)
}

// privacy is the accounting state of a run.
type privacy struct {
	cfg      Privacy
	q, z     float64
	budget   *dp.Budget
	acc      *dp.Accountant
	noise    *dp.Noise
	shareStd float64
}

func newPrivacy(c *Config, dim int) (*privacy, *PrivacySetup, error) {
	p := &privacy{cfg: *c.Privacy}
	if p.cfg.MinCohort == 0 {
		p.cfg.MinCohort = c.Cohort
	}
	if p.cfg.Delta == 0 {
		p.cfg.Delta = DefaultDelta
	}
	if p.cfg.Bits == 0 {
		p.cfg.Bits = dp.DefaultBits
	}
	var err error
	if p.shareStd, err = dp.NoiseShare(p.cfg.Noise, c.Clip, p.cfg.MinCohort); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if p.noise, err = dp.NewNoise(p.shareStd, p.cfg.Bits); err != nil {
		return nil, nil, fmt.Errorf("%w: noise share %g on a grid of %d bits: %v", ErrConfig, p.shareStd, p.cfg.Bits, err)
	}
	if p.z, err = dp.DistributedMultiplier(p.cfg.Noise, c.Clip, p.cfg.MinCohort, dim, p.cfg.Bits); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	p.q = float64(c.Cohort) / float64(c.Nodes)
	if p.cfg.Budget > 0 {
		if p.budget, err = dp.NewBudget(p.cfg.Budget, p.cfg.Delta); err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
	} else {
		p.acc = new(dp.Accountant)
	}
	m := float64(c.Cohort)
	setup := &PrivacySetup{
		Noise: p.cfg.Noise, Clip: c.Clip, MinCohort: p.cfg.MinCohort, ShareStd: p.shareStd,
		MeanStd: p.shareStd * math.Sqrt(m) / m, Multiplier: p.z, SampleRate: p.q,
		Delta: p.cfg.Delta, Budget: p.cfg.Budget, Bits: p.cfg.Bits,
	}
	return p, setup, nil
}

// check returns a non-empty reason if the next round would exceed the budget.
func (p *privacy) check(round int) (string, error) {
	if p.budget == nil {
		return "", nil
	}
	err := p.budget.Check(p.q, p.z, 1)
	var be *dp.BudgetExceededError
	if errors.As(err, &be) {
		return fmt.Sprintf("privacy budget: round %d would take ε from %.4g to %.4g, past the budget of %g (δ = %g)", round, be.Spent, be.Next, be.Limit, be.Delta), nil
	}
	return "", err
}

// spend records a round and returns ε spent so far.
func (p *privacy) spend() (float64, error) {
	if p.budget != nil {
		if err := p.budget.Spend(p.q, p.z, 1); err != nil {
			return 0, err // Check ran first, so this is not expected
		}
		return p.budget.Spent(), nil
	}
	if err := p.acc.Compose(p.q, p.z, 1); err != nil {
		return 0, err
	}
	eps, _, err := p.acc.Epsilon(p.cfg.Delta)
	return eps, err
}
