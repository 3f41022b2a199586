// Package transport carries [round.Message] values between the coordinator
// and the nodes: gRPC over mutual TLS 1.3, one bidirectional stream per
// node, with each message's sender taken from the peer certificate.
//
// Nodes only dial out. The coordinator runs a [Server]; each node holds a
// [Conn] from [Dial]. Both speak round.Message only: the protobuf wire
// format stays inside this package, and every message that crosses it is
// validated on the way in and on the way out.
//
// # The coordinator
//
// [NewServer] takes the coordinator's mTLS configuration (from
// pki.ServerConfig or Kit.TLSConfig), the [Limits] and an injected
// *slog.Logger. It does not listen: the daemon owns the listener and calls
// [Server.Serve]. Everything the nodes do arrives through one ordered
// sequence of events, which the daemon feeds to its round.Coordinator:
//
//	srv, err := transport.NewServer(transport.ServerConfig{TLS: tlsCfg, Limits: lim, Logger: log})
//	go srv.Serve(listener)
//	for {
//		ev, err := srv.Recv(ctx)
//		if err != nil {
//			break // ErrServerClosed after Shutdown
//		}
//		switch ev.Kind {
//		case transport.EventMessage:
//			coord.Step(ev.Node, ev.Msg) // ev.Node comes from the certificate
//		case transport.EventDisconnect:
//			coord.Unreachable(ev.Node)
//		}
//		for coord.HasReady() {
//			rd := coord.Ready()
//			// persist, audit, then:
//			for _, m := range rd.Messages {
//				sctx, cancel := context.WithTimeout(ctx, sendTimeout)
//				srv.Send(sctx, m.To, m) // ErrNotConnected: the node is down
//				cancel()
//			}
//			coord.Advance()
//		}
//	}
//
// The events of one node come in order: [EventConnect], the node's
// messages, [EventDisconnect]. When a node opens a second stream (it
// restarted, or its old connection died without the coordinator
// noticing), the new stream replaces the old one: the old stream's
// messages and its Disconnect (with [ErrReplaced]) come first, then the
// new Connect. The replacement is logged and counted. Messages a node sent
// that the server had not read when the stream ended are lost; round's
// protocol recovers through Hello and its deadlines.
//
// Recv's queue is bounded ([ServerConfig.Queue]): while the daemon does not
// receive, streams stop reading and gRPC's flow control holds the nodes
// back. [Server.Shutdown] ends every stream with [ErrServerClosed], stops
// gRPC and closes the listeners, within the context's deadline.
//
// # The node
//
// [Dial] returns once the coordinator has verified the node's certificate
// and accepted its stream; a refused certificate (none, another CA's,
// expired, revoked, not in the manifest) is Dial's error, worded by the
// TLS alert the coordinator sent. Then:
//
//	conn, err := transport.Dial(ctx, kit.Config.CoordinatorAddress, transport.ClientConfig{TLS: tlsCfg, Limits: lim})
//	node.Reconnect() // says Hello again
//	for {
//		m, err := conn.Recv(ctx)
//		if err != nil {
//			break // conn.Err(): why the stream ended
//		}
//		node.Step(conn.Coordinator(), m)
//		// … Ready: persist, audit, then conn.Send(ctx, m) for each message
//	}
//
// Reconnecting is the daemon's loop: after any error, wait [Backoff.Delay]
// and Dial again, except after [ErrReplaced] (another process holds this
// node's identity) and [ErrConfig]. Pass the same [Metrics] to every Dial
// to keep totals across connections.
//
// # Identity
//
// The coordinator takes each stream's NodeID from the client certificate
// of the TLS connection (pki.NodeID), which the pki configuration verified
// during the handshake: issued by the federation CA, valid, a node
// certificate, not revoked, listed in the manifest. Session tickets are
// off, so every connection makes a full handshake. The configurations are
// checked: a server TLS configuration that does not require and verify
// client certificates, or a client configuration that does not verify the
// server, is refused with [ErrConfig].
//
// No message carries its sender. Each frame header does carry the
// sender's claim of its own NodeID (the node's certificate name), and the
// coordinator refuses a stream whose claim is another node's with a
// [*ClaimError] ([ErrImpersonation]), counted under
// [ReasonImpersonation]: such a node is misconfigured or malicious, and
// the refusal is visible rather than silently corrected. NodeIDs inside a
// message (Cohort, Dealer, Included, …) are only claims that round checks.
//
// # Attestation nonces
//
// With [ServerConfig.Nonce] set (the coordinator sets attest.NewNonce when
// the manifest requires attestation), the server issues a nonce with every
// stream's acceptance, before the node can send anything ([Conn.Nonce]),
// and a fresh one whenever the node asks ([Conn.Challenge], carried by a
// Challenge frame between messages). Each nonce is reported to the
// coordinator as an event (EventConnect's or [EventChallenge]'s Nonce)
// before the node has it, so that the coordinator always knows which nonce
// a node's next evidence must answer. Both ends expose the connection's TLS
// state ([Event] TLS, [Conn.TLS]): the keying material attestation evidence
// binds (attest.SessionEKM) is the same on both.
//
// # Limits and chunking
//
// A message is serialized and sent as a header frame (sequence number,
// length, SHA-256 digest, sender claim) followed by chunk frames of at most
// [Limits.ChunkSize] bytes (1 MiB by default), so that a 20 MiB model or
// ciphertext never meets gRPC's per-message limit, which is set to one
// chunk plus a small overhead. The receiver refuses a declared length above
// [Limits.MaxMessage] before allocating ([ErrTooLarge]) and grows its
// buffer only as chunks arrive; it refuses chunks out of order, a header
// in the middle of a message, an empty or oversized chunk, or a digest
// mismatch ([ErrFrame]). Derive MaxMessage from the federation's largest
// message (see [Limits]). Send refuses a message above MaxMessage before
// anything leaves.
//
// # Validation
//
// Decoding a message checks the kind (a kind unknown to round wraps
// round.ErrUnknownKind), every NodeID (pki's name rules), every list and
// map of NodeIDs (at most pki.MaxNodes entries), the digests (32 bytes),
// and the numbers (no negative example count). Encoding checks the same,
// so a bad message fails at its sender with an error naming the field. On
// the wire, nil and empty are the same; decoded values use nil. Semantic
// checks (is the sender in the cohort, is the round current, are the
// metrics in range) are round's.
//
// # Errors
//
// Any protocol violation ends the stream: the receiver logs it, counts it
// in [Metrics.Rejected] under its [Reason], reports it (the coordinator in
// the Disconnect event, wrapping [ErrImpersonation], [ErrTooLarge],
// [ErrFrame] or [ErrMalformed]; a node in [Conn.Err]) and tells the peer
// why: a node whose stream the coordinator refused gets a [*RejectError]
// that matches the same sentinels. Nothing a peer sends can panic either
// side. Other sentinels: [ErrNotConnected], [ErrServerClosed],
// [ErrClosed], [ErrReplaced], [ErrMisaddressed], [ErrUnauthenticated].
//
// # Metrics
//
// [Metrics] holds counters as struct fields: bytes and messages in and
// out, streams opened, ended and replaced, and rejections by [Reason],
// including refused TLS handshakes on the server. Export them from one
// place; the package exports nothing itself.
package transport
