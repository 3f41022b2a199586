package coordinator_test

import (
	"context"
	"encoding/binary"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/store"
)

// windows returns every 32-byte window of v's encodings (float64 and
// float32, little- and big-endian) that starts at an element boundary and
// holds no zero element: a run of 4 (float64) or 8 (float32) values of v.
// Windows with a zero are left out because runs of zeros occur in any file.
func windows(v fl.Vector, what string, into map[[32]byte]string) {
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		for i := 0; i+4 <= len(v); i++ {
			var w [32]byte
			ok := true
			for j := range 4 {
				ok = ok && v[i+j] != 0
				order.PutUint64(w[8*j:], math.Float64bits(v[i+j]))
			}
			if ok {
				into[w] = what
			}
		}
		for i := 0; i+8 <= len(v); i++ {
			var w [32]byte
			ok := true
			for j := range 8 {
				f := float32(v[i+j])
				ok = ok && f != 0
				order.PutUint32(w[4*j:], math.Float32bits(f))
			}
			if ok {
				into[w] = what
			}
		}
	}
}

// scan returns what of wins occurs anywhere in b, at any byte offset.
func scan(b []byte, wins map[[32]byte]string) []string {
	var hits []string
	for i := 0; i+32 <= len(b); i++ {
		if what, ok := wins[[32]byte(b[i:i+32])]; ok {
			hits = append(hits, what)
		}
	}
	return hits
}

// scanDir scans every file under dir.
func scanDir(t *testing.T, dir string, wins map[[32]byte]string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, h := range scan(b, wins) {
			hits = append(hits, path+": "+h)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// stateBlobs returns the byte fields of the coordinator's persisted engine
// state, decoded (the state is JSON, so bytes appear in base64 on disk).
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
	out := slices.Concat(st.Model, st.Result, st.Target)
	for _, s := range st.Sealed {
		out = append(out, s...)
	}
	return out
}

// TestBlind runs a federation and checks that nothing the coordinator keeps
// (its state directory, its decoded engine state, its log) holds a window of
// any plaintext update, of any round's sum, or of the final model. In mode
// plain, the same scan finds the sum in the coordinator's state: the positive
// control that shows the scan can see.
func TestBlind(t *testing.T) {
	for _, mode := range []string{pki.ModePlain, pki.ModeMHE} {
		t.Run(mode, func(t *testing.T) {
			opts := pki.InitOptions{Nodes: 3, Threshold: 2, Mode: mode, DP: &pki.DP{},
				Model: pki.ModelSpec{Kind: "softmax"}, Training: pki.Training{Rounds: 2, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}}
			if mode == pki.ModeMHE {
				opts.Preset = "InsecureTest"
			}
			f := newFed(t, opts)
			var mu sync.Mutex
			updates := map[fl.Round]map[fl.NodeID]fl.Update{}
			f.onUpdate = func(u fl.Update) {
				mu.Lock()
				defer mu.Unlock()
				if updates[u.Round] == nil {
					updates[u.Round] = map[fl.NodeID]fl.Update{}
				}
				updates[u.Round][u.Node] = u
			}
			f.startCoordinator()
			test := blobs(90, 6, 3, 99)
			for i, name := range nodeNames(3) {
				f.startNode(name, blobs(120, 6, 3, uint64(i)), test)
			}
			f.waitNodes(2 * time.Minute)
			f.stopCoordinator()

			wins := map[[32]byte]string{}
			sums := map[[32]byte]string{}
			for r, us := range updates {
				var sum fl.Vector
				for _, id := range slices.Sorted(maps.Keys(us)) {
					u := us[id]
					windows(u.Delta, "update of "+string(id)+" round "+itoa(r), wins)
					if sum == nil {
						sum = make(fl.Vector, len(u.Delta))
					}
					sum.Add(1, u.Delta)
				}
				windows(sum, "sum of round "+itoa(r), sums)
			}
			exp, err := node.Export(context.Background(), f.kits["node-1"], "", filepath.Join(f.dir, "node-1-state"), testKey(t))
			if err != nil {
				t.Fatal(err)
			}
			if exp.Round != 2 {
				t.Fatalf("exported the model of round %d, want 2", exp.Round)
			}
			windows(exp.Model, "final model", wins)
			if len(wins) == 0 || len(sums) == 0 {
				t.Fatal("no windows to look for")
			}
			cdir := filepath.Join(f.dir, "coordinator-state")
			state := stateBlobs(t, cdir, f.kits["coordinator"])
			hits := scanDir(t, cdir, wins)
			hits = append(hits, scan(state, wins)...)
			hits = append(hits, scan([]byte(f.logs.String()), wins)...)
			hits = append(hits, scanDir(t, cdir, sums)...)
			sumHits := scan(state, sums)
			t.Logf("%d update/model windows, %d sum windows; %d hits, %d sum hits in the decoded state", len(wins), len(sums), len(hits), len(sumHits))
			if len(hits) > 0 {
				t.Errorf("the coordinator holds plaintext: %v", hits[:min(5, len(hits))])
			}
			switch mode {
			case pki.ModePlain:
				if len(sumHits) == 0 {
					t.Error("positive control: mode plain's coordinator state should hold the last round's sum")
				}
			default:
				if len(sumHits) > 0 {
					t.Errorf("the coordinator's state holds a plaintext sum: %v", sumHits[:min(5, len(sumHits))])
				}
			}
		})
	}
}

func itoa(r fl.Round) string { return strconv.FormatUint(uint64(r), 10) }

func testKey(t *testing.T) *store.Key {
	k, err := store.NewKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}
