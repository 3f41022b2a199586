// Package audit is Cloister's tamper-evident event log: every party (each
// node and the coordinator) keeps an append-only, hash-chained log of what
// it did, each record signed with the party's Ed25519 audit key. What a log
// says is a pure fold over its records ([State]), after Tailscale's tka.
//
// # Writing
//
// [Open] a log with the party's audit key and name, then [Log.Append]
// records. Append writes one JSON line and fsyncs it before it returns:
// persist the event, then send the messages that follow from it (the Ready
// contract of docs/ARCHITECTURE.md: audit events are durable before messages
// are sent).
//
//	l, err := audit.Open("node-1.log", auditKey, "node-1", audit.Options{Now: clock})
//	rec, err := l.Append(audit.UpdateAccepted, audit.Data{Round: 3, Node: "node-2", Digest: d})
//
// A node's log doubles as its reveal-once ledger: [*Log] implements
// protect.Ledger, so [Log.Record] durably records "revealed (round,
// digest)" and refuses a second reveal in the same round.
//
// Open resumes an existing log only after verifying it, and refuses a log
// that does not verify. A crash in the middle of a write can leave a torn
// last line; Open reports it ([ErrTorn]) unless [Options.RepairTorn] lets
// it cut the line, whose record was never acknowledged.
//
// # Records
//
// A [Record] holds Seq (from 1), Prev (the previous record's hash), Time
// (from the injected clock), Actor (the writer), Kind, typed [Data] and the
// writer's signature over [Record.Hash]. Records carry digests and
// identities only, never content. Each kind takes a fixed set of Data
// fields; anything else is refused:
//
//	kind                 required                   optional
//	session-started      session, manifest          members, epoch
//	node-admitted        node                       digest (certificate)
//	node-refused         reason                     node, digest
//	key-setup            epoch                      members, digest
//	payload-relayed      node, recipient, digest    round, epoch, size
//	round-started        round                      members, leader
//	update-accepted      round, node, digest        size
//	node-dropped         node                       round, reason
//	revealed             round, digest              node (if not the writer)
//	committed            round, digest (model)      leader, session; cosignature
//	aborted              reason                     round
//	epsilon-spent        micro_epsilon              round, node, total_micro_epsilon, delta
//	budget-exhausted     round, reason              total_micro_epsilon, delta
//	attestation-ok       node                       format, digest
//	attestation-failed   node, reason               format, digest
//	key-rotated          epoch                      members, digest, reason
//	node-readmitted      node                       round, reason
//	amended              manifest, members, reason  round, session
//
// A committed record may carry a [Cosignature] by the round's leader
// ([Cosign], [Log.AppendCosigned]). The leader signs the record's
// [Statement] (kind and data), which it can do before the writer places the
// record in its log; the record's hash covers the cosignature. In a
// federation the coordinator's committed records carry one: the leader
// signs the statement of (session, leader, round, round-record digest)
// when it commits (round.CommitStatement computes the same bytes) and the
// coordinator appends it. A member's committed records carry none.
//
// # Verifying
//
// [Verify] checks a log file record by record: canonical form (every byte
// counts), the chain, the writer's signature and any cosignature, and the
// invariants of [State.Apply] (no round committed twice, no node revealing
// twice in a round, epsilon-spent increments that add up to their totals).
// The first problem comes back as a [*VerifyError]
// naming the line and Seq and wrapping a sentinel: an edited record fails
// its signature ([ErrBadSignature]); a removed, inserted or reordered one
// breaks the chain ([ErrBrokenChain]); a torn last line is [ErrTorn].
// [VerifyDir] verifies every *.log and *.jsonl under a directory — the work
// of `cloister audit verify` — and checks that logs of one session agree on
// every committed model. Keys come from the manifest:
// audit.Keys(manifest.AuditKeys()), or, to also require that every
// committed record of the coordinator's log carries its leader's
// cosignature ([ErrNotCosigned]), audit.Federation{Keys: …, Coordinator:
// manifest.Coordinator.Name}, as `cloister audit verify` does.
//
// A hash chain cannot reveal records cut from its end; compare
// [Summary].Last with another copy (a peer's log, a monitor) for that.
package audit
