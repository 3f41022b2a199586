package atomicfile_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cloisterfl/cloister/internal/atomicfile"
)

func Example() {
	dir, _ := os.MkdirTemp("", "atomicfile")
	defer os.RemoveAll(dir)
	key := filepath.Join(dir, "node.key")
	fmt.Println(atomicfile.CreateSecret(key, []byte("secret")))
	err := atomicfile.CreateSecret(key, []byte("another"))
	fmt.Println(errors.Is(err, fs.ErrExist))
	// Output:
	// <nil>
	// true
}
