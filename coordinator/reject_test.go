package coordinator_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/keyring"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport"
)

// TestRejections drives a running federation with a rogue client that holds
// a member's real certificate (node-4's, while node-4 is stopped) and with
// clients that hold no certificate or one of another federation. Every bad
// input is refused with a named reason, nothing crashes, and the session
// completes with node-4 back.
func TestRejections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 4, Threshold: 2, MinCohort: 2, Mode: federation.ModeMHE, Preset: "InsecureTest", DP: &federation.DP{},
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 40, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})}
		f.TrainTime = 100 * time.Millisecond // rounds take time, so that the rogue acts while they go on
		f.StartCoordinator()
		f.StartNodes(4)
		f.WaitStatus("round 2", func(s round.Status) bool { return s.Round >= 2 })
		if err := f.StopNode("node-4"); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("node-4: %v", err)
		}
		f.WaitStatus("node-4 down", func(s round.Status) bool { return !slices.Contains(s.Live, "node-4") })

		// 1. No client certificate: the handshake fails.
		kit4 := f.Kits["node-4"]
		noCert, err := kit4.TLSConfig(pki.Options{})
		if err != nil {
			t.Fatal(err)
		}
		noCert = noCert.Clone()
		noCert.Certificates = nil
		if _, err := transport.Dial(context.Background(), fedtest.Address, transport.ClientConfig{TLS: noCert, Dial: f.Net.Dial}); err == nil {
			t.Error("a client without a certificate connected")
		} else {
			t.Logf("no certificate (refused by the client library): %v", err)
		}
		// The same at the TLS level, so that the coordinator is the one
		// refusing: a TLS 1.3 client finishes its handshake first, and then
		// reads the server's refusal of its certificate.
		tlsDial := func(cfg *tls.Config) (*tls.Conn, error) {
			raw, err := f.Net.Dial(context.Background(), fedtest.Address)
			if err != nil {
				return nil, err
			}
			c := tls.Client(raw, cfg)
			if err := c.Handshake(); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}
		bare := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}}
		if c, err := tlsDial(bare); err == nil {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
			c.Close()
			if err == nil {
				t.Error("the coordinator read from a client without a certificate")
			} else {
				t.Logf("no certificate: %v", err)
			}
		}
		// 2. A certificate of another federation's CA (the client skips its own
		// check of the server, so that the server's check is what refuses it).
		other := fed{fedtest.New(t, pki.InitOptions{Nodes: 2, Threshold: 2, Mode: federation.ModePlain, DP: &federation.DP{}})}
		foreign := &tls.Config{Certificates: []tls.Certificate{other.Kits["node-1"].Credential.TLSCertificate()},
			InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}}
		if c, err := tlsDial(foreign); err == nil {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
			c.Close()
			if err == nil {
				t.Error("the coordinator read from a client of another CA")
			} else {
				t.Logf("foreign CA: %v", err)
			}
		}
		f.WaitMetric(`cloister_coordinator_transport_rejected_total{reason="handshake"}`, 2)

		// 3. A rogue with node-4's real certificate.
		rogue := f.DialAs("node-4", transport.ClientConfig{Limits: transport.Limits{MaxMessage: 128 << 20}})
		msgs := make(chan round.Message, 64)
		go func() {
			for {
				m, err := rogue.Recv(context.Background())
				if err != nil {
					close(msgs)
					return
				}
				f.Log.Info("rogue received", "kind", m.Kind, "round", m.Round)
				if m.Kind == round.KindModel {
					// Report metrics so that the coordinator keeps it live.
					rogue.Send(context.Background(), round.Message{Kind: round.KindMetrics, Session: m.Session, Epoch: m.Epoch,
						Round: m.Round, Metrics: fl.Metrics{Accuracy: 0.5, Loss: 1, Examples: 1}})
				}
				select {
				case msgs <- m:
				case <-rogue.Done(): // closed at the end of the test: do not outlive it
					close(msgs)
					return
				}
			}
		}()
		session, _ := f.Kits["coordinator"].Manifest.Hash()
		send := func(m round.Message) {
			t.Helper()
			m.Session = session[:]
			if err := rogue.Send(context.Background(), m); err != nil {
				t.Fatalf("rogue send %s: %v", m.Kind, err)
			}
		}
		st := f.Coord.Status()
		// The rogue says Hello with node-4's evidence (it holds node-4's
		// audit key), so that the members trust it and the round's pledges
		// close with it.
		sk, err := keyring.NewKeys(nil)
		if err != nil {
			t.Fatal(err)
		}
		send(round.Message{Kind: round.KindHello, Epoch: st.Epoch, Evidence: sk.Evidence(session[:], "node-4", kit4.AuditKey, time.Now(), nil)})
		// A replayed round: an upload for round 1.
		send(round.Message{Kind: round.KindUpload, Epoch: st.Epoch, Round: 1, Payload: []byte("old"), Signature: make([]byte, 64)})
		f.WaitMetric(`cloister_coordinator_rejected_total{reason="replay"}`, 1)
		// A message for another phase: a key-setup announcement during the rounds.
		send(round.Message{Kind: round.KindAnnounce, Epoch: st.Epoch, Payload: []byte("late")})
		f.WaitMetric(`cloister_coordinator_rejected_total{reason="wrong-phase"}`, 1)
		// Now a member again, node-4 is in the next cohort: wait for its Train.
		var tr round.Message
		timeout := time.After(time.Minute)
		for tr.Kind != round.KindTrain {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("the rogue's stream ended: %v", rogue.Err())
				}
				tr = m
			case <-timeout:
				t.Fatalf("the rogue got no Train; status %+v", f.Coord.Status())
			}
		}
		// An upload goes in two steps: a signed pledge of its digest, then,
		// once the pledge set comes, the upload signed under that set.
		garbage := bytes.Repeat([]byte{0xa5}, 4096)
		gd := round.DigestOf(garbage)
		_, otherKey, _ := ed25519.GenerateKey(nil)
		pledge := func(key ed25519.PrivateKey) round.Message {
			sig := ed25519.Sign(key, pledgeSigned(session[:], tr.Epoch, tr.Round, gd))
			return round.Message{Kind: round.KindPledge, Epoch: tr.Epoch, Round: tr.Round,
				Included: []round.Contribution{{Node: "node-4", Digest: gd, Signature: sig}}}
		}
		// A pledge signed by another key than node-4's: forged.
		send(pledge(otherKey))
		f.WaitMetric(`cloister_coordinator_rejected_total{reason="forged"}`, 1)
		// node-4's pledge of garbage, correctly signed, is taken; the pledge
		// set comes back.
		send(pledge(kit4.AuditKey))
		var ps round.Message
		for ps.Kind != round.KindPledges {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("the rogue's stream ended: %v", rogue.Err())
				}
				ps = m
			case <-timeout:
				t.Fatalf("the rogue got no pledge set; status %+v", f.Coord.Status())
			}
		}
		pd := pledgesDigest(session[:], tr.Epoch, tr.Round, ps.Included)
		// An upload that is not the one pledged: forged.
		notPledged := bytes.Repeat([]byte{0x5a}, 4096)
		send(round.Message{Kind: round.KindUpload, Epoch: tr.Epoch, Round: tr.Round, Payload: notPledged,
			Signature: ed25519.Sign(kit4.AuditKey, uploadSigned(session[:], tr.Epoch, tr.Round, round.DigestOf(notPledged), pd))})
		f.WaitMetric(`cloister_coordinator_rejected_total{reason="forged"}`, 2)
		// The pledged garbage, correctly signed under the pledge set: malformed.
		send(round.Message{Kind: round.KindUpload, Epoch: tr.Epoch, Round: tr.Round, Payload: garbage,
			Signature: ed25519.Sign(kit4.AuditKey, uploadSigned(session[:], tr.Epoch, tr.Round, gd, pd))})
		f.WaitMetric(`cloister_coordinator_rejected_total{reason="malformed"}`, 1)
		// A Hello whose evidence claims to be node-1's: the coordinator relays it,
		// every node refuses it (attestation-failed, node-4 distrusted).
		claim := sk.Evidence(session[:], "node-1", kit4.AuditKey, time.Now(), nil)
		send(round.Message{Kind: round.KindHello, Epoch: tr.Epoch, Evidence: claim})
		// Oversized: one byte more than the limit the coordinator computed
		// from the manifest (the rogue's own limit is 128 MiB).
		fed, err := federation.Resolve(f.Kits["coordinator"].Manifest, federation.Overrides{})
		if err != nil {
			t.Fatal(err)
		}
		lim := transport.Limits{MaxMessage: fed.MaxMessage}
		over := round.Message{Kind: round.KindUpload, Session: session[:], Epoch: tr.Epoch, Round: tr.Round, Payload: make([]byte, lim.MaxMessage)}
		size, _ := transport.Size(over)
		over.Payload = over.Payload[:len(over.Payload)-(size-int(lim.MaxMessage))+1]
		if size, _ = transport.Size(over); int64(size) != lim.MaxMessage+1 {
			t.Fatalf("oversized message of %d bytes, want %d", size, lim.MaxMessage+1)
		}
		err = rogue.Send(context.Background(), over)
		select {
		case <-rogue.Done():
		case <-time.After(30 * time.Second):
			t.Fatalf("the coordinator kept a stream that sent %d bytes, above its %d-byte limit", size, lim.MaxMessage)
		}
		if !errors.Is(rogue.Err(), transport.ErrTooLarge) {
			t.Errorf("oversized message: send %v, stream ended with %v, want ErrTooLarge", err, rogue.Err())
		} else if want := fmt.Sprintf("declares %d bytes, the limit is %d", size, lim.MaxMessage); !strings.Contains(rogue.Err().Error(), want) {
			t.Errorf("oversized message: %v, want it to say %q", rogue.Err(), want)
		} else {
			t.Logf("oversized: %v", rogue.Err())
		}
		f.WaitMetric(`cloister_coordinator_transport_rejected_total{reason="too-large"}`, 1)

		// The round goes on without the rogue; node-4 comes back and the
		// session completes.
		f.StartNode("node-4", fedtest.Blobs(120, 6, 3, 3), fedtest.Blobs(90, 6, 3, 99)) // as StartNodes started it
		f.WaitNodes(3 * time.Minute)
		s := f.Coord.Status()
		if s.Phase != round.PhaseDone || s.Commits != 40 {
			t.Fatalf("status %+v, want done after 40 commits", s)
		}
		h, err := f.Coord.History(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if last := h.History[len(h.History)-1]; !slices.Contains(last.Included, "node-4") {
			t.Errorf("the last round included %v, want node-4 back", last.Included)
		}
		f.StopCoordinator()
		f.VerifyAudit(40, 5)
		// The coordinator's log names the refusals; node-1's log the bad evidence.
		for _, want := range []string{"replay", "another phase", "does not come from its authenticated sender", "malformed", "too large"} {
			if !logHas(t, filepath.Join(f.Dir, "coordinator-state", "audit.log"), audit.NodeRefused, want) {
				t.Errorf("the coordinator's audit log has no node-refused record for %q", want)
			}
		}
		if !logHas(t, filepath.Join(f.Dir, "node-1-state", "audit.log"), audit.AttestationFailed, "relayed as node-4") {
			t.Error("node-1's audit log does not record node-4's bad evidence")
		}
	})
}

// uploadSigned, pledgeSigned and pledgesDigest restate round's signature
// inputs (round/codec.go).
func uploadSigned(session []byte, epoch uint64, r fl.Round, d, pledges round.Digest) []byte {
	b := signedPrefix("cloister/round/v2/upload", session, epoch, r)
	b = append(b, d[:]...)
	return append(b, pledges[:]...)
}

func pledgeSigned(session []byte, epoch uint64, r fl.Round, d round.Digest) []byte {
	return append(signedPrefix("cloister/round/v2/pledge", session, epoch, r), d[:]...)
}

func pledgesDigest(session []byte, epoch uint64, r fl.Round, set []round.Contribution) round.Digest {
	b := signedPrefix("cloister/round/v2/pledge-set", session, epoch, r)
	b = appendU64(b, uint64(len(set)))
	for _, p := range set {
		b = appendU64(b, uint64(len(p.Node)))
		b = append(b, p.Node...)
		b = append(b, p.Digest[:]...)
	}
	return round.DigestOf(b)
}

func signedPrefix(label string, session []byte, epoch uint64, r fl.Round) []byte {
	var b []byte
	str := func(p []byte) {
		b = appendU64(b, uint64(len(p)))
		b = append(b, p...)
	}
	str([]byte(label))
	str(session)
	b = appendU64(b, epoch)
	return appendU64(b, uint64(r))
}

func appendU64(b []byte, v uint64) []byte {
	return append(b, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// logHas reports whether the log at path has a record of kind whose reason
// contains s.
func logHas(t *testing.T, path string, kind audit.Kind, s string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		rec, err := audit.ParseRecord(line)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Kind == kind && strings.Contains(rec.Data.Reason, s) {
			return true
		}
	}
	return false
}
