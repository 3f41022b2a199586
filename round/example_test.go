package round_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hpke"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/strategy"
)

// Example runs a three-member federation in one process: every machine's
// Ready is handled (persist, audit, send, run tasks, Advance) and messages
// go through an in-memory queue. Every member trains Δ = [1 -1], so FedAvg
// moves the model by [1 -1] per round.
func Example() {
	members := []fl.NodeID{"n1", "n2", "n3"}
	cfg := round.Config{
		Session: []byte("example session"), Members: members,
		Threshold: 2, MinCohort: 2, Rounds: 2, Mode: plain.Name,
	}
	keys := newKeys(members)
	coord, err := round.NewCoordinator(round.CoordinatorConfig{
		Config: cfg, Scheme: plain.Scheme{}, Verifier: keys, Rand: rand.New(rand.NewPCG(1, 2)),
	})
	if err != nil {
		panic(err)
	}
	nodes := make(map[fl.NodeID]*round.Node)
	for _, id := range members {
		fedavg, _ := strategy.New("fedavg")
		nodes[id], err = round.NewNode(round.NodeConfig{
			Config: cfg, Self: id, Coordinator: "coordinator", Scheme: plain.Scheme{},
			Sealer: sealer{id, keys}, Box: gcmBox{}, Signer: signer{keys.sign[id]}, Verifier: keys,
			Ledger: &protect.MemLedger{}, Optimizer: fedavg,
			Init: func() fl.Vector { return fl.Vector{0, 0} }, Rand: crand.Reader,
		})
		if err != nil {
			panic(err)
		}
	}

	type delivery struct {
		from fl.NodeID
		m    round.Message
	}
	var queue []delivery
	var evaluated fl.Vector
	for {
		if coord.HasReady() {
			rd := coord.Ready()
			// 1. persist rd.State; 2. append rd.Audit to the audit log; 3. send.
			for _, m := range rd.Messages {
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
			// 1. seal and persist rd.State; 2. append rd.Audit; 3. send.
			for _, m := range rd.Messages {
				queue = append(queue, delivery{id, m})
			}
			n.Advance()
			// 4. run the tasks (in the background, in a real node) and step
			// their results back in as local inputs.
			for _, t := range rd.Tasks {
				switch t.Kind {
				case round.TaskTrain:
					u := fl.Update{Round: t.Round, Delta: fl.Vector{1, -1}, Weight: 1}
					_ = n.Step(id, round.Message{Kind: round.KindTrained, Update: u})
				case round.TaskEvaluate:
					evaluated = t.Model
					_ = n.Step(id, round.Message{Kind: round.KindEvaluated, Round: t.Round,
						Metrics: fl.Metrics{Accuracy: 1, Examples: 1}})
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
			fmt.Println(err)
		}
	}
	st := coord.Status()
	fmt.Println(st.Phase, st.Commits, evaluated)
	// Output: done 2 [2 -2]
}

// keys holds every member's signing and HPKE keys. (A real verifier holds
// public keys from the members' certificates only.)
type keys struct {
	sign map[fl.NodeID]ed25519.PrivateKey
	kem  map[fl.NodeID]hpke.PrivateKey
}

func newKeys(members []fl.NodeID) *keys {
	k := &keys{sign: map[fl.NodeID]ed25519.PrivateKey{}, kem: map[fl.NodeID]hpke.PrivateKey{}}
	for _, id := range members {
		_, k.sign[id], _ = ed25519.GenerateKey(crand.Reader)
		k.kem[id], _ = hpke.MLKEM768X25519().GenerateKey()
	}
	return k
}

func (k *keys) Verify(id fl.NodeID, msg, sig []byte) error {
	priv, ok := k.sign[id]
	if !ok || !ed25519.Verify(priv.Public().(ed25519.PublicKey), msg, sig) {
		return errors.New("bad signature")
	}
	return nil
}

type signer struct{ k ed25519.PrivateKey }

func (s signer) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.k, msg), nil }

// sealer seals with HPKE to the recipient and signs as the sender.
type sealer struct {
	self fl.NodeID
	k    *keys
}

func info(from, to fl.NodeID) []byte { return []byte("cloister seal " + from + " > " + to) }

func (s sealer) Seal(to fl.NodeID, pt []byte) ([]byte, error) {
	in := info(s.self, to)
	sig := ed25519.Sign(s.k.sign[s.self], append(in, pt...))
	return hpke.Seal(s.k.kem[to].PublicKey(), hpke.HKDFSHA256(), hpke.AES256GCM(), in, append(sig, pt...))
}

func (s sealer) Open(from fl.NodeID, ct []byte) ([]byte, error) {
	in := info(from, s.self)
	pt, err := hpke.Open(s.k.kem[s.self], hpke.HKDFSHA256(), hpke.AES256GCM(), in, ct)
	if err != nil || len(pt) < ed25519.SignatureSize {
		return nil, errors.New("cannot open")
	}
	sig, msg := pt[:ed25519.SignatureSize], pt[ed25519.SignatureSize:]
	if s.k.Verify(from, append(in, msg...), sig) != nil {
		return nil, errors.New("not sealed by " + string(from))
	}
	return msg, nil
}

// gcmBox is AES-256-GCM with a random nonce.
type gcmBox struct{}

func (gcmBox) KeySize() int { return 32 }

func (gcmBox) Seal(key, pt, ad []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, _ := cipher.NewGCM(block)
	nonce := make([]byte, aead.NonceSize())
	crand.Read(nonce)
	return aead.Seal(nonce, nonce, pt, ad), nil
}

func (gcmBox) Open(key, ct, ad []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, _ := cipher.NewGCM(block)
	if len(ct) < aead.NonceSize() {
		return nil, errors.New("short ciphertext")
	}
	return aead.Open(nil, ct[:aead.NonceSize()], ct[aead.NonceSize():], ad)
}

// ExampleCoordinator_Exclude excludes a member before the key setup (its
// attestation failed): its Hello is refused and the setup starts among the
// three others as soon as they are live.
func ExampleCoordinator_Exclude() {
	members := []fl.NodeID{"n1", "n2", "n3", "n4"}
	cfg := round.Config{
		Session: []byte("example session"), Members: members,
		Threshold: 2, MinCohort: 2, Rounds: 1, Mode: plain.Name,
	}
	coord, err := round.NewCoordinator(round.CoordinatorConfig{
		Config: cfg, Scheme: plain.Scheme{}, Verifier: newKeys(members), Rand: rand.New(rand.NewPCG(1, 2)),
	})
	if err != nil {
		panic(err)
	}
	coord.Exclude("n4", "unknown measurement")
	for _, id := range members {
		err := coord.Step(id, round.Message{Kind: round.KindHello, Session: cfg.Session})
		if errors.Is(err, round.ErrExcluded) {
			fmt.Println(err)
		}
	}
	for _, m := range coord.Ready().Messages {
		fmt.Println(m.Kind, "to", m.To, m.Participants)
	}
	st := coord.Status()
	fmt.Println(st.Phase, st.Epoch, st.Excluded)
	// Output:
	// round: rejected Hello from n4 (epoch 0, round 0): round: sender is excluded: unknown measurement
	// SetupStart to n1 [n1 n2 n3]
	// SetupStart to n2 [n1 n2 n3]
	// SetupStart to n3 [n1 n2 n3]
	// announce 1 [n4]
}
