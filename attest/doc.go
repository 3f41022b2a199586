// Package attest proves that a Cloister node runs the expected code in a
// genuine trusted execution environment (TEE), and binds that proof to the
// node's TLS session and process keys. It is the attestation chain of
// docs/PROTOCOL.md: a node sends evidence when it joins and on a schedule; the
// coordinator and every other member verify it against the policy of the
// signed federation manifest, and seal key shares only to process keys
// whose evidence they verified.
//
// The package is two-sided, like age's Recipient and Identity: an
// [Attester] produces evidence on the node, a [Verifier] checks it anywhere.
// It does no networking; the runtime carries the bytes.
//
// # Getting started
//
// On the node, after the TLS handshake with the coordinator and once the
// coordinator's nonce has arrived:
//
//	att, err := attest.OpenSNP(nil)                // or OpenTDX, OpenNitro, NewSimAttester
//	ekm, err := attest.SessionEKM(conn.ConnectionState())
//	b := attest.Binding{Nonce: nonce, EKM: ekm, HPKEPub: hpkePub, SignPub: signPub}
//	evidence, err := attest.Attest(att, b, time.Now())
//
// On the coordinator, which issued the nonce with [NewNonce] and knows its
// end of the same connection:
//
//	v, err := attest.NewVerifier(manifest.Attestation, attest.Roots{})
//	claims, err := v.Verify(evidence, b, time.Now())
//
// A member verifying evidence the coordinator relays from another member's
// connection uses [Verifier.VerifyRelayed] with the member's process keys
// (which the member signs with its certificate) and nonce: it cannot know
// that connection's keying material and takes the evidence's.
//
// # Binding to the session
//
// The platform signs 64 bytes of report data. Cloister's are
// [ReportData]: SHA-512 over a context string and the length-prefixed
// nonce, TLS exported keying material and the node's session HPKE and
// signing public keys. The keying material is exported with label
// [EKMLabel] ("EXPORTER-cloister-attestation"), no context, [EKMLength] (32)
// bytes, on TLS 1.3 only ([SessionEKM]). So evidence vouches for exactly
// these keys, in exactly this connection, after exactly this challenge.
//
// The envelope ([Evidence]) carries the binding's inputs in clear. The
// verifier recomputes the report data from what it expects; if that differs
// from what the platform signed, it compares the clear inputs with its
// expectations to say why: evidence bound to another key is
// [ErrKeyBinding], to another TLS session (evidence relayed from another
// connection) [ErrSessionBinding], to another nonce [ErrStaleNonce]. If
// the clear inputs match but the report data does not, they were altered:
// [ErrReportData]. The clear inputs are never trusted, only compared.
//
// Nonces from [NewNonce] record when they were issued. Formats without a
// clock (sev-snp, tdx) take that as the evidence's time: the evidence was
// made after its nonce existed.
//
// # Formats
//
// One verifier handles every format; the envelope names it.
//
//   - sim ([SimAttester]): a simulated TEE for development and tests. A
//     platform key, certified by the simulated vendor root, signs a report
//     {measurement, report data, TCB, debug flag, time}. The vendor root is
//     derived from a PUBLISHED seed ([SimVendorSeed]): anyone can make sim
//     evidence for any measurement, so it proves nothing. A verifier
//     accepts it only under a policy with AllowSim, and [Policy.Warnings]
//     says so loudly.
//   - sev-snp ([SNPAttester]): an AMD SEV-SNP attestation report from the
//     sev-guest device (go-sev-guest's client), with the certificate table
//     the host provides (the VCEK, or a cloud provider's VLEK). Verified
//     offline with go-sev-guest: the VCEK chains to AMD's ARK and ASK at the
//     verifier's time, signs the report, and certifies the report's chip
//     and reported TCB (so a key from older firmware cannot vouch for a
//     newer TCB). The TCB is four security patch levels: bootloader, TEE,
//     SNP firmware, microcode. Debug is the guest policy's DEBUG bit.
//   - tdx ([TDXAttester]): an Intel TDX quote (version 4) from the kernel's
//     configfs-tsm interface. Verified offline with go-tdx-guest: the
//     quote's PCK chain leads to Intel's SGX root ([IntelSGXRootCA]), the PCK
//     key signs the quoting enclave's report, which binds the attestation
//     key, which signs the TD quote body. The TCB is the 16 bytes of
//     TEE_TCB_SVN; debug is TD attribute bit 0.
//   - nitro ([NitroAttester]): an AWS Nitro Enclaves attestation document
//     from the NSM (/dev/nsm), with the report data as user_data. Verified
//     with nitrite: the COSE_Sign1 signature and the certificate chain to
//     AWS's root at the verifier's time; nitrite returns a result even when
//     verification fails, so only its error counts. Debug enclaves report
//     all-zero PCRs. Nitro has no TCB version.
//
// Hardware attesters cannot run outside their TEE; on other machines the
// Open functions fail with [ErrUnsupported]. They are tested against fakes
// of their devices.
//
// # Policy
//
// A [Policy] is part of the signed manifest. It denies by default: a
// format must be listed, with an allow-list of measurements; sim also
// needs AllowSim, debug TEEs need AllowDebug; MinTCB sets a per-format
// floor; MaxAge bounds the evidence's age. For example:
//
//	{
//	  "formats": ["sev-snp", "tdx"],
//	  "measurements": {
//	    "sev-snp": ["b07af9620f3b…2b01"],
//	    "tdx": ["6363b8043668…5cbb:2927da70461c…f32a:2c700b8ba9b8…cb61:8652f0caaba7…424e"]
//	  },
//	  "min_tcb": {"sev-snp": [3, 0, 14, 209]},
//	  "max_age": "2h0m0s",
//	  "allow_sim": false,
//	  "allow_debug": false
//	}
//
// [Policy.Validate] checks a policy; [NewVerifier] refuses an invalid one.
// [Policy.Warnings] lists what operators must see on their logs and
// dashboard: sim or debug allowed, formats without a TCB floor.
//
// # Measurements
//
// A measurement is written as lowercase hex registers joined by ':', in
// the order of [Claims.Measurement]:
//
//   - sim: one register, the SHA-384 of the program and its launch
//     configuration ([MeasureFile]); `cloister attest measure BINARY`
//     prints it. Changing one byte of the binary changes it.
//   - sev-snp: one register, the launch MEASUREMENT (48 bytes): the guest's
//     initial memory and VM state (firmware, and for direct boot the kernel,
//     initrd and command line hashes), vCPU count and type. Compute it from
//     the reproducible image with virtee's sev-snp-measure (sev-snp-measure
//     --mode snp --vcpus N --vcpu-type EPYC-v4 --ovmf OVMF.fd --kernel …
//     --initrd … --append …).
//   - tdx: up to five registers, MRTD then RTMR0…RTMR3. MRTD measures the TD
//     firmware (TDVF/OVMF) and is computed from that build; RTMR0–2 are
//     extended at boot with the firmware configuration, the kernel and its
//     command line, and are reproduced by replaying the TD's event log
//     (CCEL). An entry may pin only a prefix (MRTD alone pins the firmware
//     only, which Warnings reports).
//   - nitro: up to three registers, PCR0 (the enclave image), PCR1 (kernel
//     and bootstrap), PCR2 (the application). `nitro-cli build-enclave`
//     prints them when it builds the EIF, and `nitro-cli describe-eif`
//     prints them for an existing one. Pinning PCR0 alone pins the whole
//     image.
//
// For any format, the claims of evidence from a known-good deployment
// ([Inspect], which `cloister attest inspect FILE` prints) show the values
// the hardware reports; check them against values computed from the
// reproducible build, never take them on faith.
//
// # Trust anchors
//
// [Roots] holds the vendor roots. Its zero value trusts AMD's ARK/ASK (as
// embedded in go-sev-guest), Intel's SGX root CA, AWS's Nitro Enclaves
// root and the published sim vendor key. Tests and private deployments
// replace them.
//
// # Errors
//
// Every rejection wraps one sentinel, for errors.Is: [ErrMalformed],
// [ErrFormatNotAllowed], [ErrSignature], [ErrKeyBinding],
// [ErrSessionBinding], [ErrStaleNonce], [ErrReportData], [ErrDebug],
// [ErrMeasurement] (a [*MeasurementError] with the measurement and the
// allow-list), [ErrTCB] (a [*TCBError]), [ErrTooOld] (an [*AgeError]) and
// [ErrFuture]. Checks run in a fixed order: form, format, signature chain,
// binding, debug, measurement, TCB, age; the first failure is returned.
// Nothing panics on hostile evidence: envelopes are bounded
// ([MaxEvidenceSize]) and parsed strictly, and the package checks the
// nested lengths of SNP certificate tables and TDX quotes, and the curve of
// Nitro certificates, before the vendor parsers see them (those parsers
// panic on such input).
//
// # Limits
//
//   - Verification is offline. SEV-SNP revocation lists and Intel's TCB
//     status and quoting-enclave identity collateral are not fetched: the
//     policy's TCB floor stands in for the TCB status. Pinning MRSEAM (the
//     TDX module) and checking the SNP report's VMPL are left to a later
//     version.
//   - The time of sev-snp and tdx evidence is its nonce's issue time, as the
//     nonce's issuer wrote it: a member verifying relayed evidence trusts
//     the coordinator for it, as it does for the nonce itself.
//   - [Verifier.VerifyRelayed] accepts the keying material the evidence
//     carries: it proves the member's keys live in an allowed TEE, not
//     which connection the evidence came over; the coordinator, which
//     holds that connection, checks that with [Verifier.Verify].
package attest
