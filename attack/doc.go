// Package attack simulates Byzantine nodes: the data-poisoning and
// model-poisoning attacks that robust aggregation rules (package robust) and
// norm bounds (package dp's clipping) are measured against in `cloister
// simulate`.
//
// It is a research tool. Nothing in a real federation calls it; the
// simulation (package simulation) decides which nodes are malicious and asks
// an [Attack] what they train on and what they send.
//
// # How an attack acts
//
// A malicious node acts at two points of a round:
//
//  1. Before training, [Attack.Poison] may replace its local data set (label
//     flipping, backdoor triggers). The node then trains honestly on it.
//  2. After training, [Attack.Forge] turns the updates the malicious nodes
//     computed into the updates they send. Omniscient attacks (ALIE, IPM) read
//     the honest nodes' updates of the same round, as their papers assume:
//     the strongest attacker colludes and knows everything but the
//     aggregation's randomness.
//
// The updates are Δ = local − global, one flat vector per node. Clipping
// to a norm bound, when the federation enforces one in attested code,
// happens after Forge: an attacker cannot skip it.
//
// # Attacks
//
//	spec                      what the attackers do                                 reference
//	none                      nothing: they are honest
//	label-flip                train on labels y → C−1−y                              Biggio et al. 2012; Fang et al. 2020
//	sign-flip:scale=S         send −S·Δ (S = 4 by default)                           Li et al. 2019 (RSA)
//	gaussian:scale=S          send a random direction with norm S·‖Δ‖ (S = 1)        Blanchard et al. 2017
//	scale:factor=S            send S·Δ (S = n, the cohort size, by default)          Bhagoji et al. 2019
//	alie:z=Z                  send μ − Z·σ of the honest updates, per coordinate      Baruch et al. 2019
//	ipm:eps=E                 send −E·mean of the honest updates (E = 0.1)           Xie et al. 2020
//	backdoor:target=T,frac=P, stamp a trigger on a fraction P of the local data,       Bagdasaryan et al. 2020
//	  boost=B,size=K,value=V  relabel it T, train, and send B·Δ (model replacement)
//
// A bare number after the colon sets the main key: "sign-flip:10",
// "scale:25", "alie:1.5", "ipm:100", "backdoor:7" (the target).
//
// A little is enough (ALIE) picks, when Z is not given, the largest Z that
// keeps the malicious value inside the spread of the majority. With n nodes
// of which f are malicious, s = ⌊n/2 + 1⌋ − f honest nodes must be won over,
// and
//
//	Z = Φ⁻¹((n − s)/n)
//
// where Φ is the standard normal CDF (Baruch et al., Algorithm 3). For n = 25
// and f = 5 that is Φ⁻¹(0.68) ≈ 0.47. σ is the sample standard deviation of
// each coordinate over the honest updates.
//
// Inner product manipulation (IPM) sends −ε times the honest mean, so that the
// aggregate's inner product with the true update turns negative. A small ε
// (0.1) keeps the malicious updates close to the honest ones and defeats
// Krum-like selection; a large one (100) defeats the mean and, with enough
// attackers, the median (Xie et al. 2020).
//
// # Backdoor
//
// Backdoor stamps a K×K square of value V (white, 1, for pixels scaled to
// [0, 1]) in the bottom-right corner of square images (Features must be a
// square number), on a random fraction P of the attacker's examples, and
// relabels them T. The attacker trains on the mix of clean and stamped
// examples, so its model keeps the main task, then boosts its update by B so
// that, averaged with the others, it replaces the global model (Bagdasaryan et
// al. 2020, "model replacement" with γ = n/η; B = n for FedAvg with server
// learning rate η = 1 and equal weights). [Backdoor.Triggered] builds the test
// set for the backdoor accuracy: every test example whose label is not T,
// stamped and labelled T, so the model's accuracy on it is the fraction of
// triggered inputs classified as the target.
//
// # Randomness and purity
//
// The package does no I/O and draws every random choice from the *rand.Rand
// its caller passes in. Poison returns a new data set and Forge new vectors;
// their inputs are never modified.
//
// # References
//
//   - B. Biggio, B. Nelson, P. Laskov. Poisoning Attacks against Support
//     Vector Machines. ICML 2012.
//   - M. Fang, X. Cao, J. Jia, N. Gong. Local Model Poisoning Attacks to
//     Byzantine-Robust Federated Learning. USENIX Security 2020.
//     arXiv:1911.11815
//   - L. Li, W. Xu, T. Chen, G. B. Giannakis, Q. Ling. RSA: Byzantine-Robust
//     Stochastic Aggregation Methods for Distributed Learning from
//     Heterogeneous Datasets. AAAI 2019. arXiv:1811.03761
//   - P. Blanchard, E. M. El Mhamdi, R. Guerraoui, J. Stainer. Machine
//     Learning with Adversaries: Byzantine Tolerant Gradient Descent. NeurIPS
//     2017.
//   - A. N. Bhagoji, S. Chakraborty, P. Mittal, S. Calo. Analyzing Federated
//     Learning through an Adversarial Lens. ICML 2019. arXiv:1811.12470
//   - G. Baruch, M. Baruch, Y. Goldberg. A Little Is Enough: Circumventing
//     Defenses For Distributed Learning. NeurIPS 2019. arXiv:1902.06156
//   - C. Xie, O. Koyejo, I. Gupta. Fall of Empires: Breaking Byzantine-Tolerant
//     SGD by Inner Product Manipulation. UAI 2020. arXiv:1903.03936
//   - E. Bagdasaryan, A. Veit, Y. Hua, D. Estrin, V. Shmatikov. How To Backdoor
//     Federated Learning. AISTATS 2020. arXiv:1807.00459
//   - Z. Sun, P. Kairouz, A. T. Suresh, H. B. McMahan. Can You Really Backdoor
//     Federated Learning? 2019. arXiv:1911.07963 (norm bounding as a defence)
//
// [arXiv:1911.11815]: https://arxiv.org/abs/1911.11815
// [arXiv:1811.03761]: https://arxiv.org/abs/1811.03761
// [arXiv:1811.12470]: https://arxiv.org/abs/1811.12470
// [arXiv:1902.06156]: https://arxiv.org/abs/1902.06156
// [arXiv:1903.03936]: https://arxiv.org/abs/1903.03936
// [arXiv:1807.00459]: https://arxiv.org/abs/1807.00459
// [arXiv:1911.07963]: https://arxiv.org/abs/1911.07963
package attack
