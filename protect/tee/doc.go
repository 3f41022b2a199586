// Package tee is the aggregation mode in which an attested aggregator
// opens the updates inside its TEE and applies a robust rule.
//
// Under mhe and secagg nobody sees an individual update, so Krum, the
// median or the trimmed mean cannot run. In mode tee each node seals its
// update with HPKE to the aggregator's session key, which the node has
// verified in the aggregator's attestation evidence itself; the
// coordinator relays the sealed updates and stays blind; the aggregator
// opens them inside, applies the manifest's rule (package robust) or sums,
// and seals the result to the group's target key, which only members hold.
// What attestation guarantees, and what it does not, is in SECURITY.md.
//
// # Roles
//
// The three sides of the protocol are three [Scheme] values:
//
//   - a node's: Scheme{Key: the aggregator's attested public key}. Its
//     parties seal to that key; every announcement names it, and Deal
//     refuses announcements that name two keys, so all members seal to the
//     same attested aggregator.
//   - the coordinator's: Scheme{} (or with Key, to refuse updates sealed to
//     another key as they arrive). Its helper checks each sealed update's
//     envelope and concatenates them; its Open refuses with
//     [protect.ErrNotReady]: it cannot open anything.
//   - the aggregator's: Scheme{Identity: its private key, Rule: …}, whose
//     helper ([Scheme.NewAggregator], from the setup the coordinator
//     broadcast) performs Open.
//
// # The protocol
//
// Setup:
//   - [protect.Party.Announce] draws a nonce and an Ed25519 signing key,
//     and names the aggregator key (its digest, [KeyDigest]).
//   - [protect.Party.Deal] checks the announcements (one aggregator key)
//     and binds the dealing to their hash, the transcript.
//   - [protect.Helper.Setup] checks them and returns a setup holding every
//     announcement, so the aggregator learns each member's signing key and
//     checks that they hash to the transcript.
//   - [protect.Party.Accept] checks that the setup is the one it dealt on.
//
// A round:
//   - [protect.Party.Protect] seals (w, wΔ) with HPKE (ML-KEM-768 +
//     X25519, HKDF-SHA256, AES-256-GCM) to the aggregator's key. The
//     cleartext envelope (session, transcript, round, member, aggregator
//     key digest, length) is the HPKE info: an update replayed in another
//     round, under another member or to another aggregator does not open.
//   - [protect.Helper.Aggregate] checks the envelopes (round, member, one
//     transcript, one aggregator key, one length) and concatenates the
//     sealed updates in member order. It is a [protect.Checker].
//   - [protect.Party.Reveal] checks the request, records it in the
//     [protect.Ledger] and returns a share signed with the member's
//     announced key over the round, the aggregate's digest, the revealer
//     set and the target. t signed shares are the aggregator's authority
//     to open: a coordinator that colludes with fewer than t members cannot
//     name a target key of its own.
//   - [protect.Helper.Open], on the aggregator, checks the t signatures,
//     opens each update, recovers Δᵢ = wᵢΔᵢ/wᵢ, applies the rule
//     unweighted and seals W·rule(Δ₁, …, Δₖ) with weight W = Σwᵢ to the
//     target (without a rule: the sums). A rule infeasible for the k
//     updates that came (robust.ErrInfeasible) is an error: the round
//     aborts, it is never averaged.
//   - [protect.Target.Decrypt] opens the result with the target's HPKE key.
//
// # Capacity
//
// As plain: values are float64, at most 2⁵³; no encoding error; up to 2¹⁶
// members and 2²⁴ values. An aggregate holds every sealed update, so its
// size is k updates.
//
// # Formats
//
// All integers are big-endian; float64 values IEEE 754 binary64,
// big-endian. Every payload starts with a 6-byte header: the magic "CLTE",
// the version 1, and a kind byte. Session, transcript, digests and key
// digests are 32-byte hashes; member indices are uint32 positions in the
// sorted member list; sealed is an HPKE ciphertext (1,120-byte
// encapsulated key, then AES-256-GCM) of a weight and count values.
//
//	kind  name               body
//	1     announcement       session, member u32, nonce[32], aggregator key digest, Ed25519 key[32]
//	2     public dealing     session, dealer u32, transcript
//	3     private dealing    session, dealer u32, recipient u32, transcript
//	4     setup              session, transcript, n × announcement (member order)
//	5     sealed update      session, transcript, round u64, member u32, aggregator key digest, count u32, sealed
//	6     aggregate          session, round u64, count u32, k u32, k × sealed update (ascending members)
//	7     reveal share       session, round u64, revealer u32, aggregate digest, revealer set, target, Ed25519 signature[64]
//	8     result             target, count u32, sealed
//	9     target public key  ML-KEM-768+X25519 public key[1216]
//	10    target secret key  seed[32]
//	11    party state        session, self u32, transcript, aggregator key digest, signing seed[32]
//
// Every decoder checks the header, the kind, every declared count against
// the bytes that follow (before it allocates) and every value, and refuses
// trailing bytes. Errors wrap [protect.ErrMalformed] or [protect.ErrForeign].
//
// The HPKE encapsulations draw from crypto/rand; the nonces and keys of
// NewParty and NewTarget come from the rand they are given.
package tee
