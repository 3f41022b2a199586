package attest_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cloisterfl/cloister/attest"
)

// A node proves to the coordinator that it runs the allowed binary, bound
// to their TLS connection and to its process keys; evidence relayed into
// another connection is refused. The simulated TEE stands in for SEV-SNP,
// TDX or Nitro.
func Example() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	// The federation admin measures the node binary for the allow-list
	// (`cloister attest measure`).
	dir, _ := os.MkdirTemp("", "attest-example")
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "cloister")
	os.WriteFile(bin, []byte("the node program"), 0o755)
	m, _ := attest.MeasureFile(bin, nil)
	policy := attest.Policy{
		Formats:      []string{attest.FormatSim},
		Measurements: map[string][]string{attest.FormatSim: {hex.EncodeToString(m[:])}},
		MinTCB:       map[string]attest.TCB{attest.FormatSim: {1}},
		MaxAge:       attest.Duration(time.Hour),
		AllowSim:     true,
	}
	for _, w := range policy.Warnings() {
		fmt.Println("warning:", w[:59])
	}

	// The coordinator issues a nonce. Both ends of the TLS connection
	// export the same keying material: attest.SessionEKM(conn.ConnectionState()).
	nonce, _ := attest.NewNonce(rand.Reader, now)
	ekm := bytes.Repeat([]byte{7}, attest.EKMLength)
	b := attest.Binding{Nonce: nonce, EKM: ekm, HPKEPub: []byte("node-1 HPKE key"), SignPub: []byte("node-1 signing key")}

	// The node attests.
	tee, _ := attest.NewSimAttester(attest.SimConfig{Measurement: m, TCB: 1, Rand: rand.Reader})
	evidence, _ := attest.Attest(tee, b, now.Add(time.Second))

	// The coordinator verifies.
	v, _ := attest.NewVerifier(policy, attest.Roots{})
	claims, err := v.Verify(evidence, b, now.Add(2*time.Second))
	fmt.Println(claims.Format, claims.Measurement[:16]+"…", claims.TCB, claims.Debug, err)

	// The same evidence relayed into another connection is refused.
	other := b
	other.EKM = bytes.Repeat([]byte{8}, attest.EKMLength)
	_, err = v.Verify(evidence, other, now.Add(2*time.Second))
	fmt.Println(errors.Is(err, attest.ErrSessionBinding))
	// Output:
	// warning: INSECURE: the attestation policy accepts SIMULATED evidence
	// sim 804bc9e1dbb574b1… [1] false <nil>
	// true
}
