// Package atomicfile writes whole files atomically and durably, the one way
// Cloister writes its keys, certificates, manifests, sealed state and
// reports.
//
// Every write goes to a temporary file in the same directory (created with
// O_EXCL, mode 0600 until the data is in), which is fsynced, then moved into
// place, and the directory is fsynced. A reader sees the old file or the new
// one, never a part; once a call returns, a crash keeps the new one; a
// failed call leaves the old file as it was.
//
// [Write] replaces a file. [Create] refuses to replace one (fs.ErrExist), as
// O_EXCL does: secret files are written with [CreateSecret] (0600, never
// over an existing file) or, when they are meant to be replaced, with
// [WriteSecret].
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// SecretPerm is the mode of secret files: readable and writable by the
// owner only.
const SecretPerm fs.FileMode = 0o600

// testHookWritten, if set, runs after the temporary file is written and
// synced and before it is moved into place; an error makes the write fail
// there.
var testHookWritten func(tmp string) error

// Write replaces (or creates) path with data, mode perm.
func Write(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// Create writes data to a new file at path, mode perm. It fails with an
// error wrapping fs.ErrExist if path exists, even if another process
// creates it concurrently: the temporary file is hard-linked to path, which
// like O_EXCL never replaces anything.
func Create(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("refusing to overwrite %s: %w", path, fs.ErrExist)
		}
		return fmt.Errorf("creating %s: %w", path, err)
	}
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("removing temporary file %s: %w", tmp, err)
	}
	return SyncDir(filepath.Dir(path))
}

// WriteSecret is [Write] with mode [SecretPerm].
func WriteSecret(path string, data []byte) error { return Write(path, data, SecretPerm) }

// CreateSecret is [Create] with mode [SecretPerm].
func CreateSecret(path string, data []byte) error { return Create(path, data, SecretPerm) }

// writeTemp writes data to a new temporary file next to path and returns
// its name. The file never has a wider mode than 0600 while it is
// incomplete.
func writeTemp(path string, data []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	// CreateTemp made the file 0600; set perm once the data is in. Chmod is
	// not subject to the umask, so perm is the mode the file gets.
	if err == nil && perm != SecretPerm {
		err = os.Chmod(tmp, perm)
	}
	if err == nil && testHookWritten != nil {
		err = testHookWritten(tmp)
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return tmp, nil
}

// SyncDir fsyncs directory dir, so that the names created, renamed or
// removed in it survive a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

// CreateDir builds a new directory at dir, mode perm, atomically: fill
// populates a temporary sibling directory, which is then moved into place.
// It fails with an error wrapping fs.ErrExist if dir exists, even if
// another process creates it concurrently: CreateDir first claims the name
// with Mkdir and then renames the filled directory over its own empty
// claim, and rename(2) refuses to replace a directory that is not empty.
// On failure nothing is left behind but, possibly, an empty dir.
func CreateDir(dir string, perm fs.FileMode, fill func(tmp string) error) (err error) {
	dir = filepath.Clean(dir)
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("refusing to overwrite %s: %w", dir, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-*")
	if err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, perm); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := fill(tmp); err != nil {
		return err
	}
	if err := SyncDir(tmp); err != nil {
		return err
	}
	if err := os.Mkdir(dir, perm); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("refusing to overwrite %s: %w", dir, fs.ErrExist)
		}
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	// syscall.Rename, not os.Rename: os.Rename refuses any existing
	// directory, even the empty one just claimed.
	if err := syscall.Rename(tmp, dir); err != nil {
		os.Remove(dir) // the empty claim; fails harmlessly if someone filled it
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	return SyncDir(parent)
}
