package main

import "github.com/cloisterfl/cloister/node"

// nodeTimes are the mean seconds per task over the nodes, and how many
// scheduled re-attestations (new process keys and TEE evidence, attested on
// a live connection) they made.
type nodeTimes struct {
	Train, Protect, Reveal, Decrypt, Evaluate, Reattest float64
	Reattestations                                      int
	// Trainer is an external trainer's own mean seconds per training
	// task (0 for the built-in models).
	Trainer float64
}

// nodeReportTimes reads the report each node wrote in its state directory
// when it stopped (node.StatsFile) and pools their tasks. A node whose
// report is missing (it crashed) counts for nothing.
func (f *localFed) nodeReportTimes(names []string) nodeTimes {
	var tasks [6]struct {
		n   uint64
		sum float64
	}
	var trainerN uint64
	var trainerSum float64
	for _, name := range names {
		r, err := node.ReadReport(f.state(name))
		if err != nil {
			continue
		}
		if r.Trainer != nil {
			trainerN += r.Trainer.Count
			trainerSum += float64(r.Trainer.Count) * r.Trainer.MeanSeconds
		}
		for i, t := range []node.Task{r.Train, r.Protect, r.Reveal, r.Lead, r.Evaluate, r.Reattest} {
			tasks[i].n += t.Count
			tasks[i].sum += float64(t.Count) * t.MeanSeconds
		}
	}
	mean := func(i int) float64 {
		if tasks[i].n == 0 {
			return 0
		}
		return tasks[i].sum / float64(tasks[i].n)
	}
	nt := nodeTimes{Train: mean(0), Protect: mean(1), Reveal: mean(2), Decrypt: mean(3), Evaluate: mean(4),
		Reattest: mean(5), Reattestations: int(tasks[5].n)}
	if trainerN > 0 {
		nt.Trainer = trainerSum / float64(trainerN)
	}
	return nt
}
