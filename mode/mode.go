// Package mode turns what a signed federation manifest says into what the
// round engine runs: the [protect.Scheme] of its aggregation mode, and the
// engine's [round.Config].
//
// The coordinator and every node must derive exactly the same, so it lives
// in one place:
//
//	scheme, err := mode.Scheme(man.Mode, man.Preset)
//	cfg, err := mode.RoundConfig(man)
//	lim, err := mode.Limits(man, scheme)
//
// # Message limits
//
// [MessageSizes] bounds every kind of message the federation sends, from
// the manifest alone: the model's parameter count d (its kind, inputs,
// classes and hidden layers), the member count n, the scheme's payload
// sizes for d and n ([protect.Scheme.Sizes]: for mhe, ⌈(d+1)/slots⌉
// ciphertexts of the preset's exact size), the sealed model (8d bytes and
// the server optimizer's state) and stated bounds on evidence, sealing and
// framing. The transport limit is the largest bound with a 25 % [Margin],
// so the coordinator and the nodes agree on it by construction and no peer
// can make another hold more than the protocol needs.
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
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cloisterfl/cloister/mhe"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/round"
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

// RoundConfig returns the engine configuration the manifest implies: the
// session is the manifest's hash, and the training settings travel to the
// nodes as the engine's opaque training configuration.
func RoundConfig(man *pki.Manifest) (round.Config, error) {
	h, err := man.Hash()
	if err != nil {
		return round.Config{}, err
	}
	tc, err := json.Marshal(man.Training)
	if err != nil {
		return round.Config{}, err
	}
	return round.Config{
		Session: h[:], Members: man.Nodes(), Threshold: man.Threshold, MinCohort: man.MinCohort,
		Rounds: man.Training.Rounds, Mode: man.Mode, TrainConfig: tc,
	}, nil
}
