package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cloisterfl/cloister/internal/atomicfile"
)

// AtRest seals a node's secrets at rest: an AEAD under a key the store
// never sees. [Key] is the software implementation; a TEE's sealing key
// (or a KMS) can stand behind another.
type AtRest interface {
	// KeyID names the key. It is stored next to each sealed secret, so
	// that opening with another key fails with ErrWrongKey, naming both.
	// It must not reveal the key.
	KeyID() string
	// Seal encrypts and authenticates plaintext, and authenticates aad.
	Seal(plaintext, aad []byte) ([]byte, error)
	// Open reverses Seal; it fails unless sealed and aad are unchanged.
	Open(sealed, aad []byte) ([]byte, error)
}

// KeySize is the size of a [Key]'s secret, in bytes.
const KeySize = 32

// KeyFile is the name of the at-rest key file [LoadOrCreateKey] keeps in
// a kit directory.
const KeyFile = "store.key"

// Key is an [AtRest]: AES-256-GCM with a random 96-bit nonce per seal.
type Key struct {
	aead cipher.AEAD
	id   string
}

var _ AtRest = (*Key)(nil)

// NewKey returns the Key with the given 32-byte secret.
func NewKey(secret []byte) (*Key, error) {
	if len(secret) != KeySize {
		return nil, fmt.Errorf("store: key has %d bytes, want %d", len(secret), KeySize)
	}
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	id := sha256.Sum256(append([]byte("cloister/store key id\x00"), secret...))
	return &Key{aead: aead, id: hex.EncodeToString(id[:8])}, nil
}

// KeyID returns a fingerprint of the key: the first 8 bytes of a
// domain-separated SHA-256 of the secret, in hex.
func (k *Key) KeyID() string { return k.id }

// Seal implements [AtRest].
func (k *Key) Seal(plaintext, aad []byte) ([]byte, error) {
	return k.aead.Seal(nil, nil, plaintext, aad), nil
}

// Open implements [AtRest].
func (k *Key) Open(sealed, aad []byte) ([]byte, error) {
	return k.aead.Open(nil, nil, sealed, aad)
}

// LoadOrCreateKey returns the key in the file [KeyFile] in dir (a node's
// kit directory), creating the file with 32 random bytes, mode 0600, if it
// does not exist. It refuses a key file that group or others can access,
// or that does not hold exactly 32 bytes.
//
// Whoever can read the file can open the node's secrets: the file protects
// copies of the database (backups, a stolen disk image without the kit),
// not a compromised host. Inside a TEE, derive the key from the TEE's
// sealing key and use [NewKey] or an [AtRest] of your own instead.
func LoadOrCreateKey(dir string) (*Key, error) {
	path := filepath.Join(dir, KeyFile)
	secret, err := readKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		secret = make([]byte, KeySize)
		rand.Read(secret)
		err = createKeyFile(path, secret)
		if errors.Is(err, fs.ErrExist) { // created concurrently: use theirs
			secret, err = readKeyFile(path)
		}
	}
	if err != nil {
		return nil, err
	}
	return NewKey(secret)
}

// createKeyFile writes secret to a new file at path, mode 0600, never
// replacing one (an existing file gives an error wrapping fs.ErrExist). A
// crash leaves either no key file or a complete one.
func createKeyFile(path string, secret []byte) error {
	if err := atomicfile.CreateSecret(path, secret); err != nil {
		return fmt.Errorf("store: creating key file: %w", err)
	}
	return nil
}

// readKeyFile reads a key file, refusing one that group or others can
// access (like ssh does) or of the wrong size.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("store: key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("store: key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("store: key file %s is not a regular file", path)
	}
	if p := st.Mode().Perm(); p&0o077 != 0 {
		return nil, fmt.Errorf("store: key file %s has mode %04o; run chmod 600 %s", path, p, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, KeySize+1))
	if err != nil {
		return nil, fmt.Errorf("store: reading key file %s: %w", path, err)
	}
	if len(b) != KeySize {
		return nil, fmt.Errorf("store: key file %s holds %d bytes, want %d", path, len(b), KeySize)
	}
	return b, nil
}
