// Package mhe is Cloister's default aggregation mode: threshold multiparty
// homomorphic encryption (RLWE, CKKS-style fixed point) on Lattigo v6's
// multiparty package. It implements [protect.Scheme], [protect.Party],
// [protect.Helper] and [protect.Target].
//
// Each node encrypts its update under its own additive share s_i of a
// secret no one holds, as one polynomial c0 = −a·s_i + e + m with a common
// polynomial a derived from the round (wire version 2); the coordinator
// adds them, which gives a ciphertext (Σc0, a) under s_S = Σ_{i∈S} s_i for
// the included set S; any t members, holding Shamir shares of every s_j,
// turn the sum into a ciphertext under the federation's group key (the
// [protect.Target]), adding flooding noise so that what is published says
// nothing about the secret keys beyond the sum.
//
// # Getting started
//
//	s, err := mhe.New(mhe.Agg128)
//	party, err := s.NewParty(session, self, crypto/rand.Reader)
//	helper, err := s.NewHelper(session)
//
// then drive the steps of package protect: Announce, Deal, Setup, Accept
// once per session; Protect, Aggregate, Reveal, Open and Target.Decrypt per
// round. The example in example_test.go runs a whole session in one
// process.
//
// # Presets
//
// Parameters are named, immutable, checked values ([Agg128] in production,
// [InsecureTest] for fast tests). [NewPresetFromLiteral] checks a literal
// against an allow-list (HE standard, 128 bits: log2 Q ≤ 218, 438, 881 for
// N = 2^13, 2^14, 2^15; uniform ternary secrets; σ = 3.2) and refuses
// anything else unless the literal is explicitly insecure. A preset fixes
// the range and precision contract, [protect.Capacity]: MaxAbs bounds every
// coordinate of a sum (and the summed weight), MaxError the absolute error
// of every decrypted coordinate for up to MaxParties members.
//
// # The protocol, step by step
//
//   - NewParty samples the party's secret key share s_i and a nonce from the
//     injected randomness.
//   - Announce publishes the nonce. The common reference string is
//     H(all nonces in sorted member order ‖ session ID): no member chooses
//     the public polynomial a of the collective key.
//   - Deal returns the party's collective-key share −a·s_i + e_i
//     (multiparty.PublicKeyGenProtocol.GenShare) and one Shamir share of
//     s_i per member (multiparty.Thresholdizer, threshold t).
//   - Helper.Setup relays every member's key share. Accept recomputes the
//     collective key pk = (Σ(−a·s_i + e_i), a) itself, checks that its own
//     share is there unchanged, and keeps the Shamir share P_j(α_i) each
//     dealer j dealt it, per dealer.
//   - Protect puts v ‖ weight in the coefficients of ⌈(d+1)/N⌉ plaintexts
//     at scale Δ and encrypts each under s_i with the round's common
//     polynomial a (a PRG on H(session ‖ round ‖ chunk)): one polynomial
//     c0 = NTT(m + e) − a·s_i per ciphertext, one NTT. A party protects at
//     most once per round (protect.ErrProtected).
//   - Helper.Aggregate checks every update and adds them: Σc0.
//   - Reveal records (round, digest) in the ledger, sums its shares
//     P_j(α_i) of the included members j ∈ S into a share of s_S, turns it
//     into an additive share for the fixed revealer set
//     (multiparty.Combiner), and returns its public-key-switch share of
//     (Σc0, a) towards the target key with flooding noise of σ =
//     Preset.FloodSigma() (multiparty.PublicKeySwitchProtocol.GenShare, the
//     flooding drawn by floodSampler: Lattigo's sampler is a comb at that σ).
//     Precompute makes the share's randomness and flooding ahead, off the
//     round's critical path: Reveal then adds s·a.
//   - Each revealer rescales its share to the first prime; Helper.Open
//     sums exactly t shares (AggregateShares), rescales Σc0 the same way
//     and adds them (KeySwitch at level 0).
//   - Target.Decrypt decrypts and decodes with DecodePublic at DecodePrec
//     fractional bits.
//
// # Security notes
//
//   - Deal's Private payloads are secret key material in the clear. The
//     runtime MUST seal each one to its recipient (HPKE) before it leaves
//     the node. Party.MarshalBinary and Target.MarshalBinary are secrets
//     too: seal them at rest.
//   - Reveal refuses a second reveal in a round (the ledger). Lattigo's
//     threshold protocols are insecure when a party answers twice for the
//     same ciphertext or for chosen ciphertexts with varying revealer sets
//     (Lattigo SECURITY.md, "On the insecurity of retries"). A revealer
//     should also check that the aggregate is the sum of the signed
//     uploads: Helper.Aggregate is deterministic, so a node holding them can
//     recompute it.
//   - Flooding makes each revealed coefficient statistically close (see
//     Preset.FloodSecurity and README.md) to a value that depends on the
//     secret key only through the sum, against the target holder, the
//     coordinator and t−1 revealers together.
//   - One upload per round: two uploads of a member under one round's a
//     disclose the difference of the updates. Protect refuses a second one
//     (the round is in Party.MarshalBinary), and the round engine never
//     asks for one, also across restarts (README.md, "One-polynomial
//     uploads").
//   - Randomness: the secret key shares, the Shamir polynomials, the target
//     secret and the nonces come from the injected io.Reader (through
//     Lattigo's keyed BLAKE2b PRNG); an upload's noise from AES-256-CTR
//     keyed from it. Lattigo v6.2.0 offers no way to inject
//     the PRNG of its encryptor, collective-key-share and key-switch
//     samplers: their ephemeral noise comes from Lattigo's own
//     crypto/rand-backed PRNG.
//   - Nothing reachable from the network panics. Decoders check the whole
//     header and every declared length against the exact sizes the preset
//     implies before reading a coefficient, reject residues ≥ q, and never
//     pass network bytes to Lattigo's UnmarshalBinary (which trusts length
//     prefixes: 9 bytes can make it die of an unrecoverable OOM).
//
// # Errors
//
// Malformed bytes give a [*FormatError] (wrapping protect.ErrMalformed);
// well-formed payloads for other parameters, sessions, rounds, kinds or
// senders give a [*ParamsMismatchError] (wrapping protect.ErrForeign). The
// other sentinels of package protect are wrapped with context.
package mhe
