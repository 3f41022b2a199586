// Package compress shrinks the updates that nodes send in the `plain`
// aggregation mode, and maps updates to fixed-point integers for the modes
// that sum integers (`secagg`, `paillier`).
//
// # Schemes
//
// Parse reads the scheme a flag or a manifest names and [Scheme.NewEncoder]
// gives each node its own [Encoder]. An encoder turns an update into a
// [Payload], the message on the wire; the receiver decodes the payload back
// into a vector. Every payload has a binary form (MarshalBinary) and
// [Payload.WireSize] is its exact length, which is what Cloister reports as
// bytes on the wire.
//
//	spec        payload     bytes for d values        decoded value
//	none        Dense       5 + 4d                    the update rounded to float32
//	topk:F      Sparse      9 + 8k, k = ⌈F·d⌉          the k largest |values| after error feedback
//	q8          Quantized   9 + d + 8⌈d/B⌉, B = 256   unbiased 8-bit stochastic quantization
//	q8:B        Quantized   as above with buckets of B values
//
// The dense float32 message, 4d bytes of values, is the baseline the
// others are compared with: top-k at F = 0.01 sends about 2% of it, q8 about
// 26%.
//
// # Top-k with error feedback
//
// TopK sends only the k = ⌈F·d⌉ coordinates of largest magnitude (Aji and
// Heafield 2017; Lin et al. 2018). Alone this is biased: small coordinates
// are never sent. With error feedback (Stich, Cordonnier and Jaggi 2018;
// Karimireddy et al. 2019) each node keeps the residual e of what it did not
// send and adds it to its next update:
//
//	a ← e + Δ          (Δ is this round's update)
//	s ← top_k(a)       (sent; values rounded to float32)
//	e ← a − s          (kept, including the float32 rounding error)
//
// so every coordinate is eventually sent, and the sum of what was sent plus
// the residual always equals the sum of the updates. The residual is state
// of the node; a TopK encoder is not safe for concurrent use.
//
// # 8-bit stochastic quantization
//
// Q8 splits the vector into buckets of B values; for each bucket it sends a
// lower end lo and a step s as float32, and for each value x a code
// c in [0, 255] rounded at random between its neighbours:
//
//	t = (x − lo)/s,    c = ⌊t⌋ + Bernoulli(t − ⌊t⌋),    x̂ = lo + c·s
//
// so E[x̂] = x (unbiased, as in QSGD, Alistarh et al. 2017, and TernGrad-style
// stochastic rounding). lo is rounded down and s up to float32, so that every
// x lies in [lo, lo + 255s] and no code is clamped. The error of one value is
// at most s = (max − min)/255 of its bucket, and its variance at most s²/4.
//
// # Fixed-point quantization for integer aggregation
//
// Secure aggregation and Paillier add integers modulo 2^bits. A [Quantizer]
// maps x to the integer R(x·scale) in two's complement modulo 2^bits, where R
// rounds at random (unbiased) when given a *rand.Rand and to nearest
// otherwise. It is built for a number of summands n and refuses, in Encode,
// any value the sum of n encodings could overflow with:
//
//	|x| ≤ MaxAbs = ((2^(bits−1) − 1)/n − 1) / scale
//
// since each encoding has magnitude at most |x|·scale + 1 and their sum must
// stay below 2^(bits−1) to decode with the right sign (MaxAbs·scale is also
// capped at 2⁵², where float64 stops holding every integer). Decode of a
// modular sum of at most n encodings then recovers the integer Σ R(xᵢ·scale)
// exactly and returns it divided by scale (exact in float64 while the sum is
// below 2⁵³). For example, 32 bits, scale 2¹⁶ and 100 summands give MaxAbs ≈
// 327.7; 64 bits, scale 2²⁴ and 10⁴ summands give MaxAbs ≈ 5.5·10⁷ (the
// 2⁵² cap). For clipped updates every element is at most the clipping norm
// C, so a Quantizer with MaxAbs ≥ C accepts every clipped update.
//
// # Randomness
//
// The package is pure: every random choice is read from the *rand.Rand the
// caller passes in. Quantization randomness affects accuracy only, never
// privacy (differential privacy noise is added before, by package dp).
//
// # References
//
//   - A. F. Aji, K. Heafield. Sparse Communication for Distributed Gradient
//     Descent. EMNLP 2017. arXiv:1704.05021
//   - Y. Lin, S. Han, H. Mao, Y. Wang, W. Dally. Deep Gradient Compression.
//     ICLR 2018. arXiv:1712.01887
//   - S. U. Stich, J.-B. Cordonnier, M. Jaggi. Sparsified SGD with Memory.
//     NeurIPS 2018. arXiv:1809.07599
//   - S. P. Karimireddy, Q. Rebjock, S. U. Stich, M. Jaggi. Error Feedback
//     Fixes SignSGD and other Gradient Compression Schemes. ICML 2019.
//     arXiv:1901.09847
//   - D. Alistarh, D. Grubic, J. Li, R. Tomioka, M. Vojnovic. QSGD:
//     Communication-Efficient SGD via Gradient Quantization and Encoding.
//     NeurIPS 2017. arXiv:1610.02132
//   - K. Bonawitz et al. Practical Secure Aggregation for Privacy-Preserving
//     Machine Learning. CCS 2017 (fixed-point encoding of updates).
//
// [arXiv:1704.05021]: https://arxiv.org/abs/1704.05021
// [arXiv:1712.01887]: https://arxiv.org/abs/1712.01887
// [arXiv:1809.07599]: https://arxiv.org/abs/1809.07599
// [arXiv:1901.09847]: https://arxiv.org/abs/1901.09847
// [arXiv:1610.02132]: https://arxiv.org/abs/1610.02132
package compress
