// Package trainer is the trainer API: how a node hands its training to an
// external trainer process (a PyTorch script, say) and stays the privacy
// boundary around it. The trainer only trains. Clipping, the DP noise,
// the weighting, the encryption, the privacy budget and the audit log
// stay in the node, where a trainer cannot skip them: a trainer sees the
// global model (which its site may see anyway) and returns weights, and
// nothing it returns leaves the node unprotected.
//
// docs/BYOM.md is the user's guide; this is the mechanism.
//
// # The wire
//
// The node serves gRPC on a Unix socket it creates in its state
// directory, mode 0600 ([Listen]); the trainer dials it (the Python
// package cloister reads the path from CLOISTER_TRAINER_SOCKET) and opens
// one Attach stream. It says Hello; the node sends tasks, one at a time,
// and the trainer answers each:
//
//	DESCRIBE  → the layout: the ordered (name, shape, dtype) tensors
//	INIT      → initial weights made from the task's seed
//	TRAIN     → trained weights (or their delta), the example count, metrics
//	EVALUATE  → the example count and metrics "accuracy" and "loss"
//
// TRAIN and EVALUATE carry the global weights and TRAIN the manifest's
// schedule ([Config]: epochs, batch, learning rate, momentum, FedProx μ).
// Tensors travel as little-endian float32 or float64 arrays, row-major, in
// the layout's order, cut into chunks of [ChunkSize] after the message
// that announces them: a model of any size fits under the [MaxMessage]
// limit, and nothing is ever pickled. The protocol buffers are in
// internal/pb/trainer.proto.
//
// # The node's side
//
// A [Host] serves the API ([Host.Serve] with the caller's listener) and
// runs the node's tasks: [Host.Init], [Host.Train], [Host.Evaluate]. Each
// waits, within its context's deadline, for a trainer that is attached
// and whose DESCRIBE matched the manifest's layout digest ([Layout.Digest];
// others are refused with [ErrLayoutMismatch]), and validates the reply:
// the weights must have exactly that layout, every value must be finite,
// the example count must be positive (and equal to the trainer's share
// when the node dealt it), evaluation must report accuracy and loss. A
// violation is an [ErrReply] that names the tensor and the problem
// ("tensor conv1.weight: NaN at [3 0 2 1]"); a trainer that hangs past the
// deadline gets [ErrTimeout], one that crashes [ErrExited] with its exit
// status and last lines of output. After any of these faults the Host
// ends the trainer's stream and, when it supervises the process, kills
// and restarts it. A trainer that reports a failure itself (a Failure
// message: [ErrFailed]) keeps its stream.
//
// A [Process] runs the trainer's command with the CLOISTER_* environment,
// restarts it with [Backoff] when it exits, kills its whole process group
// on a fault or when the node stops, and refuses to start a script whose
// SHA-256 is not the one pinned ([ProcessConfig.Digest], `cloister node
// --trainer-digest`).
//
// # A trainer in Go
//
// [Attach] is the trainer's side for trainers written in Go (and for this
// package's tests and benchmarks): it answers each [Request] with the
// [Handler]'s [Reply].
package trainer
