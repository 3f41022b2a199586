package store

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	k, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, KeyFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Size() != KeySize {
		t.Errorf("key file mode %v, size %d", st.Mode(), st.Size())
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".*")); len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
	again, err := LoadOrCreateKey(dir)
	if err != nil || again.KeyID() != k.KeyID() {
		t.Fatalf("second LoadOrCreateKey: %v, %v; want the same key", again, err)
	}
	secret, _ := os.ReadFile(path)
	if strings.Contains(k.KeyID(), string(secret[:4])) || len(k.KeyID()) != 16 {
		t.Errorf("KeyID %q", k.KeyID())
	}

	// Refusals name the file.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key file: %v", err)
	}
	if err := os.WriteFile(path, secret[:31], 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o600)
	if _, err := LoadOrCreateKey(dir); err == nil || !strings.Contains(err.Error(), "31 bytes") {
		t.Errorf("short key file: %v", err)
	}
	if _, err := LoadOrCreateKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("created a key in a missing directory")
	}
}

func TestLoadOrCreateKeyConcurrent(t *testing.T) {
	dir := t.TempDir()
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			k, err := LoadOrCreateKey(dir)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = k.KeyID()
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent creators got different keys: %v", ids)
		}
	}
}

func TestKey(t *testing.T) {
	if _, err := NewKey(make([]byte, 16)); err == nil {
		t.Error("NewKey accepted 16 bytes")
	}
	k := testKey(t, 7)
	a, _ := k.Seal([]byte("secret"), []byte("aad"))
	b, _ := k.Seal([]byte("secret"), []byte("aad"))
	if bytes.Equal(a, b) {
		t.Error("two seals of the same plaintext are equal (nonce reuse)")
	}
	if p, err := k.Open(a, []byte("aad")); err != nil || string(p) != "secret" {
		t.Errorf("Open = %q, %v", p, err)
	}
	if _, err := k.Open(a, []byte("other")); err == nil {
		t.Error("Open ignored the additional data")
	}
	if testKey(t, 8).KeyID() == k.KeyID() {
		t.Error("two keys share an ID")
	}
}
