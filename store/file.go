package store

import (
	"fmt"
	"os"

	"github.com/cloisterfl/cloister/internal/atomicfile"
)

// WriteFile writes data to path atomically and durably: into a temporary
// file in the same directory (created 0600, then set to perm), synced,
// renamed over path, and the directory synced. A reader sees the old file or
// the new one, never a part; after WriteFile returns, a crash keeps the new
// one; if it fails, the old file is unchanged.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	if err := atomicfile.Write(path, data, perm); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}
