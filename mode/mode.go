// Package mode turns the aggregation mode a federation manifest names into
// the [protect.Scheme] that implements it.
//
// Both daemons (and tools) must agree on this mapping, so it lives in one
// place:
//
//	scheme, err := mode.Scheme(man.Mode, man.Preset)
//
// # Modes
//
//   - "mhe": threshold multiparty CKKS (package mhe) with the named preset,
//     e.g. "Agg128".
//   - "plain": no protection at all (package protect/plain). It exists for
//     baselines and research; callers print [plain.Warning].
//
// The manifest also reserves "secagg", "paillier" and "tee"; this build
// refuses them with [ErrUnsupported].
package mode

import (
	"errors"
	"fmt"

	"github.com/cloisterfl/cloister/mhe"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
)

// ErrUnsupported reports a mode this build does not implement.
var ErrUnsupported = errors.New("mode: aggregation mode not implemented by this build")

// Scheme returns the scheme of the named mode; preset names the HE
// parameters for mode "mhe" and is ignored otherwise.
func Scheme(name, preset string) (protect.Scheme, error) {
	switch name {
	case pki.ModeMHE:
		p, err := mhe.PresetByName(preset)
		if err != nil {
			return nil, fmt.Errorf("mode %s: %w", name, err)
		}
		return mhe.New(p)
	case pki.ModePlain:
		return plain.Scheme{}, nil
	}
	return nil, fmt.Errorf("%w: %q (this build has %s and %s)", ErrUnsupported, name, pki.ModeMHE, pki.ModePlain)
}
