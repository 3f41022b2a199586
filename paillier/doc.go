// Package paillier is threshold Paillier with packed plaintexts, and the
// aggregation mode "paillier" built on it.
//
// # The cryptosystem
//
// [PublicKey] is Paillier with g = n+1: Enc(m; r) = (1 + m·n)·r^n mod n²,
// and the product of two ciphertexts encrypts the sum of their plaintexts
// mod n. [Deal] splits the decryption key t-of-l as in Damgård–Jurik
// (s = 1) after Shoup: n = pq of safe primes p = 2p'+1 and q = 2q'+1
// ([SafePrime]), d ≡ 0 mod p'q' and d ≡ 1 mod n, shared with a random
// polynomial of degree t−1 over Z_{n·p'q'}. A party's decryption share is
// c^(2Δs_i) mod n² with Δ = l! ([KeyShare.Decrypt]); any t of them combine
// with Lagrange coefficients in the exponent, scaled by Δ to stay
// integers ([ThresholdKey.Combine]). Fewer than t reveal nothing.
//
// There are no zero-knowledge proofs of correct decryption. Instead the
// combiner checks the plaintext's range: a packed sum leaves its top
// CheckBits clear and every slot within its bound, which a plaintext
// spoiled by a wrong share does with probability about 2^-60 ([Packing]).
// A wrong share is detected, not attributed.
//
// All arithmetic is math/big (not constant time). The key generation,
// the dealing and the share computations read randomness only from the
// io.Reader they are given.
//
// # Packing
//
// A 2048-bit plaintext holds 64 values of 31 bits ([P2048]): each value x
// is carried as round(x·2^19), as a balanced digit, so the sum of many
// packed plaintexts is the packed sum, provided no digit's sum leaves
// ±2^30. Protect refuses values above MaxAbs/n (n the members), so that
// the sum of all members cannot. One 512-byte ciphertext then carries 64
// values: 8 bytes per value, against 512 unpacked.
//
// # The mode
//
// [Scheme] implements [protect.Scheme]:
//
//   - Setup: the first member in sorted order is the dealer. In Deal it
//     generates the key from its random source, splits it into one share
//     per member, sends each share as that member's private dealing (which
//     the runtime seals end to end, HPKE) and erases the key; the modulus
//     goes into its public dealing, bound to the transcript of all
//     announcements. Helper.Setup checks that only the dealer dealt a key
//     and broadcasts the modulus; Accept checks the share against it.
//     The dealer is trusted to erase the key: it runs the same attested
//     code as every member (see SECURITY.md).
//   - Protect packs the vector and the weight and encrypts each plaintext.
//     The update carries the modulus, so that the coordinator's helper,
//     which keeps no state, can multiply.
//   - Aggregate multiplies the ciphertexts modulo n².
//   - Reveal computes the party's decryption share of each ciphertext and
//     seals them to the target, the federation's group key (ephemeral
//     X25519, HKDF-SHA256, AES-256-GCM, bound to the group, round,
//     revealer, aggregate digest, revealer set and target). The
//     coordinator relays sealed shares it cannot combine: it stays blind.
//   - Target.Decrypt opens the t boxes, combines, checks and unpacks.
//
// # Formats
//
// All integers are big-endian; every payload starts with a 6-byte header:
// the magic "CLPA", the version 1 and a kind byte. The group, transcript,
// digest, revealer-set and target fields are 32-byte hashes; members are
// uint32 positions in the sorted member list; n takes KeyBits/8 bytes and
// each ciphertext, share or key share 2·KeyBits/8 bytes, fixed width. After
// the header:
//
//	kind  name               body
//	1     announcement       group, member, nonce[32]
//	2     public dealing     group, dealer, transcript, is-dealer u8, n (zero unless the dealer)
//	3     private dealing    group, dealer, recipient, transcript, n, key share
//	4     setup              group, transcript, n
//	5     protected update   group, round u64, member, dim u32, n, k ciphertexts
//	6     aggregate          group, round u64, dim u32, count u32, count × member, n, k ciphertexts
//	7     reveal share       group, round u64, revealer, digest, set, target, dim u32, box
//	8     result             target, group, digest, set, round u64, dim u32, members u32, t u32, n, t × (revealer, box)
//	9     target public key  X25519 public key
//	10    target secret key  X25519 secret key
//	11    party state        group, self, transcript, n, key share
//
// with k = ⌈(dim+1)/Slots⌉ and a box = ephemeral key ‖ AES-GCM(k decryption
// shares) ‖ tag. Every decoder checks the header, the kind, every length
// before it allocates, and every number: 0 < c < n² and gcd(c, n) = 1 for
// each ciphertext and share, a modulus of exactly KeyBits bits, and the
// same modulus across the updates of an aggregate. Errors wrap
// [protect.ErrMalformed] or [protect.ErrForeign].
package paillier
