//go:build unix

package audit

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrLocked: another process has the log open for appending.
var ErrLocked = errors.New("audit: log is open in another process")

// lockFile takes an exclusive advisory lock on f, so that two writers
// never interleave appends to one log.
func lockFile(f *os.File) (unlock func(), err error) {
	fd := int(f.Fd())
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("locking: %w", err)
	}
	return func() { syscall.Flock(fd, syscall.LOCK_UN) }, nil
}
