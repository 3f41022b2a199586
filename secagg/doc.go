// Package secagg is aggregation mode "secagg": SecAgg+ (Bell et al., CCS
// 2020) masking with dropout recovery, behind [protect.Party] and
// [protect.Helper], blind to the coordinator.
//
// Each member uploads its fixed-point update plus masks that cancel in the
// sum or that t members can help remove; the coordinator sums the uploads
// and, with the shares of t revealers, removes every mask except one that
// only holders of the federation's group key remove. So the coordinator
// learns nothing of an update, nor of the sum.
//
// # Setup (once per key epoch)
//
//   - Announce: a fresh X25519 key pair; the public key is announced.
//   - Deal: the transcript is the hash of every announcement. The public
//     dealing binds it; each member gets a private dealing (sealed and
//     authenticated end to end by the runtime) with the transcript and this
//     member's random 32-byte contribution to the group mask key. A member
//     that was shown other announcements than a dealer refuses the setup in
//     Accept, so the coordinator cannot substitute X25519 keys.
//   - Accept: pair keys K_uv = HKDF(X25519(u, v), salt transcript) with every
//     member; the group mask key K_m = HKDF(all contributions, salt
//     transcript), known to members only.
//
// No secret is Shamir-shared at setup: what a round reveals must be of that
// round only, and a share of a long-lived key would reveal the key.
//
// # A round r
//
// Protect: the update and the weight as d+1 words round(x·2^Frac) modulo
// 2^Bits, plus
//
//   - a self mask PRG(b_u), b_u a fresh 128-bit seed for this upload;
//   - pair masks ±PRG(s_uv(r)) with each of this round's neighbours v, where
//     s_uv(r) = HKDF-Expand(K_uv, "mask" ‖ r): + if u < v, − otherwise, so
//     they cancel in the sum of u and v;
//   - a group mask PRG(g_u(r)), g_u(r) = HKDF-Expand(HKDF-Expand(K_m,
//     "round" ‖ r), "member" ‖ u).
//
// The upload also deals, to every member, Shamir shares (threshold t, over
// GF(2¹⁶)) of b_u and of u's pair seeds s_uv(r) of this round, each
// member's block encrypted with AES-128-CTR under HKDF-Expand(K_uw,
// "share" ‖ r ‖ u ‖ w). The PRG is AES-128-CTR with the seed as key and a
// zero IV (each seed expands one vector).
//
// Aggregate sums the included uploads modulo 2^Bits, and lists the
// included set S and the digest of each one's header and shares.
//
// Reveal (by each of t revealers, which the round engine takes among S):
// for this request's round and S only, the revealer's shares of b_v for
// every v in S, of s_vu(r) for every v in S and neighbour u not in S (the
// pair masks that did not cancel), and the round's group mask key
// HKDF-Expand(K_m, "round" ‖ r) sealed to the target (X25519, HKDF-SHA256,
// AES-256-GCM). Pairs of two included members are never revealed, nor any
// self mask of a member outside S.
//
// Open reconstructs those seeds from the t shares and removes their masks:
// the result is Σ_S (x_v + PRG(g_v(r))), with the sealed round keys.
// Target.Decrypt opens them (the revealers must agree), removes the group
// masks and decodes.
//
// # The neighbour graph
//
// The complete graph by default: every member masks with every other, and
// deals n·n shares a round in all (16 bytes each). A preset "-kK" (Flower's
// num_shares) masks instead with the K−1 members nearest on a ring through
// the members in an order shuffled per round by SHA-256(transcript, r), a
// public seed the coordinator does not choose (Flower's server shuffles
// its own). The shares still go to every member, so that any t included
// members can reveal (the engine fixes the revealers, not the graph).
// Sparse graphs are for large federations; see SECURITY.md for what they
// give up against a coordinator that chooses who drops.
//
// # Dropouts
//
// A member missing at the upload is not in S: its pair masks with the
// included are removed from the included members' shares. A member that
// uploaded and then dropped stays in S: its self mask is rebuilt from t
// shares. A revealer that drops aborts the round (the engine's rule); the
// next round has another round number, so no seed is used twice. Open needs
// all t shares: fewer give [protect.ErrNotEnoughShares]. A revealer refuses
// ([ErrIsolated]) an S of two or more in which a member has no neighbour:
// its update would be unmasked on its own.
//
// A party must protect at most once per round: its pair seeds depend only
// on the round. The round engine guarantees it (NodeState.Protected, durable
// before the upload leaves); a party used outside the engine must too.
//
// # Why a dropped member leaks nothing of later rounds
//
// What a round reveals is derived from the long-lived keys by HKDF-Expand
// with the round in the info: s_uv(r) and the round's group mask key.
// HKDF-Expand is a PRF keyed by K_uv (and K_m), so the seeds of round r
// tell nothing of those of any other round, and K_uv, K_m and the X25519
// keys are never revealed nor shared. Self seeds are fresh for each upload.
// So no re-key is needed after a dropout: per-round keys.
//
// # Capacity
//
// Presets: [Q64] ("secagg64", the [Default]: 2⁶⁴, 40 fractional bits, sums
// within ±2²⁰, 8 bytes a value, plain's models to within its rounding) and [Q32]
// ("secagg32": 2³², 20 fractional bits, sums within ±1024, 4 bytes a
// value). [NewPreset] refuses a literal whose modulus could not hold
// MaxParties inputs' sum with its rounding, and Protect refuses any value
// above MaxAbs/n (n the group's members), so no sum of accepted inputs can
// wrap: checked, not warned.
//
// # Formats
//
// Header: "CLSA", version 1, a kind byte. Integers big-endian; packed words
// little-endian at the preset's width. Hashes 32 bytes; members are u32
// indices in the sorted member list. After the header:
//
//	kind  name               body
//	1     announcement       group, member, X25519 public key
//	2     public dealing     group, dealer, transcript
//	3     private dealing    group, dealer, recipient, transcript, contribution[32]
//	4     setup              group, transcript
//	5     protected update   group, transcript, round u64, member, words u32, n blocks of (1+deg)·16 share bytes, words
//	6     aggregate          group, transcript, round, words, k, k members (ascending), k digests, words
//	7     reveal share       group, round, revealer, aggregate digest, revealer set, target id, box[80], k u32, p u32, k·16, p·16
//	8     result             target id, group, round, words, k, k members, t u32, t × (revealer, box[80]), words
//	9     target public key  X25519 public key
//	10    target secret key  X25519 private key
//	11    party state        group, self, transcript, group mask key, n pair keys
//
// The group hash covers the group ID, the threshold, the sorted members and
// the preset. Every decoder checks the header, the kind, every count
// against the bytes that follow before it allocates, and refuses trailing
// bytes; errors wrap [protect.ErrMalformed] or [protect.ErrForeign].
package secagg
