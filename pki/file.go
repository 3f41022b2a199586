package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cloisterfl/cloister/internal/atomicfile"
)

// ErrInsecureKey reports a private key file that others can read or write.
var ErrInsecureKey = errors.New("pki: private key file is accessible to others")

const (
	secretPerm = 0o600 // private keys
	publicPerm = 0o644 // certificates, manifests, configs
	dirPerm    = 0o700 // kit and federation directories (they hold keys)
)

// createFile writes data to a new file at path, atomically and without
// replacing anything (see [atomicfile.Create]): an existing file gives an
// error wrapping fs.ErrExist.
func createFile(path string, data []byte, perm fs.FileMode) error {
	if err := atomicfile.Create(path, data, perm); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// replaceFile atomically replaces (or creates) path with data.
func replaceFile(path string, data []byte, perm fs.FileMode) error {
	if err := atomicfile.Write(path, data, perm); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// createDir builds a new directory at dir atomically: fill populates a
// temporary sibling directory, which is then moved into place (see
// [atomicfile.CreateDir]). dir must not exist.
func createDir(dir string, fill func(tmp string) error) error {
	if err := atomicfile.CreateDir(dir, dirPerm, fill); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
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

// WriteCredential writes an observer's or admin's credential to a new
// directory dir (0700): ca.pem (the federation CA, to check the
// coordinator's server certificate), cert.pem and key.pem (0600): what
// `curl --cacert ca.pem --cert cert.pem --key key.pem` takes. dir must not
// exist.
func WriteCredential(dir string, ca *x509.Certificate, cred *Credential) error {
	if err := cred.check(); err != nil {
		return err
	}
	keyPEM, err := encodeKey(cred.Key)
	if err != nil {
		return err
	}
	return createDir(dir, func(tmp string) error {
		if err := createFile(filepath.Join(tmp, CACertFile), encodeCert(ca), publicPerm); err != nil {
			return err
		}
		if err := createFile(filepath.Join(tmp, CertFile), encodeCert(cred.Cert), publicPerm); err != nil {
			return err
		}
		return createFile(filepath.Join(tmp, KeyFile), keyPEM, secretPerm)
	})
}
