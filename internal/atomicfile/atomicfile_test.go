package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func content(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// noTemp fails if a temporary file is left in dir.
func noTemp(t *testing.T, dir string, want int) {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != want {
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %q, want %d entries", names, want)
	}
}

func TestWriteModes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		write func(path string, data []byte) error
		want  fs.FileMode
	}{
		{"public", func(p string, b []byte) error { return Write(p, b, 0o644) }, 0o644},
		{"world-writable perm is not masked away", func(p string, b []byte) error { return Write(p, b, 0o666) }, 0o666},
		{"secret", WriteSecret, 0o600},
		{"create public", func(p string, b []byte) error { return Create(p, b, 0o644) }, 0o644},
		{"create secret", CreateSecret, 0o600},
	} {
		path := filepath.Join(dir, tc.name)
		if err := tc.write(path, []byte("data")); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if m := mode(t, path); m != tc.want {
			t.Errorf("%s: mode %04o, want %04o", tc.name, m, tc.want)
		}
		if c := content(t, path); c != "data" {
			t.Errorf("%s: content %q", tc.name, c)
		}
	}
	noTemp(t, dir, 5)

	// Replacing a public file with a secret one narrows its mode.
	path := filepath.Join(dir, "public")
	if err := WriteSecret(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if m, c := mode(t, path), content(t, path); m != 0o600 || c != "new" {
		t.Errorf("replaced: mode %04o, content %q; want 0600, new", m, c)
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := CreateSecret(path, []byte("one")); err != nil {
		t.Fatal(err)
	}
	for _, create := range []func(string, []byte) error{
		CreateSecret,
		func(p string, b []byte) error { return Create(p, b, 0o644) },
	} {
		if err := create(path, []byte("two")); !errors.Is(err, fs.ErrExist) {
			t.Errorf("second create: %v, want ErrExist", err)
		}
	}
	if m, c := mode(t, path), content(t, path); m != 0o600 || c != "one" {
		t.Errorf("after refusals: mode %04o, content %q; want 0600, one", m, c)
	}
	noTemp(t, dir, 1)
}

func TestFailedWriteKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	if err := Write(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("disk full")
	testHookWritten = func(tmp string) error {
		if c := content(t, tmp); c != "new" {
			t.Errorf("temporary file holds %q", c)
		}
		return boom
	}
	defer func() { testHookWritten = nil }()
	for name, write := range map[string]func() error{
		"Write":        func() error { return Write(path, []byte("new"), 0o644) },
		"WriteSecret":  func() error { return WriteSecret(path, []byte("new")) },
		"CreateSecret": func() error { return CreateSecret(filepath.Join(dir, "fresh"), []byte("new")) },
	} {
		if err := write(); !errors.Is(err, boom) {
			t.Errorf("%s: %v, want the injected failure", name, err)
		}
	}
	if m, c := mode(t, path), content(t, path); m != 0o644 || c != "old" {
		t.Errorf("after failed writes: mode %04o, content %q; want 0644, old", m, c)
	}
	noTemp(t, dir, 1) // no temporary file, no "fresh"
}

func TestWriteMissingDirectory(t *testing.T) {
	if err := Write(filepath.Join(t.TempDir(), "no", "file"), nil, 0o644); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Write into a missing directory: %v, want ErrNotExist", err)
	}
}

func TestCreateDir(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "kit")
	fill := func(tmp string) error { return CreateSecret(filepath.Join(tmp, "key"), []byte("k")) }
	if err := CreateDir(dir, 0o700, fill); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("directory mode %04o, want 0700", m)
	}
	if c := content(t, filepath.Join(dir, "key")); c != "k" {
		t.Errorf("key holds %q", c)
	}
	if err := CreateDir(dir, 0o700, fill); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second CreateDir: %v, want ErrExist", err)
	}
	boom := errors.New("boom")
	if err := CreateDir(filepath.Join(parent, "other"), 0o700, func(string) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("failed fill: %v", err)
	}
	noTemp(t, parent, 1) // the failed fill left nothing
}
