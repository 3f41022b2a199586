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
// and, for each, which of the hub's IDs it holds (hence the
// intersection); a feature party learns the hub's set size and the
// intersection of all parties (not its pairwise overlap with the hub, and
// nothing about anyone's other IDs). Blinded points are pseudorandom to
// whoever lacks the scalar (decisional Diffie–Hellman in ristretto255); a
// relay that sees the blinded points learns the set sizes. The final list
// of positions, L to F, must be sealed end to end: it names the
// intersection. The parties are assumed to follow the protocol
// (honest-but-curious); a party may lie about its own set, which PSI
// cannot prevent.
//
// # Over a relay
//
// [Run] hosts every party in one process. [Hub] and [Member] run the same
// protocol, with the same blinding and results, each party in its own
// process, talking only through a [relay.Link]: messages sealed end to
// end, read in the order each sender sent them. Per sender (the index of
// a message is its batch):
//
//	hub → member: psi/sizes, psi/hub[0…], psi/ack[0…], psi/rows
//	member → hub: psi/sizes, psi/reblinded[0…], psi/points[0…]
//
// Each side first sends its number of IDs and its batch size, which the
// other checks (1 to 2^31−1 IDs) before reading any batch. The hub blinds
// each batch once and sends it to every member, at most a few batches
// ahead of their doubly blinded replies (steps 2 and 3); then each member
// sends its own blinded points (step 1), at most a few batches ahead of
// the hub's acks, so no queue holds more than a few batches of the other
// side's points. Last, the hub sends each member its positions, 4 bytes
// each, in the aligned order; or none, if the intersection is empty, and
// every party gets [ErrNoOverlap] (a member whose points the hub has not
// read yet is stopped by its next ack instead).
//
// The parties learn what they learn from [Run]; a member stopped early
// also learns that some party shares no ID with the hub. The relay sees
// who sends how many bytes to whom, and when: every party's set size
// (from the bytes of points) and the size of the intersection (from the
// bytes of positions), not the IDs nor which are shared. A batch of the
// wrong length, bytes that are not points, sizes or positions out of
// range, and positions repeated are errors wrapping [ErrMalformed] that
// name the party that sent them.
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
