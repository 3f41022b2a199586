package node

import (
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/keyring"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/transport"
)

// TestWithinModeBounds checks this package's sealing against
// the bounds package federation computes the transport limits with.
func TestWithinModeBounds(t *testing.T) {
	long := func(p string) fl.NodeID { return fl.NodeID(p + strings.Repeat("x", fl.MaxNameLen-len(p))) }
	a, b := long("a-"), long("b-")
	session := make([]byte, 64)
	pub, priv, _ := ed25519.GenerateKey(nil)
	pubs := map[fl.NodeID]ed25519.PublicKey{a: pub, b: pub}
	ka, _ := keyring.NewKeys(nil)
	kb, _ := keyring.NewKeys(nil)
	ev := kb.Evidence(session, b, priv, time.Now(), nil)
	kr := keyring.New(session, a, ka, pubs)
	if err := kr.VerifyPeer(b, ev); err != nil {
		t.Fatal(err)
	}
	// The engine's envelope around a sealed payload (labels, a 64-byte
	// session, the epoch, two 64-byte names, lengths) takes under 512 bytes.
	const envelope = 512
	for _, n := range []int{0, 1000, 100_000} {
		ct, err := kr.Seal(b, make([]byte, n))
		if err != nil {
			t.Fatal(err)
		}
		if over := len(ct) - n; over+envelope > federation.SealOverhead {
			t.Errorf("sealing %d bytes adds %d, and the envelope up to %d: more than federation.SealOverhead %d", n, over, envelope, federation.SealOverhead)
		} else if n == 0 {
			t.Logf("HPKE sealing adds %d bytes (federation.SealOverhead %d)", over, federation.SealOverhead)
		}
	}
	// A sealed model: the engine's encoding (label, two lengths) and GCM.
	const encoding = 64
	key := make([]byte, 32)
	ct, err := keyring.Box{}.Seal(key, make([]byte, 1000), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	if over := len(ct) - 1000; over+encoding > federation.ModelOverhead {
		t.Errorf("sealing a model adds %d bytes and the encoding %d: more than federation.ModelOverhead %d", over, encoding, federation.ModelOverhead)
	}
}

// newKitNode provisions a 2-node plain federation with the given model
// and training settings and returns node-1's kit.
func newKitNode(t *testing.T, ms federation.ModelSpec, tr federation.Training) *pki.Kit {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fed")
	if err := pki.InitFederation(dir, pki.InitOptions{Nodes: 2, Threshold: 2, Mode: federation.ModePlain, DP: &federation.DP{},
		Model: ms, Training: tr}, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	kit, err := pki.LoadKit(filepath.Join(dir, "node-1"))
	if err != nil {
		t.Fatal(err)
	}
	return kit
}

func tinySet(features, classes int) *dataset.Set {
	s := &dataset.Set{Name: "tiny", Features: features, Classes: classes}
	for i := range 4 * classes {
		for j := range features {
			s.X = append(s.X, float64((i+j)%3))
		}
		s.Y = append(s.Y, i%classes)
	}
	return s
}

// TestNewChecksManifest: local data of other dimensions than the
// manifest's model, and a message limit below the federation's need, are
// refused with errors that name both sides.
func TestNewChecksManifest(t *testing.T) {
	kit := newKitNode(t, federation.ModelSpec{Kind: "softmax", Inputs: 6, Classes: 3},
		federation.Training{Momentum: 0.5, ProxMu: 0.01, Strategy: "fedadam"})
	newNode := func(train, test *dataset.Set, maxMsg int64) error {
		n, err := New(Config{Kit: kit, StateDir: t.TempDir(), Train: train, Test: test})
		if err == nil {
			n.close()
		}
		if maxMsg != 0 {
			n, err = New(Config{Kit: kit, StateDir: t.TempDir(), Train: train, Test: test, Limits: transportLimits(maxMsg)})
			if err == nil {
				n.close()
			}
		}
		return err
	}
	if err := newNode(tinySet(6, 3), tinySet(6, 3), 0); err != nil {
		t.Fatalf("data that fits: %v", err)
	}
	for name, c := range map[string]struct{ train, test *dataset.Set }{
		"features": {tinySet(7, 3), tinySet(6, 3)},
		"classes":  {tinySet(6, 3), tinySet(6, 4)},
	} {
		err := newNode(c.train, c.test, 0)
		if !errors.Is(err, ErrDataMismatch) {
			t.Errorf("%s: %v, want ErrDataMismatch", name, err)
			continue
		}
		t.Logf("%s: %v", name, err)
		if !strings.Contains(err.Error(), "6 inputs and 3 classes") {
			t.Errorf("%s: %q does not name the manifest's dimensions", name, err)
		}
	}
	err := newNode(tinySet(6, 3), tinySet(6, 3), 1000)
	if !errors.Is(err, federation.ErrLimitTooSmall) {
		t.Errorf("a 1000-byte limit: %v, want federation.ErrLimitTooSmall", err)
	} else {
		t.Log(err)
	}
	// The trainer takes the manifest's local settings, and the optimizer is
	// the manifest's.
	tr, err := newTrainer(kit.Manifest, "node-1", tinySet(6, 3), tinySet(6, 3), mustScheme(t, kit).Capacity(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if sgd := tr.local.(*builtin).sgd; sgd.Momentum != 0.5 || sgd.ProxMu != 0.01 {
		t.Errorf("trainer SGD %+v, want the manifest's momentum 0.5 and μ 0.01", sgd)
	}
}

func transportLimits(maxMsg int64) transport.Limits { return transport.Limits{MaxMessage: maxMsg} }

func mustScheme(t *testing.T, kit *pki.Kit) protect.Scheme {
	t.Helper()
	s, err := federation.Scheme(kit.Manifest.Mode, kit.Manifest.Preset)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
