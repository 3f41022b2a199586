package attest

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
)

// The TEE of `cloister node --tee FORMAT`: [Open] returns the attester for
// a format; a node attests its process keys with it on every connection to
// the coordinator and at every re-attestation.

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
// (a SimAttester) measuring the node's own binary, whose TCB and debug
// flag come from an optional JSON state file ([SimPlatform]). It proves
// nothing: development and tests only.
type SimTEE struct {
	measurement [48]byte
	stateFile   string

	mu       sync.Mutex
	state    SimPlatform
	platform *SimAttester // for state
}

// NewSimTEE returns a simulated TEE reporting measurement. stateFile, if
// not empty, is read at every attestation; a missing file means the
// default state (TCB DefaultSimTCB, not debug).
func NewSimTEE(measurement [48]byte, stateFile string) *SimTEE {
	return &SimTEE{measurement: measurement, stateFile: stateFile}
}

// Format implements Attester.
func (*SimTEE) Format() string { return FormatSim }

// Attest implements Attester: a sim report over reportData, from a
// platform in the state the state file describes now.
func (s *SimTEE) Attest(reportData [64]byte, now time.Time) ([]byte, error) {
	st, err := s.readState()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.platform == nil || st != s.state {
		p, err := NewSimAttester(SimConfig{Measurement: s.measurement, TCB: st.TCB, Debug: st.Debug, Rand: rand.Reader})
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
		return st, fmt.Errorf("attest: sim TEE state: %w", err)
	}
	if len(b) > maxStateFile {
		return st, fmt.Errorf("attest: sim TEE state %s: %d bytes, at most %d", s.stateFile, len(b), maxStateFile)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return st, fmt.Errorf("attest: sim TEE state %s: %w", s.stateFile, err)
	}
	return st, nil
}

// Open returns the attester for a --tee format: "sim" (a [SimTEE]
// measuring this binary with no launch configuration, as `cloister attest
// measure` does, with the optional state file simState), "sev-snp",
// "tdx" or "nitro" (the hardware devices, which fail with
// ErrUnsupported outside their TEE).
func Open(format, simState string) (Attester, error) {
	switch format {
	case FormatSim:
		m, err := MeasureSelf(nil)
		if err != nil {
			return nil, err
		}
		return NewSimTEE(m, simState), nil
	case FormatSNP:
		return OpenSNP(nil)
	case FormatTDX:
		return OpenTDX()
	case FormatNitro:
		return OpenNitro()
	}
	return nil, fmt.Errorf("attest: unknown TEE %q, want one of %v", format, Formats)
}
