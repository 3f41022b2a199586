package mhe

import (
	"errors"
	"fmt"
)

// ErrUnknownPreset reports a preset name that is not one of [Presets].
var ErrUnknownPreset = errors.New("mhe: unknown preset")

// Presets returns the named presets, production first.
func Presets() []*Preset { return []*Preset{Agg128, InsecureTest} }

// PresetByName returns the named preset, for manifests and flags that
// name one.
func PresetByName(name string) (*Preset, error) {
	var names []string
	for _, p := range Presets() {
		if p.Name() == name {
			return p, nil
		}
		names = append(names, p.Name())
	}
	return nil, fmt.Errorf("%w %q (want one of %q)", ErrUnknownPreset, name, names)
}
