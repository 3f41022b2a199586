package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
)

// TestAmendRunningFederation adds node-6 to a running five-member
// federation of real processes with `cloister ca amend --add node-6`: the
// coordinator takes the amendment from its kit, puts it in force at the
// next round boundary by a re-key among all six that carries the model
// over, node-6 trains from the current model (accuracy does not drop back
// to where the session started), the session goes on to its end, and all
// six audit logs verify, the five older ones recording the amendment.
func TestAmendRunningFederation(t *testing.T) {
	// A small learning rate: accuracy climbs over several rounds, so that a
	// model started afresh at the amendment would show.
	f := newTestFedWith(t, 5, 3, 8, 300, func(o *pki.InitOptions) { o.Training.LearningRate = 0.0003 })
	f.coordArgs = append(f.coordArgs, "--join-timeout", "10s") // a re-key waits this long for node-6 to connect
	f.startAll()
	f.wait(4*time.Minute, "round 2 committed", func(s fedStatus) bool { return s.LastCommitted >= 2 })

	var out, errw bytes.Buffer
	if err := run([]string{"ca", "amend", "--dir", filepath.Join(f.dir, "fed"), "--add", "node-6"}, nil, &out, &errw); err != nil {
		t.Fatalf("cloister ca amend --add node-6: %v\n%s", err, errw.String())
	}
	t.Logf("cloister ca amend --add node-6:\n%s", out.String())
	amendedAt, _ := f.status()
	if err := f.startNode("node-6"); err != nil {
		t.Fatal(err)
	}
	f.names = append(f.names, "node-6")
	f.finish(6 * time.Minute)

	h := f.final
	if h.Phase != "done" || h.Commits != 8 {
		t.Fatalf("phase %s after %d commits, want done after 8", h.Phase, h.Commits)
	}
	// The round at whose end the amendment took effect, from the
	// coordinator's audit log.
	var amended fl.Round
	for _, rec := range records(t, filepath.Join(f.state("coordinator"), "audit.log")) {
		if rec.Kind == audit.Amended {
			amended = rec.Data.Round
		}
	}
	var before, first *float64
	joined := fl.Round(0)
	for _, r := range h.History {
		t.Logf("round %d: %s with %v acc %v loss %v %s", r.Round, r.Outcome, r.Included, deref(r.Accuracy), deref(r.Loss), r.Reason)
		if r.Outcome != "committed" {
			continue
		}
		if r.Round <= amended {
			before = r.Loss
		}
		if joined == 0 && slices.Contains(r.Included, "node-6") {
			joined, first = r.Round, r.Loss
		}
	}
	t.Logf("amendment signed in round %d, in force after round %d, node-6 first included in round %d", amendedAt.Round, amended, joined)
	if amended == 0 || joined == 0 {
		t.Fatalf("amendment in force after round %d, node-6 first included in round %d", amended, joined)
	}
	// Keyed in at the next boundary (the one after, if node-6's process
	// connected after the re-key started).
	if joined > amended+2 {
		t.Errorf("node-6 first included in round %d, the amendment took effect after round %d", joined, amended)
	}
	// The model carries over: the loss goes on falling rather than jump
	// back to where the session started.
	start := h.History[0].Loss
	if before == nil || first == nil || start == nil {
		t.Fatalf("losses: round 1 %v, before the amendment %v, first with node-6 %v", start, before, first)
	}
	t.Logf("loss: round 1 %.4f, last before the amendment %.4f, first round with node-6 (%d) %.4f", *start, *before, joined, *first)
	if *first > *before*1.1 || *first >= *start {
		t.Errorf("the loss went from %.4f to %.4f when node-6 joined (round 1: %.4f): did the model start afresh?", *before, *first, *start)
	}

	sums := f.verifyAudit(8)
	if len(sums) != 7 {
		t.Errorf("%d audit logs verified, want 7 (coordinator and six members): %v", len(sums), sums)
	}
	for _, name := range []string{"coordinator", "node-1", "node-2", "node-3", "node-4", "node-5"} {
		b, err := os.ReadFile(filepath.Join(f.state(name), "audit.log"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`"kind":"`+string(audit.Amended)+`"`)) || !strings.Contains(string(b), "add node-6") {
			t.Errorf("%s's audit log does not record the amendment", name)
		}
	}
	if sums["node-6"].Rounds == 0 {
		t.Errorf("node-6's log records no committed round: %+v", sums["node-6"])
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
