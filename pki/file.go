package pki

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrInsecureKey reports a private key file that others can read or write.
var ErrInsecureKey = errors.New("pki: private key file is accessible to others")

const (
	secretPerm = 0o600 // private keys
	publicPerm = 0o644 // certificates, manifests, configs
	dirPerm    = 0o700 // kit and federation directories (they hold keys)
)

// createFile writes data to a new file at path, atomically and without
// replacing anything: it writes a temporary file in the same directory
// (O_EXCL, mode perm), fsyncs it, hard-links it to path (which fails if path
// exists, like O_EXCL), removes the temporary name and fsyncs the directory.
// A reader never sees a partial file, and an existing file is never
// overwritten.
func createFile(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("pki: refusing to overwrite %s: %w", path, fs.ErrExist)
		}
		return fmt.Errorf("pki: creating %s: %w", path, err)
	}
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("pki: removing temporary file %s: %w", tmp, err)
	}
	return syncDir(filepath.Dir(path))
}

// replaceFile atomically replaces (or creates) path with data: temporary
// file, fsync, rename, fsync of the directory.
func replaceFile(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pki: replacing %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func writeTemp(path string, data []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("pki: writing %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(tmp)
		return "", fmt.Errorf("pki: writing %s: %w", path, err)
	}
	// CreateTemp opens with O_EXCL and mode 0600; widen only public files.
	if perm != secretPerm {
		if err := f.Chmod(perm); err != nil {
			return fail(err)
		}
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("pki: writing %s: %w", path, err)
	}
	return tmp, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("pki: syncing directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("pki: syncing directory %s: %w", dir, err)
	}
	return nil
}

// createDir builds a new directory at dir atomically: fill populates a
// temporary sibling directory, which is then renamed into place. dir must
// not exist. To make the final step refuse a concurrently created dir,
// createDir first claims the name with Mkdir (which fails if it exists) and
// then renames the filled directory over its own empty claim; rename(2)
// refuses to replace a directory that is not empty.
func createDir(dir string, fill func(tmp string) error) (err error) {
	dir = filepath.Clean(dir)
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("pki: refusing to overwrite %s: %w", dir, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pki: %w", err)
	}
	parent := filepath.Dir(dir)
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-*")
	if err != nil {
		return fmt.Errorf("pki: creating %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, dirPerm); err != nil {
		return fmt.Errorf("pki: creating %s: %w", dir, err)
	}
	if err := fill(tmp); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.Mkdir(dir, dirPerm); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("pki: refusing to overwrite %s: %w", dir, fs.ErrExist)
		}
		return fmt.Errorf("pki: creating %s: %w", dir, err)
	}
	// syscall.Rename, not os.Rename: os.Rename refuses any existing
	// directory, even the empty one we just claimed.
	if err := syscall.Rename(tmp, dir); err != nil {
		os.Remove(dir) // our empty claim; fails harmlessly if someone filled it
		return fmt.Errorf("pki: creating %s: %w", dir, err)
	}
	return syncDir(parent)
}

// readSecret reads a private key file, refusing one that group or others
// can access (like ssh does).
func readSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("pki: key file %s is not a regular file", path)
	}
	if p := st.Mode().Perm(); p&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o; run chmod 600 %s", ErrInsecureKey, path, p, path)
	}
	return readLimited(f, path)
}

func readPublic(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	defer f.Close()
	return readLimited(f, path)
}

// maxFile bounds every file pki reads.
const maxFile = 1 << 20

func readLimited(f *os.File, path string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("pki: reading %s: %w", path, err)
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("pki: %s is larger than %d bytes", path, maxFile)
	}
	return b, nil
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown
// fields and trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}
