package spec

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		text   string
		name   string
		arg    string
		hasArg bool
	}{
		{"", "", "", false},
		{"mean", "mean", "", false},
		{"  FedAdam : lr=0.1 ", "fedadam", "lr=0.1", true},
		{"csv:Data/x.csv:label=y", "csv", "Data/x.csv:label=y", true},
	} {
		s, err := Parse(tc.text)
		if err != nil || s.Name != tc.name || s.Arg != tc.arg || s.HasArg != tc.hasArg || s.Text != tc.text {
			t.Errorf("Parse(%q) = %+v, %v", tc.text, s, err)
		}
	}
}

func TestArgs(t *testing.T) {
	keys := []string{"lr", "b1", "tau"}
	for _, tc := range []struct {
		text string
		want map[string]float64
	}{
		{"fedadam", map[string]float64{}},
		{"fedadam:0.5", map[string]float64{"lr": 0.5}},
		{"fedadam:lr=0.5, tau = 1e-3", map[string]float64{"lr": 0.5, "tau": 1e-3}},
	} {
		s, err := Parse(tc.text)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Args("lr", keys...)
		if err != nil || !maps.Equal(got, tc.want) {
			t.Errorf("%q: %v, %v; want %v", tc.text, got, err, tc.want)
		}
	}
}

// TestMalformed: every error names the spec as given and says what is
// wrong with it.
func TestMalformed(t *testing.T) {
	for _, tc := range []struct {
		text string
		use  func(Spec) error
		want string
	}{
		{"IID", exact, `"IID": write it as "iid"`},
		{"dirichlet: 0.5", exact, `"dirichlet: 0.5": write it as "dirichlet:0.5"`},
		{"trimmed:", nil, `"trimmed:": empty argument after ':'`},
		{" :0.1", nil, `" :0.1": no name before ':'`},
		{"fedadam:lr=x", args, `"fedadam:lr=x": lr: "x" is not a number`},
		{"fedadam:NaN", args, `"fedadam:NaN": lr: "NaN" is not finite`},
		{"fedadam:lr=1,lr=2", args, `"fedadam:lr=1,lr=2": key "lr" given twice`},
		{"fedadam:eta=1", args, `"fedadam:eta=1": unknown key "eta" (want one of b1, lr)`},
		{"fedadam:lr=1,b1", args, `"fedadam:lr=1,b1": argument "b1" is not key=value`},
		{"mean:3", func(s Spec) error { _, err := s.Args(""); return err }, `"mean:3": mean takes no argument`},
		{"cclip:1", func(s Spec) error { _, err := s.Args("", "tau"); return err }, `"cclip:1": argument "1" is not key=value`},
		{"iid:2", Spec.NoArg, `"iid:2": iid takes no argument`},
		{"dirichlet", func(s Spec) error { _, err := s.Float(); return err }, `"dirichlet": dirichlet needs an argument`},
		{"dirichlet:inf", func(s Spec) error { _, err := s.Float(); return err }, `"dirichlet:inf": "inf" is not finite`},
		{"shards:1.5", func(s Spec) error { _, err := s.Int(); return err }, `"shards:1.5": "1.5" is not an integer`},
	} {
		s, err := Parse(tc.text)
		if err == nil && tc.use != nil {
			err = tc.use(s)
		}
		var e *Error
		if !errors.As(err, &e) || e.Spec != tc.text || err.Error() != tc.want {
			t.Errorf("%q: %v, want %s", tc.text, err, tc.want)
		}
		if !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%q: error %q does not name the spec", tc.text, err)
		}
	}
}

func args(s Spec) error {
	_, err := s.Args("lr", "lr", "b1")
	return err
}

func exact(s Spec) error {
	_, err := ParseExact(s.Text)
	return err
}
