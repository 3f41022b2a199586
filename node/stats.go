package node

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/cloisterfl/cloister/internal/atomicfile"
)

// StatsFile, in a node's state directory, holds the node's [Report] as of
// the end of its last Run (JSON).
const StatsFile = "stats.json"

// Stats are a node's counters, for logs, tests and its StatsFile. A
// task's ...Nanos is the time its counted tasks took in all.
type Stats struct {
	Trained, Evaluated, Revealed, Led atomic.Uint64
	Rejected                          atomic.Uint64 // messages the engine rejected
	Connects                          atomic.Uint64
	// Protected counts the updates this node protected and uploaded.
	Protected atomic.Uint64
	// TrainNanos, ProtectNanos, RevealNanos, LeadNanos and EvalNanos are
	// the time spent training, protecting (and signing) an update, making
	// a reveal share, leading a round (decrypt, apply, seal, sign) and
	// evaluating.
	TrainNanos, ProtectNanos, RevealNanos, LeadNanos, EvalNanos atomic.Uint64
	// TrainerNanos is the part of TrainNanos an external trainer reported
	// as its own work; the rest is the trainer API's and the node's.
	TrainerNanos atomic.Uint64
	// Attestations counts the Hello evidence this node made (on connect
	// and on schedule), Rotations the scheduled key rotations among them.
	Attestations, Rotations atomic.Uint64
	// Reattested counts the rotations attested on a live connection (new
	// keys, TEE report, Hello), ReattestNanos the time they took.
	Reattested, ReattestNanos atomic.Uint64
	// AttestNanos is the time spent making evidence (keys, TEE report,
	// signature), AttestBytes the bytes of TEE evidence made.
	AttestNanos, AttestBytes atomic.Uint64
	// PeerChecks counts peers' evidence checked, PeerCheckNanos the time
	// spent checking it, PeerFailures those refused.
	PeerChecks, PeerCheckNanos, PeerFailures atomic.Uint64
}

// Task is what a node did of one kind of task: how many, and their mean
// duration in seconds (0 if none).
type Task struct {
	Count       uint64  `json:"count"`
	MeanSeconds float64 `json:"mean_seconds"`
}

func task(count, nanos *atomic.Uint64) Task {
	t := Task{Count: count.Load()}
	if t.Count > 0 {
		t.MeanSeconds = time.Duration(nanos.Load()).Seconds() / float64(t.Count)
	}
	return t
}

// Report is a snapshot of a node's Stats, by task: what `cloister demo`
// and an operator read from the StatsFile.
type Report struct {
	Train Task `json:"train"`
	// Trainer is an external trainer's own time in the training tasks
	// (absent for the built-in models).
	Trainer  *Task `json:"trainer,omitempty"`
	Protect  Task  `json:"protect"`
	Reveal   Task  `json:"reveal"`
	Lead     Task  `json:"lead"`
	Evaluate Task  `json:"evaluate"`
	Reattest Task  `json:"reattest"`
	// Attestations, Rejected and Connects are Stats' counters.
	Attestations uint64 `json:"attestations"`
	Rejected     uint64 `json:"rejected"`
	Connects     uint64 `json:"connects"`
	PeerChecks   uint64 `json:"peer_checks"`
	PeerFailures uint64 `json:"peer_failures"`
}

// Report returns a snapshot of the counters by task.
func (s *Stats) Report() Report {
	var trainer *Task
	if s.TrainerNanos.Load() > 0 {
		t := task(&s.Trained, &s.TrainerNanos)
		trainer = &t
	}
	return Report{
		Train: task(&s.Trained, &s.TrainNanos), Trainer: trainer, Protect: task(&s.Protected, &s.ProtectNanos),
		Reveal: task(&s.Revealed, &s.RevealNanos), Lead: task(&s.Led, &s.LeadNanos),
		Evaluate: task(&s.Evaluated, &s.EvalNanos), Reattest: task(&s.Reattested, &s.ReattestNanos),
		Attestations: s.Attestations.Load(), Rejected: s.Rejected.Load(), Connects: s.Connects.Load(),
		PeerChecks: s.PeerChecks.Load(), PeerFailures: s.PeerFailures.Load(),
	}
}

// ReadReport reads the StatsFile a node wrote in stateDir.
func ReadReport(stateDir string) (Report, error) {
	var r Report
	b, err := os.ReadFile(filepath.Join(stateDir, StatsFile))
	if err != nil {
		return r, fmt.Errorf("node: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("node: %s: %w", filepath.Join(stateDir, StatsFile), err)
	}
	return r, nil
}

// writeReport writes the node's Report to its StatsFile, atomically.
func (n *Node) writeReport() error {
	b, err := json.MarshalIndent(n.stats.Report(), "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(n.cfg.StateDir, StatsFile), append(b, '\n'), 0o600)
}
