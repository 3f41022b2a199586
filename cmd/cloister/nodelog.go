package main

import (
	"bufio"
	"encoding/json"
	"os"
)

// nodeTimes are the mean seconds per task the nodes logged, and how many
// scheduled re-attestations (new process keys and TEE evidence) they made.
type nodeTimes struct {
	Train, Protect, Reveal, Decrypt, Evaluate, Reattest float64
	counts                                              [6]int
}

// nodeLogTimes reads the nodes' JSON log lines for their task timings:
// train_s, protect_s, reveal_s, decrypt_s (leading a round), eval_s and
// rotate_s (a scheduled re-attestation), whose count is the number of
// re-attestations.
//
// These are the only figures of the demo still read from logs, because a
// node exposes them nowhere else: node.Stats counts tasks (Trained,
// Revealed, Led, Rotations) but keeps no durations, its audit log records
// no timings, and a node process serves no status endpoint. What the node
// should expose instead: per-task durations and counts (train, protect,
// reveal, lead, evaluate, re-attest, the latter counting only rotations
// attested on a connection) in node.Stats, served as JSON by a node's own
// --metrics listener (/status, as the coordinator's) or written to its
// state directory when it exits. Then this function goes.
func (f *localFed) nodeLogTimes(names []string) nodeTimes {
	var t nodeTimes
	keys := []string{"train_s", "protect_s", "reveal_s", "decrypt_s", "eval_s", "rotate_s"}
	sums := make([]float64, len(keys))
	for _, name := range names {
		fh, err := os.Open(f.logPath(name))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			for i, k := range keys {
				if v, ok := rec[k].(float64); ok {
					sums[i] += v
					t.counts[i]++
				}
			}
		}
		fh.Close()
	}
	mean := func(i int) float64 {
		if t.counts[i] == 0 {
			return 0
		}
		return sums[i] / float64(t.counts[i])
	}
	t.Train, t.Protect, t.Reveal, t.Decrypt, t.Evaluate, t.Reattest = mean(0), mean(1), mean(2), mean(3), mean(4), mean(5)
	return t
}
