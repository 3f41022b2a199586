// Package dp is Cloister's differential privacy: clipping of updates, exact
// discrete Gaussian noise on a fixed-point grid, distributed noise shares, a
// Rényi differential privacy (RDP) accountant for the sampled Gaussian
// mechanism, calibration of the noise, and privacy budgets.
//
// It is a pure core: no network, disk, clock or global randomness. Every
// random choice is read from an [io.Reader] that the caller passes in. In
// production that reader must be crypto/rand.Reader; tests pass a seeded
// reader (math/rand/v2's ChaCha8, for instance) to be reproducible.
//
// # What is protected
//
// The unit of privacy is one site's contribution to a round: its whole model
// update Δ. Two federations that differ in one site's data produce
// aggregates whose distributions are close, in the sense of (ε, δ)-DP. Each
// node clips Δ to L2 norm C, adds its share of the noise, and only the sum of
// the shares over the cohort carries the full noise; no party ever sees a
// noised individual update in the clear, since updates travel encrypted or
// masked.
//
// # Clipping
//
// [Clip] scales an update in place to norm at most C and returns the factor.
// It rejects NaN and infinite elements rather than propagate them, because a
// NaN would poison the encrypted sum of every site.
//
// # Noise on a grid
//
// Floating-point samplers of continuous distributions are not safe for
// privacy. The set of doubles a Laplace or Gaussian sampler can output
// depends on the value it is added to, and an attacker who sees the output
// can tell neighbouring inputs apart, sometimes with certainty (Mironov 2012);
// the attacks extend to the Gaussian samplers of deployed libraries, and to
// the timing of their rejection loops (Jin et al. 2022). Cloister therefore
// adds integer noise on a fixed-point grid:
//
//  1. Each element x of the clipped update is scaled to the grid of
//     resolution 2^-bits and rounded at random to one of its two
//     neighbouring grid points, up with probability equal to the fractional
//     part, so the rounding is unbiased.
//  2. An integer drawn from the discrete Gaussian N_Z(0, σ_g²), with
//     σ_g = std·2^bits, is added, and the result scaled back. The element is
//     now an exact multiple of 2^-bits.
//
// The discrete Gaussian is sampled exactly with the algorithm of Canonne,
// Kamath and Steinke (2020): a discrete Laplace candidate accepted with
// probability exp(−(|Y| − σ²/t)²/(2σ²)), every Bernoulli(exp(−γ)) decided by
// comparisons of uniform integers with γ a ratio of integers. [DiscreteGaussian]
// holds σ² as a rational rounded up from the requested σ, so the noise is
// never less than asked for. It costs about 150–400 ns a sample on one core,
// depending on the reader and the machine's load, so noising a million
// coordinates takes well under a second (BenchmarkDiscreteGaussian,
// BenchmarkNoiseAdd; BenchmarkGaussianFloat is the unsafe floating-point
// baseline, about 10 ns).
//
// For an integer-valued query of L2 sensitivity Δ, the discrete Gaussian
// gives the same guarantee as the continuous one: ½(Δ/σ)²-concentrated DP,
// hence RDP α·Δ²/(2σ²) at every order α (CKS20). The grid only changes Δ:
// rounding moves each element by less than one step, so an update of norm at
// most C has norm below C + √d·2^-bits after it ([QuantizedSensitivity]).
// Pick bits so that √d·2^-bits is small next to C: for d = 10^6 and C = 1,
// the default 20 bits add 0.1% to the sensitivity. Finer grids cost nothing
// in speed, but σ_g must stay within [MinGridSigma, MaxSigma] and elements
// below 2^(51−bits) in magnitude ([Noise]).
//
// # Distributed noise
//
// No single party may know the noise, so each node adds a share. If the
// federation manifest guarantees that at least k honest nodes are in every
// aggregate (the minimum cohort, less the nodes that may collude), each adds
// standard deviation σ·C/√k ([NoiseShare]), and the sum over any k honest
// nodes carries variance at least (σC)². Dishonest nodes may add nothing;
// honest nodes beyond k only add more.
//
// A sum of discrete Gaussians is not exactly a discrete Gaussian. Kairouz,
// Liu and Steinke (2021) bound the gap: with τ = 10·Σ_{j=1}^{k−1}
// exp(−2π²σ_g²·j/(j+1)), the sum satisfies RDP α/2·(Δ/(√k·σ_g) + τ√d)² for
// σ_g ≥ 1/2. [DistributedMultiplier] turns this into a noise multiplier z ≤ σ
// for the accountant, counting both τ (negligible once σ_g is a few grid
// steps) and the rounding's √d·2^-bits. Account with z, not σ: that is the
// conservative choice this package makes.
//
// # Accounting
//
// An [Accountant] tracks RDP at a list of orders ([DefaultOrders]: the union
// of Opacus' and TF-Privacy's default grids, 1.1 to 10.9 by 0.1, 1.25, 1.75,
// 2.25, 11 to 63, 128, 256 and 512). [RDP] gives the RDP of one step of the
// sampled Gaussian mechanism with Poisson sampling rate q and noise
// multiplier σ, following Mironov, Talwar and Zhang (2019): the exact
// binomial expansion for integer orders, their convergent series for
// fractional ones. Rounds compose by adding RDP order by order, so rounds
// with different q, σ and step counts mix freely ([Accountant.Compose]).
//
// [Accountant.Epsilon] converts RDP to (ε, δ)-DP with the bound of Balle,
// Barthe, Gaboardi, Hsu and Sato (2020), ε = rdp + log1p(−1/α) − (log δ +
// log α)/(α − 1), minimized over the orders; [Accountant.EpsilonClassic] uses
// the original ε = rdp + log(1/δ)/(α − 1) of Mironov (2017), which published
// DP-SGD figures before 2020 use. Both return the optimal order; if it is the
// largest or smallest order tracked, a wider grid may give a smaller ε.
//
// The accountant reproduces published figures to within 1% (see the tests):
// the TF-Privacy MNIST tutorial (q = 256/60000, σ = 1.1, 60 epochs, δ = 1e-5)
// gives ε = 3.01 with the classic conversion, and 2.60 with the improved one.
//
// Amplification by sampling (q < 1) holds only if the cohort is drawn at
// random and the draw stays secret from the adversary. When the coordinator,
// which Cloister does not trust, picks the cohort, account with q = 1.
//
// # Calibration
//
// [NoiseFor] finds the smallest σ that meets a target (ε, δ) for a given
// sampling rate and number of steps, by bisection; [StepsFor] finds how many
// steps a σ affords. The command `cloister privacy noise --epsilon E
// --sample-rate Q --steps T --delta D` prints NoiseFor's answer.
//
// # Budgets
//
// A [Budget] holds the federation's (ε, δ) and what has been spent. Call
// [Budget.Check] before a round and [Budget.Spend] after it; both return a
// [*BudgetExceededError] (matching [ErrBudgetExceeded]) with the ε spent, the
// ε the round leads to and the limit. Spend records the round even then: the
// privacy loss has happened. [MicroEpsilon] expresses ε as an integer number
// of millionths, rounded up, for the audit log. Budgets and accountants
// serialize with MarshalBinary, so coordinator and nodes can persist them.
//
// # Caveats
//
//   - The running time of the sampler depends on the values it draws, as
//     every exact rejection sampler's does. Over a vector of many coordinates
//     the total time averages out, but it is not constant-time; nodes noise
//     their updates inside the enclave, before encryption.
//   - The subsampled-Gaussian analysis is proved for the continuous Gaussian;
//     applying it with q < 1 to the distributed discrete Gaussian (through
//     [DistributedMultiplier]'s z) is the usual approximation. With q = 1 the
//     guarantee is a theorem.
//   - Randomized rounding is unbiased to within 2^-53 per element; its
//     randomness affects utility only, never the privacy guarantee.
//
// # References
//
//   - C. Canonne, G. Kamath, T. Steinke. The Discrete Gaussian for
//     Differential Privacy. NeurIPS 2020. [arXiv:2004.00010]
//   - P. Kairouz, Z. Liu, T. Steinke. The Distributed Discrete Gaussian
//     Mechanism for Federated Learning with Secure Aggregation. ICML 2021.
//     [arXiv:2102.06387]
//   - I. Mironov. On Significance of the Least Significant Bits for
//     Differential Privacy. CCS 2012.
//   - J. Jin, E. McMurtry, B. Rubinstein, O. Ohrimenko. Are We There Yet?
//     Timing and Floating-Point Attacks on Differential Privacy Systems.
//     IEEE S&P 2022. [arXiv:2112.05307]
//   - I. Mironov. Rényi Differential Privacy. CSF 2017. [arXiv:1702.07476]
//   - I. Mironov, K. Talwar, L. Zhang. Rényi Differential Privacy of the
//     Sampled Gaussian Mechanism. 2019. [arXiv:1908.10530]
//   - B. Balle, G. Barthe, M. Gaboardi, J. Hsu, T. Sato. Hypothesis Testing
//     Interpretations and Rényi Differential Privacy. AISTATS 2020.
//     [arXiv:1905.09982]
//   - M. Abadi et al. Deep Learning with Differential Privacy. CCS 2016.
//     [arXiv:1607.00133]
//
// [arXiv:2004.00010]: https://arxiv.org/abs/2004.00010
// [arXiv:2102.06387]: https://arxiv.org/abs/2102.06387
// [arXiv:2112.05307]: https://arxiv.org/abs/2112.05307
// [arXiv:1702.07476]: https://arxiv.org/abs/1702.07476
// [arXiv:1908.10530]: https://arxiv.org/abs/1908.10530
// [arXiv:1905.09982]: https://arxiv.org/abs/1905.09982
// [arXiv:1607.00133]: https://arxiv.org/abs/1607.00133
package dp
