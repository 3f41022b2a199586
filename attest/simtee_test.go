package attest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSimTEEState: a sim TEE reports the platform its state file
// describes at every attestation (a test downgrades a running node's
// firmware so), and refuses a garbled one.
func TestSimTEEState(t *testing.T) {
	var m [48]byte
	path := filepath.Join(t.TempDir(), "state.json")
	tee := NewSimTEE(m, path)
	v, _ := NewVerifier(Policy{Formats: []string{FormatSim}, AllowSim: true, AllowDebug: true,
		MaxAge: Duration(time.Hour), Measurements: map[string][]string{FormatSim: {hex.EncodeToString(m[:])}}}, Roots{})
	claims := func() *Claims {
		t.Helper()
		nonce, _ := NewNonce(rand.Reader, time.Now())
		b := Binding{Nonce: nonce, EKM: []byte("ekm"), HPKEPub: []byte("hpke key"), SignPub: []byte("signing key")}
		ev, err := Attest(tee, b, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c, err := v.Verify(ev, b, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := claims(); c.TCB[0] != DefaultSimTCB || c.Debug {
		t.Errorf("no state file: %+v", c)
	}
	os.WriteFile(path, []byte(`{"tcb": 1, "debug": true}`), 0o600)
	if c := claims(); c.TCB[0] != 1 || !c.Debug {
		t.Errorf("downgraded: %+v", c)
	}
	os.WriteFile(path, []byte(`{"tcb": "x"}`), 0o600)
	if _, err := tee.Attest([64]byte{}, time.Now()); err == nil {
		t.Error("a garbled state file was accepted")
	}
	if _, err := Open("sev-snp", ""); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Open(sev-snp) here: %v, want ErrUnsupported", err)
	}
}
