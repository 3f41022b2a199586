package fl

import (
	"errors"
	"fmt"
)

// ErrBadName reports a node or coordinator name outside the allowed
// charset or length (see [ValidateName]).
var ErrBadName = errors.New("fl: invalid name")

// MaxNameLen is the longest node or coordinator name.
const MaxNameLen = 64

// ReservedName cannot be a node name: audit logs use it for the coordinator.
const ReservedName = "coordinator"

// ValidateName checks a node or coordinator name: 1 to 64 characters from
// [a-z0-9-], starting and ending with a letter or digit. Names end up in
// certificate subjects, URIs, directory names, manifests and audit logs,
// so the charset is deliberately small.
func ValidateName(name string) error {
	if len(name) == 0 {
		return fmt.Errorf("%w: empty name", ErrBadName)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %q has %d characters, at most %d are allowed", ErrBadName, truncate(name), len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-':
			if i == 0 || i == len(name)-1 {
				return fmt.Errorf("%w: %q starts or ends with '-'", ErrBadName, name)
			}
		default:
			return fmt.Errorf("%w: %q has character %q at offset %d; use only a-z, 0-9 and '-'", ErrBadName, truncate(name), rune(c), i)
		}
	}
	return nil
}

// ValidateNodeID checks a node name: [ValidateName], and not the reserved
// name "coordinator".
func ValidateNodeID(id NodeID) error {
	if err := ValidateName(string(id)); err != nil {
		return err
	}
	if id == ReservedName {
		return fmt.Errorf("%w: %q is reserved for the coordinator", ErrBadName, id)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
