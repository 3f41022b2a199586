// Package psi finds the IDs that several parties share, and nothing else,
// with ECDH private set intersection over the prime-order group
// ristretto255 (RFC 9496).
//
// # The protocol
//
// Every party holds a set of distinct IDs (strings) and a secret scalar k.
// An ID x maps to the group as H(x) = FromUniformBytes(SHA-512(domain ‖
// session ‖ x)), with the session binding the run (a federation's manifest
// hash and a counter, say), so points of one run are useless in another.
// Because scalar multiplication commutes, k_A·(k_B·H(x)) = k_B·(k_A·H(x)):
// two parties can compare doubly blinded points without either seeing the
// other's IDs.
//
// One party is the hub: the label party of vertical learning. With each
// other party F, the hub L runs:
//
//  1. F sends k_F·H(x) for each of its IDs, in its own order ([Key.Blind]).
//  2. L sends k_L·H(y) for each of its IDs ([Key.Blind]).
//  3. F returns k_F·k_L·H(y), in L's order ([Key.Reblind]).
//  4. L computes k_L·k_F·H(x) itself ([Key.Reblind]) and matches the two
//     doubly blinded lists ([Matcher]).
//
// After all feature parties, L knows which of its IDs every party holds,
// and tells each F which of F's positions are in the intersection
// ([Hub]). Every party then sorts its shared IDs, the aligned order:
// row i of every party's table is the same person.
//
// What each party learns: the hub learns the other parties' set sizes
// and the intersection; a feature party learns the hub's set size and the
// intersection of all parties (not its pairwise overlap with the hub, and
// nothing about anyone's other IDs). Blinded points are pseudorandom to
// whoever lacks the scalar (decisional Diffie–Hellman in ristretto255); a
// relay that sees the blinded points learns the set sizes. The final list
// of positions, L to F, must be sealed end to end: it names the
// intersection. The parties are assumed to follow the protocol
// (honest-but-curious); a party may lie about its own set, which PSI
// cannot prevent.
//
// # Streaming and cores
//
// [Key.Blind] and [Key.Reblind] work on one batch at a time, spread over
// the given number of workers, so a million IDs never need a million
// group elements in memory at once: a [Matcher] keeps 16-byte
// fingerprints of the hub's doubly blinded points and matches the other
// side batch by batch.
//
// # Bad input
//
// Duplicate IDs ([ErrDuplicate]), an empty set, encodings that are not
// canonical ristretto255 points or are the identity ([ErrMalformed], with
// the position), and an empty intersection ([ErrNoOverlap]) are errors.
package psi
