// Package robust holds Cloister's plaintext aggregation rules: the mean and
// the Byzantine-robust rules that bound what a few malicious nodes can do to
// the model.
//
// Robust rules need every update in the clear, so of the aggregation modes
// that exist they run only in `plain` (the federation manifest's rule,
// applied by package protect/plain) and in `cloister simulate`. Under `mhe`
// and `secagg` the defence is the norm bound enforced on the node instead.
//
// # Rules
//
//	rule           constructor        feasible when        reference
//	Mean           NewMean            any n                FedAvg (McMahan et al. 2017)
//	FedMedian      NewMedian          2f < n               Yin et al. 2018
//	FedTrimmedAvg  NewTrimmedMean     f ≤ βn, β < 1/2      Yin et al. 2018
//	Krum           NewKrum            2f + 2 < n           Blanchard et al. 2017
//	MultiKrum      NewMultiKrum       2f + 2 < n, m ≤ n−f  Blanchard et al. 2017
//	Bulyan         NewBulyan          4f + 3 ≤ n           El Mhamdi et al. 2018
//	CenteredClip   NewCenteredClip    2f < n               Karimireddy et al. 2021
//
// n is the number of updates and f the number of Byzantine (arbitrarily
// malicious) updates the rule must withstand. Every constructor takes the n
// it expects and rejects an infeasible (n, f) with an [*InfeasibleError]
// (which matches [ErrInfeasible]). Aggregate accepts any number of updates
// for which the rule is still feasible with the same f, so a round that lost
// a node or two still aggregates, and refuses the others the same way.
//
// FedMedian and FedTrimmedAvg work coordinate by coordinate; FedTrimmedAvg
// drops the ⌊βn⌋ largest and smallest values of each coordinate and averages
// the rest. Krum returns the update whose n−f−2 nearest neighbours are
// closest (sum of squared distances); MultiKrum averages the m best by that
// score. Bulyan picks θ = n−2f updates by repeated Krum, then averages, for
// each coordinate, the β = θ−2f selected values closest to their median.
// CenteredClip starts from a reference v and repeats L times
//
//	v ← v + (1/n) Σ (xᵢ − v)·min(1, τ/‖xᵢ − v‖)
//
// # Non-finite and huge values
//
// A NaN or ±Inf anywhere in an update marks the whole update as malformed.
// Mean, which is not robust, refuses such input with a [*NonFiniteError]
// naming the updates. Every other rule treats malformed updates as Byzantine:
// it drops them before aggregating and counts them against f, so it runs on
// the n−k remaining updates with f−k attackers (each feasibility condition
// above still holds). A non-finite update is therefore never selected by the
// Krum family and never contributes a coordinate to a median or trimmed mean.
// If more than f updates are malformed, Aggregate returns a *NonFiniteError
// rather than guess.
//
// Finite but huge values (1e308) are legal and never produce NaN or Inf:
// distances are computed on inputs scaled by a power of two (exact), and
// means are convex combinations computed at half scale, so an output
// coordinate always lies between the smallest and largest input values.
//
// Every rule returns a new vector, leaves its inputs alone, and is
// deterministic: ties are broken by the lower update index.
//
// # Specs
//
// [Parse] builds a rule from a short spec, the form a manifest or a flag
// carries, for a cohort of n updates:
//
//	spec = name [ ":" args ]
//	args = number                        shorthand for the rule's main key
//	     | key "=" number { "," key "=" number }
//
//	name       main key  other keys  meaning
//	mean       –         –
//	median     f         –           f: Byzantine updates tolerated
//	trimmed    beta      f           beta: fraction trimmed per side (default 0.2)
//	krum       f         –
//	multikrum  m         f           m: updates averaged (default n−f)
//	bulyan     f         –
//	cclip      tau       f, iters    tau: clipping radius (default 0: the median
//	                                 distance to v, each iteration); iters: L
//	                                 (default 3, at most 100)
//
// When f is not given it defaults to the largest value the rule tolerates for
// n (for trimmed, ⌊beta·n⌋), so a bare "krum" is as robust as Krum can be.
// Examples: "median", "trimmed:0.1", "trimmed:beta=0.3,f=2", "krum:f=2",
// "multikrum:m=5,f=2", "bulyan", "cclip:tau=1,iters=1".
//
// # Weights
//
// Mean and MultiKrum also implement [Weighted]: they average with weights
// (example counts, as in FedAvg). Weights are claims made by the nodes; a
// robust rule that honours them is only as robust as the weights are honest,
// so cap them or leave them out when nodes are not trusted.
//
// # References
//
//   - P. Blanchard, E. M. El Mhamdi, R. Guerraoui, J. Stainer, "Machine
//     Learning with Adversaries: Byzantine Tolerant Gradient Descent",
//     NeurIPS 2017.
//   - E. M. El Mhamdi, R. Guerraoui, S. Rouault, "The Hidden Vulnerability of
//     Distributed Learning in Byzantium", ICML 2018,
//     https://arxiv.org/abs/1802.07927.
//   - D. Yin, Y. Chen, K. Ramchandran, P. Bartlett, "Byzantine-Robust
//     Distributed Learning: Towards Optimal Statistical Rates", ICML 2018.
//   - S. P. Karimireddy, L. He, M. Jaggi, "Learning from History for
//     Byzantine Robust Optimization", ICML 2021,
//     https://arxiv.org/abs/2012.10333.
//   - Flower strategies: https://flower.ai/docs/framework/ref-api/flwr.serverapp.strategy.html
package robust
