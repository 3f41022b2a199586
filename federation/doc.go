// Package federation owns the federation manifest, the federation's
// constitution signed by its CA, and resolves it into what the daemons and
// the command line run. The coordinator, every node and `cloister` derive
// the scheme, the engine's configuration, the message limits and the
// privacy budget here, in one place, so that they derive the same:
//
//	man, err := federation.Verify(signed, caCert)
//	fed, err := federation.Resolve(man, federation.Overrides{})
//	// fed.Scheme, fed.Round, fed.MaxMessage, fed.Budget
//
// Package pki keeps the federation CA, the certificates, the mutual-TLS
// configurations and the kits; a kit's manifest is a [Manifest], and the
// CA ([Signer]) signs it.
//
// # The manifest
//
// The [Manifest] lists the members (name, certificate fingerprint, audit
// key), the threshold, the minimum cohort, the aggregation mode and HE
// preset, the DP budget, the model and training settings and the
// attestation policy. [Sign] signs its canonical JSON with the CA key;
// [Verify] refuses anything not signed by the given CA
// ([ErrBadSignature]), not canonical ([ErrBadManifest]) or inconsistent
// ([ErrInvalidManifest]). [Manifest.Hash] binds other artefacts (the
// protect session, attestation report data, the audit log) to one
// manifest. The Serial field grows with every re-signing so that
// pki.UpdateManifest never rolls a kit back. docs/PROTOCOL.md describes
// how the manifest governs a session.
//
// # Resolving
//
// [Resolve] returns a [Federation]: the [protect.Scheme] of the manifest's
// mode ([Scheme]), the engine's [round.Config] ([RoundConfig]: the session
// is the manifest's hash, and the training settings travel to the nodes as
// the engine's opaque training configuration), the message sizes and
// limit, and the privacy [Budget]. [Overrides] are what an operator or a
// test may change: the scheme (tests), the message limit, and a node's
// own ε limit.
//
// # Modes
//
//   - "mhe": threshold multiparty CKKS (package mhe) with the named preset,
//     e.g. "Agg128".
//   - "secagg": SecAgg+ masking with dropout recovery (package secagg)
//     with the named masking preset, e.g. "secagg64" (the default when
//     the preset is empty), "secagg32" or "secagg32-k7" (a ring of 7
//     neighbours).
//   - "plain": no protection at all (package protect/plain). It exists for
//     baselines and research; callers print [plain.Warning].
//
// The manifest also reserves "paillier" and "tee"; this build refuses them
// with [ErrUnsupported].
//
// # Message limits
//
// [MessageSizes] bounds every kind of message the federation sends, from
// the manifest alone: the model's parameter count d (its kind, inputs,
// classes and hidden layers), the member count n, the scheme's payload
// sizes for d and n ([protect.Scheme.Sizes]: for mhe, ⌈(d+1)/slots⌉
// ciphertexts of the preset's exact size), the sealed model (8d bytes and
// the server optimizer's state) and stated bounds on evidence, sealing and
// framing. The transport limit is the largest bound with a 25 % [Margin],
// so the coordinator and the nodes agree on it by construction and no peer
// can make another hold more than the protocol needs.
//
// # Privacy budget
//
// [Privacy] states the accounting rule: the ε of the federation after r
// rounds, the same for the coordinator and every node. [Budget] holds it
// with the manifest's ε and the round cap, the last round the budget lets
// start: the coordinator stops there, and a node refuses any later round
// and any round past its own limit. [Budget.Price] prices each commit for
// the audit logs (epsilon-spent records add up to the cumulative ε), and
// [Federation.NoiseFor] finds the noise multiplier that would cover every
// planned round. docs/PRIVACY.md explains the guarantee.
package federation
