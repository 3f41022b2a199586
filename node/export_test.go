package node

import (
	"crypto/ed25519"
	"crypto/rand"
	mrand "math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/keyring"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/strategy"
)

// TestExportMatchesEvaluated runs a two-member federation of round engines
// in memory, with this package's keyring, model box and signers, and checks
// that OpenModel (round.OpenModel with this package's keyring.Box) opens every committed
// model to exactly the vector the engine handed to the evaluation task.
func TestExportMatchesEvaluated(t *testing.T) {
	members := []fl.NodeID{"node-1", "node-2"}
	session := []byte("test session")
	cfg := round.Config{Session: session, Members: members, Threshold: 2, MinCohort: 2, Rounds: 3, Mode: plain.Name}
	pubs := map[fl.NodeID]ed25519.PublicKey{}
	privs := map[fl.NodeID]ed25519.PrivateKey{}
	for _, id := range members {
		pubs[id], privs[id], _ = ed25519.GenerateKey(nil)
	}
	coord, err := round.NewCoordinator(round.CoordinatorConfig{Config: cfg, Scheme: plain.Scheme{},
		Verifier: keyring.Verifier(pubs), Rand: mrand.New(mrand.NewPCG(1, 2))})
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[fl.NodeID]*round.Node{}
	keys := map[fl.NodeID]*round.NodeKeys{}
	for _, id := range members {
		sk, err := keyring.NewKeys(nil)
		if err != nil {
			t.Fatal(err)
		}
		kr := keyring.New(session, id, sk, pubs)
		opt, _ := strategy.New("fedavg")
		nodes[id], err = round.NewNode(round.NodeConfig{Config: cfg, Self: id, Coordinator: "coordinator", Scheme: plain.Scheme{},
			Sealer: kr, Box: keyring.Box{}, Signer: keyring.Signer{Key: privs[id]}, Verifier: keyring.Verifier(pubs),
			Ledger: &protect.MemLedger{}, Optimizer: opt, Init: func() fl.Vector { return fl.Vector{0.5, -1, 2} },
			Rand: rand.Reader, Evidence: sk.Evidence(session, id, privs[id], time.Now(), nil), VerifyPeer: kr.VerifyPeer})
		if err != nil {
			t.Fatal(err)
		}
	}
	type delivery struct {
		from fl.NodeID
		m    round.Message
	}
	var queue []delivery
	sealed := map[fl.Round][]byte{}
	evaluated := map[fl.Round]fl.Vector{}
	for steps := 0; steps < 10000; steps++ {
		if coord.HasReady() {
			rd := coord.Ready()
			for _, m := range rd.Messages {
				if m.Kind == round.KindModel {
					sealed[m.Round] = m.Model
				}
				queue = append(queue, delivery{"coordinator", m})
			}
			coord.Advance()
			continue
		}
		busy := false
		for _, id := range members {
			n := nodes[id]
			if !n.HasReady() {
				continue
			}
			busy = true
			rd := n.Ready()
			if rd.Keys != nil {
				keys[id] = rd.Keys
			}
			for _, m := range rd.Messages {
				queue = append(queue, delivery{id, m})
			}
			n.Advance()
			for _, task := range rd.Tasks {
				switch task.Kind {
				case round.TaskTrain:
					u := fl.Update{Round: task.Round, Delta: fl.Vector{0.25, 0.125, -1}, Weight: 1}
					n.Step(id, round.Message{Kind: round.KindTrained, Update: u})
				case round.TaskEvaluate:
					evaluated[task.Round] = task.Model
					n.Step(id, round.Message{Kind: round.KindEvaluated, Round: task.Round, Metrics: fl.Metrics{Accuracy: 1, Examples: 1}})
				}
			}
		}
		if busy {
			continue
		}
		if len(queue) == 0 {
			break
		}
		d := queue[0]
		queue = queue[1:]
		if d.from == "coordinator" {
			err = nodes[d.m.To].Step("coordinator", d.m)
		} else {
			err = coord.Step(d.from, d.m)
		}
		if err != nil {
			t.Fatalf("%s: %v", d.m.Kind, err)
		}
	}
	if st := coord.Status(); st.Commits != 3 {
		t.Fatalf("status %+v, want 3 commits", st)
	}
	gk := keys["node-2"].GroupKey
	for r := fl.Round(1); r <= 3; r++ {
		v, err := OpenModel(gk, session, r, sealed[r])
		if err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		if !slices.Equal(v, evaluated[r]) {
			t.Errorf("round %d: OpenModel gives %v, the engine evaluated %v", r, v, evaluated[r])
		}
		if _, err := OpenModel(gk, session, r+1, sealed[r]); err == nil {
			t.Errorf("round %d's model opened as round %d's", r, r+1)
		}
	}
}

// TestVerifyPeerRollback checks that a member's keys only move forward.
func TestVerifyPeerRollback(t *testing.T) {
	session := []byte("s")
	pub, priv, _ := ed25519.GenerateKey(nil)
	pubs := map[fl.NodeID]ed25519.PublicKey{"node-1": pub, "node-2": pub}
	own, _ := keyring.NewKeys(nil)
	kr := keyring.New(session, "node-1", own, pubs)
	old, _ := keyring.NewKeys(nil)
	cur, _ := keyring.NewKeys(nil)
	t0 := time.Now()
	evOld := old.Evidence(session, "node-2", priv, t0, nil)
	evCur := cur.Evidence(session, "node-2", priv, t0.Add(time.Second), nil)
	if err := kr.VerifyPeer("node-2", evOld); err != nil {
		t.Fatal(err)
	}
	if err := kr.VerifyPeer("node-2", evCur); err != nil {
		t.Fatal(err)
	}
	if err := kr.VerifyPeer("node-2", evCur); err != nil {
		t.Errorf("the same evidence again: %v", err)
	}
	if err := kr.VerifyPeer("node-2", evOld); err == nil {
		t.Error("older evidence replaced newer keys")
	}
	if err := kr.VerifyPeer("node-2", cur.Evidence([]byte("other"), "node-2", priv, t0.Add(2*time.Second), nil)); err == nil {
		t.Error("evidence of another session accepted")
	}
	if err := kr.VerifyPeer("node-2", []byte("garbage")); err == nil {
		t.Error("garbage accepted")
	}
	// Sealed to the current keys, a payload opens only with them.
	kr2 := keyring.New(session, "node-2", cur, pubs)
	kr2.VerifyPeer("node-1", own.Evidence(session, "node-1", priv, t0, nil))
	ct, err := kr.Seal("node-2", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr2.Open("node-1", ct); err != nil {
		t.Error(err)
	}
	krOld := keyring.New(session, "node-2", old, pubs)
	krOld.VerifyPeer("node-1", own.Evidence(session, "node-1", priv, t0, nil))
	if _, err := krOld.Open("node-1", ct); err == nil {
		t.Error("an earlier process's keys opened a payload sealed to the current ones")
	}
}
