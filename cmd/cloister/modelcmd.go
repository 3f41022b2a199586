package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/store"
)

// marshalIndent encodes v as indented JSON with a final newline.
func marshalIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func runModel(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "export" {
		fmt.Fprint(stdout, "Usage:\n  cloister model export --kit fed/node-1 [--state DIR] --out model.json\n      open the node's current sealed model with the group key from its state and write it in plaintext\n")
		if len(args) == 0 {
			return errors.New("no model subcommand")
		}
		if isHelp(args[0]) {
			return nil
		}
		return withHint(fmt.Errorf("unknown model subcommand %q", args[0]), "cloister model export --kit fed/node-1 --out model.json")
	}
	fs := newFlags("model export", stderr)
	kitDir := fs.String("kit", "", "a node's kit directory (required)")
	state := fs.String("state", "", "the node's state directory (default: KIT/state)")
	out := fs.String("out", "", "file to write the model to, as JSON (required)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *out == "" {
		return withHint(errors.New("no --out"), "cloister model export --kit fed/node-1 --out model.json")
	}
	kit, err := loadKit(*kitDir, pki.RoleNode)
	if err != nil {
		return err
	}
	if *state == "" {
		*state = filepath.Join(*kitDir, "state")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	exp, err := node.Export(ctx, kit, *kitDir, *state, nil)
	if err != nil {
		return err
	}
	b, err := marshalIndent(exp)
	if err != nil {
		return err
	}
	if err := store.WriteFile(*out, b, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote the %s model of round %d (%d parameters) to %s\n", exp.Kind, exp.Round, exp.Params, *out)
	return nil
}
