// Package relay carries the messages of a session among a few named
// parties through a relay that is trusted with nothing: in Cloister the
// coordinator, for vertical learning (PSI, then training and scoring,
// where the parties talk to each other rather than to an aggregator).
//
// The relay moves opaque bytes ([Carrier]); a [Session] makes them private
// and authentic end to end. [Open] sends every other party a hello: the
// session's digest, both names and a fresh X25519 key, signed with the
// sender's Ed25519 key (in Cloister its audit key, which the signed
// manifest lists). Each ordered pair derives one AES-256-GCM key per
// direction from the X25519 secret with HKDF-SHA256, bound to the session
// digest, both names and both hellos. After that every message is
// sealed with a per-direction counter as its nonce, and its tag and index
// (the protocol step and, say, the batch) are authenticated with it.
//
// # What the relay learns
//
// Who sends how many bytes to whom, and when. Not the contents: a relay
// that changes, drops, replays, reorders or forges a message, or presents
// one party's message to another, makes [Session.Recv] fail with an error
// that names the sender ([ErrForged]); a party whose session parameters
// differ (another digest, another party list) is named in Open's error
// ([ErrMismatch]). A lost message is not recovered: the session fails and
// is run again (sessions are short and keep no state).
//
// # Order
//
// Recv(from, tag, index) returns the next message from from, which must
// be the one with that tag and index: the parties' protocols read each
// sender's messages in the order the sender sent them, and a message out
// of that order is an error, not something to buffer. Messages from
// different senders interleave freely; each sender's wait in its own
// queue, which holds at most eight of the largest messages (Config.MaxBody)
// and a MiB: a peer that sends more than the protocol lets it have in
// flight ends the session ([ErrMalformed]).
//
// # Format
//
// Every message starts with "CLRL", version 1 and a kind byte. A hello
// (kind 1): digest[32], the SHA-256 of the ordered party list[32], from,
// to (u16-length-prefixed names), the X25519 key[32], then the Ed25519
// signature[64] over "cloister/relay/hello/v1" and all before it. A sealed
// message (kind 2): seq u64, tag (u16 length), index u64, then the AES-GCM
// ciphertext of the body, whose additional data is the header and both
// names. Open ends with a sealed, empty "relay/confirm" message each way,
// so that a hello replayed from an earlier run of the same session (same
// digest) goes no further; "relay/abort" carries a party's reason for
// giving up ([Session.Abort]).
package relay
