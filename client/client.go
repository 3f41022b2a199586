// Package client is one site's side of a federated round, the local update:
// train from the global model, take Δ = local − global, clip Δ to norm C,
// add the site's share of the DP noise, and weigh it. The networked node
// (package node) and the in-process simulation (package simulation) both run
// their sites' rounds through it, so the two compute the same update from
// the same inputs and random streams.
//
// # Pure core
//
// Nothing here touches a disk, a network or a clock, and nothing draws from
// global randomness: the shuffling stream is an injected *rand.Rand, the
// noise's an injected io.Reader (crypto/rand in production). A node keeps
// its SCAFFOLD control variate between rounds and stores it; the simulation
// keeps one per site in memory; here it is an argument and a result.
//
// # A site's round
//
//	u, _ := t.Train(data, global, ci, rng)   // Δ, and SCAFFOLD's next cᵢ
//	u.Clip(C)                                 // ‖Δ‖ ≤ C
//	u.AddNoise(share, noise)                  // + N_Z(0, (σC/√k)²) on dp's grid
//	u.Weigh(uniform, maxAbs, members)         // Δ ← wΔ
//
// [Policy.Apply] runs the last three steps in that order. The simulation
// stops after AddNoise, because a simulated attacker forges updates between
// Train and Clip and because it aggregates in the clear with the example
// counts as weights (Update.Examples).
//
// # Local training
//
// Plain local training is model.SGD (minibatch SGD with momentum and weight
// decay); with Optimizer.ProxMu > 0 it adds FedProx's proximal term
// μ/2·‖w − w_global‖². With Trainer.Scaffold the global vector is
// scaffold.Join(x, c), the model joined with the server control, and
// training is SCAFFOLD's (Karimireddy et al. 2020, option II): each step
// follows the drift-corrected gradient g − cᵢ + c, and the update is
// scaffold.Join(Δy, Δc) with the site's next control cᵢ⁺ in Update.Control.
// See package strategy/scaffold for the server side and docs/PRIVACY.md for
// how clipping and noise make up the federation's differential privacy.
package client

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/model"
	"github.com/cloisterfl/cloister/strategy/scaffold"
)

// ExamplesPerWeight is the number of local training examples that count as
// one unit of an update's weight (without DP): w = examples / 1024, a power
// of two so the division is exact.
const ExamplesPerWeight = 1024

// ErrConfig reports an unusable Trainer.
var ErrConfig = errors.New("client: invalid local training settings")

// ErrNonFinite reports an update with a NaN or infinite value.
var ErrNonFinite = errors.New("client: the update is not finite")

// Trainer holds a site's local training settings. The zero value is not
// usable; check it with Validate. A Trainer is a value: it holds no data and
// no state, so one serves many sites and rounds at once.
type Trainer struct {
	Model     model.Spec
	Optimizer model.SGD // local SGD; Optimizer.ProxMu > 0 adds FedProx's term
	Epochs    int       // local epochs per round
	// Scaffold makes global vectors scaffold.Join(x, c) and updates
	// scaffold.Join(Δy, Δc).
	Scaffold bool
}

// Validate reports an error wrapping ErrConfig (and the model's own error
// where there is one) if the settings cannot train.
func (t Trainer) Validate() error {
	if err := t.Model.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := t.Optimizer.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if t.Epochs < 1 {
		return fmt.Errorf("%w: %d local epochs, want at least 1", ErrConfig, t.Epochs)
	}
	if t.Scaffold && t.Optimizer.Cosine {
		return fmt.Errorf("%w: SCAFFOLD's control update assumes a constant local learning rate; turn cosine annealing off", ErrConfig)
	}
	return nil
}

// Dim returns the length of the global vector and of the updates: the
// model's parameter count, twice that under SCAFFOLD.
func (t Trainer) Dim() int {
	if t.Scaffold {
		return 2 * t.Model.NumParams()
	}
	return t.Model.NumParams()
}

// Initial returns the first global vector: a model initialised from rng,
// joined with a zero server control under SCAFFOLD.
func (t Trainer) Initial(rng *rand.Rand) (fl.Vector, error) {
	m, err := model.New(t.Model, rng)
	if err != nil {
		return nil, err
	}
	if t.Scaffold {
		return scaffold.Join(m.Params(), make(fl.Vector, m.NumParams()))
	}
	return m.Params(), nil
}

// Params returns a copy of the model half of a global vector (all of it
// without SCAFFOLD).
func (t Trainer) Params(global fl.Vector) (fl.Vector, error) {
	if !t.Scaffold {
		return global.Clone(), nil
	}
	x, _, err := scaffold.Split(global)
	if err != nil {
		return nil, fmt.Errorf("the global vector is not a SCAFFOLD model and control: %w", err)
	}
	return x, nil
}

// Evaluate returns the metrics of the global vector's model on data.
func (t Trainer) Evaluate(global fl.Vector, data *dataset.Set) (fl.Metrics, error) {
	x, err := t.Params(global)
	if err != nil {
		return fl.Metrics{}, err
	}
	m, err := model.NewFromParams(t.Model, x)
	if err != nil {
		return fl.Metrics{}, err
	}
	return m.Evaluate(data)
}

// Update is a site's update in the making.
type Update struct {
	// Delta is Δ = local − global (scaffold.Join(Δy, Δc) under SCAFFOLD),
	// clipped, noised and scaled by Weight as the steps run.
	Delta fl.Vector
	// Control is SCAFFOLD's next cᵢ, which the site adopts once the round
	// has taken its update; nil without SCAFFOLD.
	Control fl.Vector
	// Loss is the mean training loss over the last local epoch, measured
	// on each batch before its step (as model.SGD.Train reports it).
	Loss     float64
	Examples int     // local training examples
	Scale    float64 // the factor Clip applied (1: none)
	Weight   float64 // the weight Weigh gave Δ (0 before it)
	Capped   bool    // Weigh lowered the weight to keep sums within range
}

// Train trains a copy of the global vector's model on data for t.Epochs
// epochs, drawing the batch order from rng, and returns Δ. control is the
// site's SCAFFOLD control cᵢ (zeros at first) and is ignored without
// SCAFFOLD. The same settings, inputs and rng state give bit-identical
// updates.
func (t Trainer) Train(data *dataset.Set, global, control fl.Vector, rng *rand.Rand) (*Update, error) {
	x, err := t.Params(global)
	if err != nil {
		return nil, err
	}
	m, err := model.NewFromParams(t.Model, x)
	if err != nil {
		return nil, fmt.Errorf("the global model does not fit the local model %s (%d inputs, %d classes): %w",
			t.Model.Kind, t.Model.Inputs, t.Model.Classes, err)
	}
	u := &Update{Examples: data.Len(), Scale: 1}
	if t.Scaffold {
		if u.Delta, u.Control, u.Loss, err = trainScaffold(m, t.Optimizer, data, t.Epochs, global, control, rng); err != nil {
			return nil, fmt.Errorf("training: %w", err)
		}
		return u, nil
	}
	var anchor fl.Vector
	if t.Optimizer.ProxMu > 0 {
		anchor = global
	}
	if u.Loss, err = t.Optimizer.Train(m, data, t.Epochs, anchor, rng); err != nil {
		return nil, fmt.Errorf("training: %w", err)
	}
	u.Delta = m.Params()
	if err := u.Delta.Add(-1, global); err != nil {
		return nil, err
	}
	return u, nil
}

// Clip scales Δ to L2 norm at most c (dp.Clip) and records the factor in
// u.Scale.
func (u *Update) Clip(c float64) error {
	s, err := dp.Clip(u.Delta, c)
	if err != nil {
		return fmt.Errorf("clipping: %w", err)
	}
	u.Scale = s
	return nil
}

// AddNoise adds the site's share of the DP noise to Δ, drawing from r
// (crypto/rand.Reader in production).
func (u *Update) AddNoise(share *dp.Noise, r io.Reader) error {
	if err := share.Add(u.Delta, r); err != nil {
		return fmt.Errorf("noise: %w", err)
	}
	return nil
}

// Weigh scales Δ by its weight w and records w in u.Weight.
//
// Without DP (uniform false), w = Examples/ExamplesPerWeight, so that the
// federation's Σ wΔ / Σ w is the example-weighted mean (FedAvg). With DP
// (uniform true), w = 1 for every site: each update's sensitivity is then C
// and the noise shares add up to σ·C on the sum, as the accountant assumes;
// weighting by examples would scale both.
//
// When maxAbs > 0, the scheme decrypts sums correctly only within ±maxAbs,
// for every coordinate of Σ wΔ and for Σ w itself. Each of the members sites
// therefore caps its own contribution at maxAbs/(2·members) per coordinate:
//
//	w ≤ maxAbs / (2 · members · max(1, max_j |Δ_j|))
//
// so that the sum over all of them stays within maxAbs/2, whatever the
// others send. A capped site (u.Capped) counts for less than its examples:
// the result is still a weighted mean of the updates.
//
// Weigh refuses an update with a NaN or infinite value (ErrNonFinite).
func (u *Update) Weigh(uniform bool, maxAbs float64, members int) error {
	if !u.Delta.Finite() {
		return ErrNonFinite
	}
	w := 1.0
	if !uniform {
		w = float64(u.Examples) / ExamplesPerWeight
	}
	if maxAbs > 0 {
		peak := 1.0
		for _, x := range u.Delta {
			peak = max(peak, math.Abs(x))
		}
		if wmax := maxAbs / (2 * float64(members) * peak); w > wmax {
			w, u.Capped = wmax, true
		}
	}
	u.Delta.Scale(w)
	u.Weight = w
	return nil
}

// Policy is what a site does to its update after training, before it
// protects and sends it.
type Policy struct {
	Clip  float64   // the L2 bound C; 0: no clipping
	Noise *dp.Noise // the site's share of the DP noise; nil: none
	// MaxAbs and Members bound the weight (see Update.Weigh); MaxAbs 0
	// means no bound.
	MaxAbs  float64
	Members int
}

// Private reports whether the policy clips or noises: then every update
// weighs 1.
func (p Policy) Private() bool { return p.Clip > 0 || p.Noise != nil }

// Apply clips u (when p.Clip > 0), adds noise drawn from r (when p.Noise is
// set) and weighs it, in that order.
func (p Policy) Apply(u *Update, r io.Reader) error {
	if p.Clip > 0 {
		if err := u.Clip(p.Clip); err != nil {
			return err
		}
	}
	if p.Noise != nil {
		if err := u.AddNoise(p.Noise, r); err != nil {
			return err
		}
	}
	return u.Weigh(p.Private(), p.MaxAbs, p.Members)
}
