package federation

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cloisterfl/cloister/mhe"
	"github.com/cloisterfl/cloister/paillier"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/protect/tee"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/secagg"
)

// ErrUnsupported reports a mode this build does not implement.
var ErrUnsupported = errors.New("federation: aggregation mode not implemented by this build")

// Scheme returns the scheme of the named mode; preset names the HE
// parameters for mode "mhe" and the masking preset for mode "secagg"
// ("secagg64", the default, "secagg32", with "-kK" for a ring of K
// neighbours), the key size of mode "paillier" ("paillier2048", the
// default), and is ignored otherwise.
//
// For mode "tee" it is the coordinator's side, which knows no aggregator
// key and cannot open anything (package protect/tee): its sizes give the
// message limits. A node's scheme reads the aggregator's attested key from
// its keyring, and the aggregator's holds its identity (packages node and
// aggregator).
func Scheme(name, preset string) (protect.Scheme, error) {
	switch name {
	case ModeMHE:
		p, err := mhe.PresetByName(preset)
		if err != nil {
			return nil, fmt.Errorf("mode %s: %w", name, err)
		}
		return mhe.New(p)
	case ModeSecAgg:
		p, err := secagg.PresetByName(preset)
		if err != nil {
			return nil, fmt.Errorf("mode %s: %w", name, err)
		}
		return secagg.New(p)
	case ModePaillier:
		p, err := paillier.PresetByName(preset)
		if err != nil {
			return nil, fmt.Errorf("mode %s: %w", name, err)
		}
		return paillier.New(p)
	case ModePlain:
		return plain.Scheme{}, nil
	case ModeTEE:
		return tee.Scheme{}, nil
	}
	return nil, fmt.Errorf("%w: %q (this build has %s, %s, %s, %s and %s)", ErrUnsupported, name, ModeMHE, ModeSecAgg, ModePaillier, ModeTEE, ModePlain)
}

// RoundConfig returns the engine configuration the manifest implies: the
// session is the manifest's hash, and the training settings travel to the
// nodes as the engine's opaque training configuration.
func RoundConfig(man *Manifest) (round.Config, error) {
	sid, err := man.SessionID()
	if err != nil {
		return round.Config{}, err
	}
	tc, err := json.Marshal(man.Training)
	if err != nil {
		return round.Config{}, err
	}
	return round.Config{
		Session: sid, Serial: man.Serial, Members: man.Nodes(), Threshold: man.Threshold, MinCohort: man.MinCohort,
		Rounds: man.Training.Rounds, Mode: man.Mode, TrainConfig: tc,
	}, nil
}
