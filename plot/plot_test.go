package plot_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/plot"
)

func TestWriteSVG(t *testing.T) {
	f := plot.Figure{
		Title:  "acc & <loss>",
		XLabel: "round",
		Panels: []plot.Panel{
			{YLabel: "accuracy", Series: []plot.Series{{Name: "mhe", X: []float64{1, 2, 3}, Y: []float64{0.5, 0.7, math.NaN()}}}},
			{YLabel: "loss", Series: []plot.Series{{Name: "loss", X: []float64{1, 2, 3}, Y: []float64{2, 1, 0.5}}}},
		},
	}
	var buf bytes.Buffer
	if err := f.WriteSVG(&buf); err != nil {
		t.Fatal(err)
	}
	// Well-formed XML, escaped title, axis labels and legends present.
	d := xml.NewDecoder(bytes.NewReader(buf.Bytes()))
	for {
		if _, err := d.Token(); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("SVG is not well-formed XML: %v", err)
			}
			break
		}
	}
	for _, want := range []string{"acc &amp; &lt;loss&gt;", ">round<", ">accuracy<", ">loss<", ">mhe<", "<path"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if strings.Contains(buf.String(), "NaN") {
		t.Error("SVG contains NaN coordinates")
	}
}

// TestSize: a figure of a given width and panel height says so, and a
// series without a name has no legend entry.
func TestSize(t *testing.T) {
	f := plot.Figure{Title: "accuracy", XLabel: "round", Width: 360, PanelHeight: 180,
		Panels: []plot.Panel{{YLabel: "accuracy", Series: []plot.Series{{X: []float64{1, 2}, Y: []float64{0.5, 0.7}}}}}}
	var buf bytes.Buffer
	if err := f.WriteSVG(&buf); err != nil {
		t.Fatal(err)
	}
	// 40 (title) + 180 + 56 (x labels)
	if want := `width="360" height="276" viewBox="0 0 360 276"`; !strings.Contains(buf.String(), want) {
		t.Errorf("SVG lacks %q:\n%s", want, buf.String())
	}
	// The line and a legend's sample are drawn 2 wide: only the line is.
	if n := strings.Count(buf.String(), `stroke-width="2"`); n != 1 {
		t.Errorf("%d elements 2 wide, want the series' line only (no legend):\n%s", n, buf.String())
	}
}

func TestNoData(t *testing.T) {
	for _, f := range []plot.Figure{
		{},
		{Panels: []plot.Panel{{Series: []plot.Series{{X: []float64{math.NaN()}, Y: []float64{1}}}}}},
	} {
		if err := f.WriteSVG(&bytes.Buffer{}); !errors.Is(err, plot.ErrNoData) {
			t.Errorf("WriteSVG(%+v) = %v, want ErrNoData", f, err)
		}
	}
}

func ExampleFigure_WriteSVG() {
	f := plot.Figure{
		Title:  "FedAvg",
		XLabel: "round",
		Panels: []plot.Panel{{
			YLabel: "test accuracy",
			Series: []plot.Series{{Name: "plain", X: []float64{1, 2, 3}, Y: []float64{0.71, 0.80, 0.84}}},
		}},
	}
	var buf bytes.Buffer
	err := f.WriteSVG(&buf)
	fmt.Println(err, strings.HasPrefix(buf.String(), "<svg"))
	// Output: <nil> true
}

func TestIntegerAxis(t *testing.T) {
	x := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}
	f := plot.Figure{XLabel: "round", Panels: []plot.Panel{{YLabel: "acc", Series: []plot.Series{{Name: "a", X: x, Y: x}}}}}
	var buf bytes.Buffer
	if err := f.WriteSVG(&buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), ">2.5<") || strings.Contains(buf.String(), ">7.5<") {
		t.Error("a round axis has fractional ticks")
	}
	if !strings.Contains(buf.String(), ">20<") {
		t.Error("the round axis lacks a tick at 20")
	}
}
