package coordinator_test

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/blindscan"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/secagg"
	"github.com/cloisterfl/cloister/store"
)

// scanDir scans every file under dir.
func scanDir(t *testing.T, dir string, wins map[[32]byte]string) []string {
	t.Helper()
	hits, err := blindscan.ScanPath(dir, wins)
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// stateBlobs returns the byte fields of the coordinator's persisted engine
// state, current model and group key, decoded (the state and the group key
// are JSON, so bytes appear in base64 on disk).
func stateBlobs(t *testing.T, dir string, kit *pki.Kit) []byte {
	t.Helper()
	db, err := store.Open(filepath.Join(dir, "coordinator.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h, _ := kit.Manifest.Hash()
	b, err := db.Coordinator(h[:]).State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var st round.CoordinatorState
	if err := st.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	m, gkb, err := db.Coordinator(h[:]).Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := slices.Clone(st.Result)
	if m != nil {
		out = append(out, m.Sealed...)
	}
	if gkb != nil {
		var gk round.GroupKey
		if err := gk.UnmarshalBinary(gkb); err != nil {
			t.Fatal(err)
		}
		out = append(out, gk.Target...)
		out = append(out, gk.Model...)
		for _, s := range gk.Sealed {
			out = append(out, s...)
		}
	}
	return out
}

// TestBlind runs a federation and checks that nothing the coordinator keeps
// (its state directory, its decoded engine state, its log) holds a window of
// any plaintext update, of any round's sum, or of the final model. In mode
// plain, the same scan finds the sum in the coordinator's state: the positive
// control that shows the scan can see. In mode secagg it also looks for the
// fixed-point encodings (at the preset's fractional bits and word width:
// secagg64, the default, and secagg32) of each update and of each round's
// exact sum of quantized updates, which is what
// Helper.Open would hold without the group mask. In mode tee the
// aggregator is a daemon of its own: the coordinator stores and relays
// sealed updates, their concatenation and the result sealed to the group
// key, and its log is scanned with the aggregator's (the harness's logs are
// one buffer), which must hold no plaintext either.
func TestBlind(t *testing.T) {
	for _, c := range []struct{ mode, preset string }{{federation.ModePlain, ""}, {federation.ModeMHE, "InsecureTest"},
		{federation.ModeSecAgg, ""}, {federation.ModeSecAgg, secagg.Q32.Name()}, {federation.ModePaillier, "InsecureTest"}, {federation.ModeTEE, ""}} {
		mode := c.mode
		name := mode
		if c.preset != "" && mode == federation.ModeSecAgg {
			name += "-" + c.preset
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				opts := pki.InitOptions{Nodes: 3, Threshold: 2, Mode: mode, DP: &federation.DP{}, Preset: c.preset,
					Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 2, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}}
				fixed := secagg.Default.Literal()
				if mode == federation.ModeSecAgg {
					p, err := secagg.PresetByName(c.preset)
					if err != nil {
						t.Fatal(err)
					}
					fixed = p.Literal()
				}
				if mode == federation.ModeTEE {
					opts.AggregatorAttestation = simPolicy([48]byte{0xa6}, time.Hour)
				}
				f := fed{fedtest.New(t, opts)}
				var mu sync.Mutex
				updates := map[fl.Round]map[fl.NodeID]fl.Update{}
				f.OnUpdate = func(u fl.Update) {
					mu.Lock()
					defer mu.Unlock()
					if updates[u.Round] == nil {
						updates[u.Round] = map[fl.NodeID]fl.Update{}
					}
					updates[u.Round][u.Node] = u
				}
				f.StartCoordinator()
				if mode == federation.ModeTEE {
					f.StartAggregator(attest.NewSimTEE(aggregatorImage, ""))
				}
				f.StartNodes(3)
				f.WaitNodes(2 * time.Minute)
				f.StopCoordinator()

				wins := map[[32]byte]string{}
				sums := map[[32]byte]string{}
				for r, us := range updates {
					var sum fl.Vector
					var qsum []int64
					for _, id := range slices.Sorted(maps.Keys(us)) {
						u := us[id]
						blindscan.Windows(u.Delta, "update of "+string(id)+" round "+itoa(r), wins)
						if sum == nil {
							sum = make(fl.Vector, len(u.Delta))
							qsum = make([]int64, len(u.Delta))
						}
						sum.Add(1, u.Delta)
						if mode == federation.ModeSecAgg {
							q := blindscan.Quantize(u.Delta, fixed.Frac)
							blindscan.FixedWindows(q, fixed.Bits/8, "fixed-point update of "+string(id)+" round "+itoa(r), wins)
							for i, x := range q {
								qsum[i] += x
							}
						}
					}
					blindscan.Windows(sum, "sum of round "+itoa(r), sums)
					if mode == federation.ModeSecAgg {
						blindscan.FixedWindows(qsum, fixed.Bits/8, "fixed-point sum of round "+itoa(r), sums)
					}
				}
				exp := f.Export("node-1")
				if exp.Round != 2 {
					t.Fatalf("exported the model of round %d, want 2", exp.Round)
				}
				blindscan.Windows(exp.Model, "final model", wins)
				if len(wins) == 0 || len(sums) == 0 {
					t.Fatal("no windows to look for")
				}
				cdir := filepath.Join(f.Dir, "coordinator-state")
				state := stateBlobs(t, cdir, f.Kits["coordinator"])
				hits := scanDir(t, cdir, wins)
				hits = append(hits, blindscan.Scan(state, wins)...)
				hits = append(hits, blindscan.Scan([]byte(f.Logs.String()), wins)...)
				hits = append(hits, scanDir(t, cdir, sums)...)
				sumHits := blindscan.Scan(state, sums)
				t.Logf("%d update/model windows, %d sum windows; %d hits, %d sum hits in the decoded state", len(wins), len(sums), len(hits), len(sumHits))
				if len(hits) > 0 {
					t.Errorf("the coordinator holds plaintext: %v", hits[:min(5, len(hits))])
				}
				switch mode {
				case federation.ModePlain:
					if len(sumHits) == 0 {
						t.Error("positive control: mode plain's coordinator state should hold the last round's sum")
					}
				default:
					if len(sumHits) > 0 {
						t.Errorf("the coordinator's state holds a plaintext sum: %v", sumHits[:min(5, len(sumHits))])
					}
				}
			})
		})
	}
}

func itoa(r fl.Round) string { return strconv.FormatUint(uint64(r), 10) }
