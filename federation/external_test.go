package federation

import (
	"errors"
	"strings"
	"testing"
)

// externalManifest is testManifest with an external trainer's model.
func externalManifest() *Manifest {
	m := testManifest(5, 3)
	m.Model = ModelSpec{Kind: ModelExternal, Params: 11274, Layout: strings.Repeat("3f", 32)}
	m.Training.Strategy = "fedadam:lr=0.1,b1=0.9,b2=0.99,tau=0.001"
	return m
}

func TestManifestExternalModel(t *testing.T) {
	m := externalManifest()
	if err := m.Validate(); err != nil {
		t.Fatalf("external model: %v", err)
	}
	if got := m.Model.NumParams(); got != 11274 {
		t.Errorf("NumParams() = %d, want the layout's 11274", got)
	}
	if got, want := m.Model.String(), "external (11274 parameters, layout 3f3f3f3f3f3f…)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if VectorLen(m) != 11274 {
		t.Errorf("VectorLen = %d", VectorLen(m))
	}
	cases := []struct {
		name string
		edit func(m *Manifest)
		want string
	}{
		{"no layout", func(m *Manifest) { m.Model.Layout = "" }, "model.layout"},
		{"short layout", func(m *Manifest) { m.Model.Layout = "3f3f" }, "model.layout"},
		{"upper-case layout", func(m *Manifest) { m.Model.Layout = strings.Repeat("3F", 32) }, "model.layout"},
		{"no params", func(m *Manifest) { m.Model.Params = 0 }, "model.params 0"},
		{"too many params", func(m *Manifest) { m.Model.Params = 1<<27 + 1 }, "model.params"},
		{"inputs", func(m *Manifest) { m.Model.Inputs = 784 }, "inputs 784"},
		{"hidden", func(m *Manifest) { m.Model.Hidden = []int{128} }, "hidden [128]"},
		{"scaffold", func(m *Manifest) { m.Training.Strategy = "scaffold:lr=1,frac=1" }, "SCAFFOLD"},
		{"layout on mlp", func(m *Manifest) {
			m.Model = ModelSpec{Kind: "mlp", Inputs: 784, Classes: 10, Hidden: []int{64}, Layout: strings.Repeat("3f", 32)}
		}, "for kind \"external\" only"},
		{"params on softmax", func(m *Manifest) { m.Model = ModelSpec{Kind: "softmax", Inputs: 784, Classes: 10, Params: 7850} }, "for kind \"external\" only"},
	}
	for _, c := range cases {
		m := externalManifest()
		c.edit(m)
		err := m.Validate()
		if !errors.Is(err, ErrInvalidManifest) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidManifest saying %q", c.name, err, c.want)
		}
	}
	// The layout digest is in the signed bytes: another layout is another
	// manifest.
	a, _ := externalManifest().Hash()
	o := externalManifest()
	o.Model.Layout = strings.Repeat("40", 32)
	if b, _ := o.Hash(); a == b {
		t.Error("two layouts, one manifest hash")
	}
}

func TestMessageSizesExternal(t *testing.T) {
	m := externalManifest()
	m.Mode, m.Preset = ModePlain, ""
	s, err := MessageSizes(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Params != 11274 || s.Dim != 11274 {
		t.Errorf("d = %d, dim %d, want the layout's 11274", s.Params, s.Dim)
	}
	m.Model.Params = 0
	if _, err := MessageSizes(m, nil); err == nil {
		t.Error("MessageSizes of an external model without parameters: no error")
	}
}
