package trainer

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// maxSocketPath is the longest Unix socket path Linux takes (sun_path is
// 108 bytes with the final NUL).
const maxSocketPath = 107

// Listen creates the trainer API's Unix socket at path, readable and
// writable by the node's user only (0600; a node puts it in its state
// directory, which is 0700 too). A stale socket left by a node that died
// is removed; a socket another process still serves is not, and neither
// is anything that is not a socket. Closing the listener removes the
// socket.
func Listen(path string) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("trainer: socket path %s has %d bytes, the kernel takes at most %d: use a shorter state directory or --trainer-socket", path, len(path), maxSocketPath)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("trainer: %s exists and is not a socket: refusing to replace it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("trainer: another process serves %s (is another node running with this state directory?)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("trainer: removing the stale socket: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("trainer: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("trainer: %w", err)
	}
	return l, nil
}
