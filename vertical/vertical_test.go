package vertical

import (
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/dataset"
)

// synthetic makes two aligned tables of rows with 3 features each; the
// label is the sign of a linear function of all six plus noise.
func synthetic(rows int, seed uint64) (*Table, *Table) {
	r := mrand.New(mrand.NewPCG(seed, 1))
	a := &Table{Name: "hospital", Columns: []string{"a0", "a1", "a2"}, Classes: []string{"0", "1"}}
	b := &Table{Name: "insurer", Columns: []string{"b0", "b1", "b2"}}
	wa, wb := []float64{1.5, -2, 0.5}, []float64{-1, 2.5, 0.8}
	for i := range rows {
		id := fmt.Sprintf("p%04d", i)
		a.IDs, b.IDs = append(a.IDs, id), append(b.IDs, id)
		s := 0.3
		for j := range 3 {
			x, y := r.NormFloat64()*3+1, r.NormFloat64()
			a.X, b.X = append(a.X, x), append(b.X, y)
			s += wa[j]*(x-1)/3 + wb[j]*y
		}
		label := 0
		if s+r.NormFloat64()*0.3 > 0 {
			label = 1
		}
		a.Y = append(a.Y, label)
	}
	return a, b
}

func testConfig() Config {
	return Config{KeyBits: 512, Epochs: 3, Batch: 64, LearningRate: 0.5, Seed: 1}
}

// TestTrainMatchesCentral: the encrypted protocol computes the same
// gradients as the central Taylor-loss baseline, up to fixed point.
func TestTrainMatchesCentral(t *testing.T) {
	a, b := synthetic(300, 1)
	c := testConfig()
	m, st, err := Train(a, []*Table{b}, c, mrand.NewChaCha8([32]byte{1}))
	if err != nil {
		t.Fatal(err)
	}
	cm, err := Central(a, []*Table{b}, c, true)
	if err != nil {
		t.Fatal(err)
	}
	for p := range m.Parties {
		for j, w := range m.Parties[p].Weights {
			if cw := cm.Parties[p].Weights[j]; math.Abs(w-cw) > 2e-3 {
				t.Errorf("party %d weight %d: %v, central %v", p, j, w, cw)
			}
		}
	}
	if d := math.Abs(m.Parties[0].Intercept - cm.Parties[0].Intercept); d > 2e-3 {
		t.Errorf("intercept %v, central %v", m.Parties[0].Intercept, cm.Parties[0].Intercept)
	}
	if st.Bytes <= 0 || st.Batches != 3*5 {
		t.Errorf("stats %+v", st)
	}
	scores, _, err := Predict(m, a, []*Table{b}, 512, mrand.NewChaCha8([32]byte{2}))
	if err != nil {
		t.Fatal(err)
	}
	plain := Scores(m, []*Table{a, b})
	for i := range scores {
		if math.Abs(scores[i]-plain[i]) > 1e-4 {
			t.Fatalf("row %d: secure score %v, in the clear %v", i, scores[i], plain[i])
		}
	}
	if acc := Accuracy(scores, a.Y); acc < 0.85 {
		t.Errorf("training accuracy %.3f", acc)
	}
}

func TestTrainRefuses(t *testing.T) {
	a, b := synthetic(20, 2)
	b.IDs[3] = "other"
	if _, _, err := Train(a, []*Table{b}, testConfig(), mrand.NewChaCha8([32]byte{})); err == nil || !strings.Contains(err.Error(), "aligned") {
		t.Errorf("misaligned rows: %v", err)
	}
	a.Y = nil
	if _, _, err := Train(a, []*Table{b}, testConfig(), mrand.NewChaCha8([32]byte{})); err == nil {
		t.Error("no labels accepted")
	}
	c := testConfig()
	c.Batch = MaxBatch + 1
	if _, _, err := Train(a, []*Table{b}, c, mrand.NewChaCha8([32]byte{})); err == nil {
		t.Error("oversized batch accepted")
	}
}

func TestParseSpec(t *testing.T) {
	sp, err := ParseSpec("csv:/data/a:b.csv:id=pid:label=dx:columns=x,y")
	if err != nil || sp.Path != "/data/a:b.csv" || sp.ID != "pid" || sp.Label != "dx" || strings.Join(sp.Columns, "|") != "x|y" {
		t.Fatalf("%+v %v", sp, err)
	}
	if sp, err := ParseSpec("csv:px.csv:id=i:scale=none"); err != nil || !sp.Raw || sp.Path != "px.csv" {
		t.Fatalf("scale=none: %+v %v", sp, err)
	}
	for _, bad := range []string{"csv:a.csv", "tsv:a.csv:id=x", "csv::id=x", "csv:a.csv:id=", "csv:a.csv:id=x:id=y", "csv:a.csv:id=x:columns=a,,b", "csv:a.csv:id=x:scale=log"} {
		if _, err := ParseSpec(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestReadCSV(t *testing.T) {
	sp := Spec{Path: "t.csv", ID: "id", Label: "y"}
	tb, err := read("a", sp, strings.NewReader("id,x,y,z\np1,1,yes,2\np2,3,no,4\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	if tb.Rows() != 2 || strings.Join(tb.Columns, ",") != "x,z" || tb.Y[0] != 1 || tb.Y[1] != 0 || tb.Classes[1] != "yes" {
		t.Fatalf("%+v", tb)
	}
	for in, want := range map[string]string{
		"id,x,y\np1,1,a\np1,2,b\n":       "t.csv:3: column \"id\": ID \"p1\" already on line 2",
		"id,x,y\np1,abc,a\np2,2,b\n":     "t.csv:2: column \"x\": \"abc\" is not a finite number",
		"x,y\n1,a\n":                     "t.csv:1: no ID column \"id\"",
		"id,x,y\np1,1,a\np2,2,a\n":       "exactly two distinct values",
		"id,x,y\np1,1,a\np2,2\n":         "t.csv:3",
		"id,x,y\n":                       "no rows",
		"id,x,y\np1,NaN,a\np2,2,b\n":     "not a finite number",
		"id,x,y\n\"p1,1,a\np2,2,b\n":     "t.csv",
		"id,x,y,x\np1,1,a,2\np2,2,b,3\n": "column named twice",
	} {
		_, err := read("a", sp, strings.NewReader(in), false)
		var pe *dataset.ParseError
		if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want a ParseError containing %q", in, err, want)
		}
	}
}

func FuzzRead(f *testing.F) {
	f.Add("id,x,y\np1,1,a\np2,2,b\n")
	f.Add("id,x,y\np1,1,a\np1,2,b\n")
	f.Add("\"id\nx")
	f.Fuzz(func(t *testing.T, in string) {
		tb, err := read("a", Spec{Path: "f.csv", ID: "id", Label: "y"}, strings.NewReader(in), false)
		if err != nil {
			var pe *dataset.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a ParseError", err)
			}
			return
		}
		if len(tb.X) != tb.Rows()*len(tb.Columns) || len(tb.Y) != tb.Rows() {
			t.Fatalf("table of %d rows, %d values, %d labels", tb.Rows(), len(tb.X), len(tb.Y))
		}
	})
}
