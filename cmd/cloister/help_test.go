package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// TestHelp: -h, --help and help print a usage and succeed, for the binary,
// for every command and for every subcommand.
func TestHelp(t *testing.T) {
	subcommands := map[string][]string{
		"attest":  {"measure", "inspect"},
		"audit":   {"verify"},
		"bench":   {"mhe"},
		"ca":      {"init", "issue"},
		"kit":     {"install"},
		"model":   {"export"},
		"privacy": {"epsilon", "noise", "steps"},
		"trainer": {"describe"},
	}
	var lines [][]string
	for _, h := range []string{"-h", "--help", "help"} {
		lines = append(lines, []string{h})
	}
	for name := range commands {
		for _, h := range []string{"-h", "--help"} {
			lines = append(lines, []string{name, h})
			for _, sub := range subcommands[name] {
				lines = append(lines, []string{name, sub, h})
			}
		}
	}
	for name := range subcommands {
		if _, ok := commands[name]; !ok {
			t.Errorf("the test lists subcommands of %q, which is not a command", name)
		}
	}
	slices.SortFunc(lines, func(a, b []string) int { return strings.Compare(strings.Join(a, " "), strings.Join(b, " ")) })
	for _, args := range lines {
		var stdout, stderr bytes.Buffer
		if err := run(args, strings.NewReader(""), &stdout, &stderr); err != nil {
			t.Errorf("cloister %s: %v", strings.Join(args, " "), err)
			continue
		}
		if out := stdout.String() + stderr.String(); !strings.Contains(out, "Usage") && !strings.Contains(out, "usage") {
			t.Errorf("cloister %s printed no usage:\n%s", strings.Join(args, " "), out)
		}
	}
}
