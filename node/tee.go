package node

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/cloisterfl/cloister/attest"
)

// TEEs.
//
// A node with a TEE (`cloister node --tee FORMAT`) attests its session keys
// on every connection to the coordinator and at every re-attestation: the
// report data is attest.ReportData(the coordinator's nonce, the TLS
// session's exported keying material, its session HPKE key, its session
// signing key), and the evidence travels in its Hello evidence.

// DefaultSimTCB is the TCB version a simulated platform reports when its
// state file does not say otherwise; `cloister init --tee sim` sets the
// policy's floor to it.
const DefaultSimTCB = 2

// SimPlatform is the state of a simulated TEE platform: what firmware
// (TCB version) it runs and whether it is in debug mode. A [SimTEE] reads
// it from its state file at every attestation, so that a test can
// "downgrade the firmware" of a running node.
type SimPlatform struct {
	TCB   uint32 `json:"tcb"`
	Debug bool   `json:"debug"`
}

// SimTEE is the simulated TEE of `cloister node --tee sim`: a sim platform
// (attest.SimAttester) measuring the node's own binary, whose TCB and debug
// flag come from an optional JSON state file ([SimPlatform]). It proves
// nothing: development and tests only.
type SimTEE struct {
	measurement [48]byte
	stateFile   string

	mu       sync.Mutex
	state    SimPlatform
	platform *attest.SimAttester // for state
}

// NewSimTEE returns a simulated TEE reporting measurement. stateFile, if
// not empty, is read at every attestation; a missing file means the
// default state (TCB DefaultSimTCB, not debug).
func NewSimTEE(measurement [48]byte, stateFile string) *SimTEE {
	return &SimTEE{measurement: measurement, stateFile: stateFile}
}

// Format implements attest.Attester.
func (*SimTEE) Format() string { return attest.FormatSim }

// Attest implements attest.Attester: a sim report over reportData, from a
// platform in the state the state file describes now.
func (s *SimTEE) Attest(reportData [64]byte, now time.Time) ([]byte, error) {
	st, err := s.readState()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.platform == nil || st != s.state {
		p, err := attest.NewSimAttester(attest.SimConfig{Measurement: s.measurement, TCB: st.TCB, Debug: st.Debug, Rand: rand.Reader})
		if err != nil {
			return nil, err
		}
		s.platform, s.state = p, st
	}
	return s.platform.Attest(reportData, now)
}

// maxStateFile bounds the sim platform's state file.
const maxStateFile = 4 << 10

func (s *SimTEE) readState() (SimPlatform, error) {
	st := SimPlatform{TCB: DefaultSimTCB}
	if s.stateFile == "" {
		return st, nil
	}
	b, err := os.ReadFile(s.stateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("node: sim TEE state: %w", err)
	}
	if len(b) > maxStateFile {
		return st, fmt.Errorf("node: sim TEE state %s: %d bytes, at most %d", s.stateFile, len(b), maxStateFile)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return st, fmt.Errorf("node: sim TEE state %s: %w", s.stateFile, err)
	}
	return st, nil
}

// OpenTEE returns the attester for a --tee format: "sim" (a [SimTEE]
// measuring this binary with no launch configuration, as `cloister attest
// measure` does, with the optional state file simState), "sev-snp",
// "tdx" or "nitro" (the hardware devices, which fail with
// attest.ErrUnsupported outside their TEE).
func OpenTEE(format, simState string) (attest.Attester, error) {
	switch format {
	case attest.FormatSim:
		m, err := attest.MeasureSelf(nil)
		if err != nil {
			return nil, err
		}
		return NewSimTEE(m, simState), nil
	case attest.FormatSNP:
		return attest.OpenSNP(nil)
	case attest.FormatTDX:
		return attest.OpenTDX()
	case attest.FormatNitro:
		return attest.OpenNitro()
	}
	return nil, fmt.Errorf("node: unknown TEE %q, want one of %v", format, attest.Formats)
}
