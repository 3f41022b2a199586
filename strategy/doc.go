// Package strategy holds Cloister's server optimizers: the step that turns a
// round's aggregated update into the next global model.
//
// # The server step
//
// Every node computes Δ = local − global. The aggregation mode (mhe, secagg,
// paillier, tee or plain) yields the weighted mean update
//
//	Δ̄ = Σ wᵢΔᵢ / Σ wᵢ
//
// and the round's leader calls [Strategy.Apply] with the current global model
// and Δ̄. Under encryption only the leader ever sees Δ̄ in the clear; the
// optimizer state (the adaptive rules' moments m and v) is serialized with
// [Strategy.MarshalBinary] and sealed with the group key next to the model, so
// the next leader resumes from it with [Strategy.UnmarshalBinary].
//
// When updates are in plaintext (modes plain and tee), [WeightedMean] computes
// Δ̄ from the individual [fl.Update] values. For Byzantine-robust rules
// (median, Krum, …) use package robust instead and pass its output to Apply.
//
// # Strategies
//
//	FedAvg      x ← x + η·Δ̄                         (McMahan et al. 2017)
//	FedAdam     Adam on the pseudo-gradient −Δ̄       (Reddi et al. 2021, Alg. 2)
//	FedYogi     Yogi on the pseudo-gradient −Δ̄       (Reddi et al. 2021, Alg. 2)
//	FedAdagrad  Adagrad on the pseudo-gradient −Δ̄    (Reddi et al. 2021, Alg. 2)
//	SCAFFOLD    FedAvg plus a server control variate (Karimireddy et al. 2020)
//
// The adaptive rules follow Algorithm 2 of Reddi et al.:
//
//	m ← β₁·m + (1−β₁)·Δ̄
//	v ← β₂·v + (1−β₂)·Δ̄²                 (FedAdam)
//	v ← v − (1−β₂)·Δ̄²·sign(v − Δ̄²)       (FedYogi)
//	v ← v + Δ̄²                           (FedAdagrad)
//	x ← x + η·m / (√v + τ)
//
// with no bias correction, m and v starting at zero, and all operations
// element-wise, as in Flower's FedYogi and FedAdagrad (Flower's FedAdam adds
// a bias correction; see below).
//
// SCAFFOLD's global vector is the join (x, c) of the model and the server
// control variate, and its mean update the join (Δ̄y, Δ̄c), so that both
// halves are aggregated as one vector under encryption; package
// [github.com/cloisterfl/cloister/strategy/scaffold] holds the layout and the
// node side.
//
// # Spec syntax
//
// [New] builds a strategy from a short spec, the form a federation manifest
// or a command-line flag carries:
//
//	spec   = name [ ":" args ]
//	args   = number                  shorthand for lr=number
//	       | key "=" number { "," key "=" number }
//	name   = fedavg | fedadam | fedyogi | fedadagrad | scaffold
//
// Keys, their meaning and defaults (the defaults are those of Flower's
// flwr.serverapp.strategy classes):
//
//	key   meaning                        fedavg  fedadam  fedyogi  fedadagrad  scaffold
//	lr    server learning rate η          1       0.1      0.01     0.1         1
//	b1    first-moment decay β₁           –       0.9      0.9      0           –
//	b2    second-moment decay β₂          –       0.99     0.99     –           –
//	tau   adaptivity τ (in √v + τ)        –       1e-3     1e-3     1e-3        –
//	frac  |S|/N, cohort / population      –       –        –        –           1
//
// Examples: "fedavg", "fedavg:0.5", "fedadam:lr=0.01,b1=0.9,b2=0.99,tau=1e-3",
// "fedyogi:tau=1e-2", "scaffold:frac=0.1". Names are case-insensitive; keys are
// not. Unknown or repeated keys, keys a strategy doesn't use, and values
// outside their range are errors wrapping [ErrSpec]. [Strategy.String]
// returns the canonical spec, which New accepts back.
//
// Flower's eta_l (the client learning rate) is a training setting of the
// nodes, not part of the server step, so it does not appear here.
//
// On τ: Flower's current strategies (flwr.serverapp.strategy) default to
// τ=1e-3 for all three; the legacy flwr.server.strategy classes used τ=1e-9
// for FedAdam and FedAdagrad. We take 1e-3: Reddi et al. tune τ over
// {1e-7, …, 1e-1} and report that about 1e-3 works best on most tasks, and
// with a tiny τ every coordinate moves by about η in the first round
// (m/√v = (1−β₁)/√(1−β₂) ≈ 1 whatever the size of Δ̄), noise included. Pass
// tau=1e-9 to reproduce the legacy behaviour.
//
// On bias correction: Reddi et al.'s Algorithm 2 has none, and neither do
// our three rules. Flower's current FedAdam (but not FedYogi or FedAdagrad)
// scales η by √(1−β₂ᵗ)/(1−β₁ᵗ); expect its first rounds to differ.
//
// # Errors
//
// Apply and WeightedMean never return NaN or ±Inf. Inputs of the wrong length
// wrap [fl.ErrDimension]; NaN or infinite inputs, and steps that would
// overflow, wrap [ErrNonFinite]; WeightedMean with no positive weight returns
// [ErrZeroWeight]. A failed Apply leaves the optimizer state as it was.
// State bytes that are malformed or were written by another configuration
// wrap [ErrState].
//
// # References
//
//   - H. B. McMahan et al., "Communication-Efficient Learning of Deep Networks
//     from Decentralized Data", AISTATS 2017.
//   - S. J. Reddi et al., "Adaptive Federated Optimization", ICLR 2021,
//     https://arxiv.org/abs/2003.00295.
//   - S. P. Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging for
//     Federated Learning", ICML 2020, https://arxiv.org/abs/1910.06378.
//   - Flower strategies: https://flower.ai/docs/framework/ref-api/flwr.serverapp.strategy.html
package strategy
