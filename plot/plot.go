// Package plot draws the figures Cloister writes for people to look at:
// accuracy, loss and privacy spent per round, as standalone SVG files.
//
// # Figures
//
// A [Figure] is a column of [Panel]s that share the x axis (rounds or
// epochs). Each panel has its own y axis, label, grid and legend, so
// quantities of different scale (accuracy in [0, 1], loss, ε) are each
// readable:
//
//	f := plot.Figure{Title: "FedAvg on Fashion-MNIST", XLabel: "round"}
//	f.Panels = append(f.Panels, plot.Panel{YLabel: "test accuracy", Series: []plot.Series{{Name: "mhe", X: x, Y: acc}}})
//	err := f.WriteSVG(w)
//
// The output is plain SVG 1.1 with no scripts or external references.
package plot

import (
	"bufio"
	"errors"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
)

// Series is one named line. A series without a name has no legend entry.
type Series struct {
	Name string
	X, Y []float64 // same length; non-finite points are skipped
}

// Panel is one chart with its own y axis.
type Panel struct {
	YLabel string
	Series []Series
	// YMin and YMax fix the y range when YMax > YMin; otherwise it is fitted.
	YMin, YMax float64
}

// Figure is a column of panels sharing the x axis.
type Figure struct {
	Title  string
	XLabel string
	Panels []Panel
	// Width and PanelHeight are the figure's width and each panel's
	// height, in pixels; 0 means 720 and 260. Text keeps its size.
	Width, PanelHeight float64
}

// Errors callers branch on.
var ErrNoData = errors.New("plot: no finite data points")

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"}

const (
	defaultWidth       = 720.0
	defaultPanelHeight = 260.0
	marginLeft         = 72.0
	marginRight        = 24.0
	titleHeight        = 40.0
	gap                = 56.0 // between panels: room for the x tick labels
	bottom             = 56.0 // room for the x label
)

// WriteSVG writes the figure as an SVG document to w.
func (f Figure) WriteSVG(w io.Writer) error {
	if len(f.Panels) == 0 {
		return fmt.Errorf("plot %q: %w", f.Title, ErrNoData)
	}
	xmin, xmax, ok := extent(f.Panels, func(s Series) []float64 { return s.X })
	if !ok {
		return fmt.Errorf("plot %q: %w", f.Title, ErrNoData)
	}
	xt := ticks(xmin, xmax, 8)
	if integral(f.Panels) {
		xt = integerTicks(xmin, xmax, 8)
	}
	width, panelHeight := defaultWidth, defaultPanelHeight
	if f.Width > 0 {
		width = max(f.Width, marginLeft+marginRight+40)
	}
	if f.PanelHeight > 0 {
		panelHeight = max(f.PanelHeight, 40)
	}
	height := titleHeight + float64(len(f.Panels))*(panelHeight+gap) - gap + bottom

	b := bufio.NewWriter(w)
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(b, `<text x="%g" y="24" text-anchor="middle" font-size="16" font-weight="bold">%s</text>`+"\n", width/2, esc(f.Title))

	plotW := width - marginLeft - marginRight
	for pi, p := range f.Panels {
		top := titleHeight + float64(pi)*(panelHeight+gap)
		ymin, ymax, ok := extent([]Panel{p}, func(s Series) []float64 { return s.Y })
		if p.YMax > p.YMin {
			ymin, ymax, ok = p.YMin, p.YMax, true
		}
		if !ok {
			return fmt.Errorf("plot %q panel %q: %w", f.Title, p.YLabel, ErrNoData)
		}
		yt := ticks(ymin, ymax, 6)
		x := func(v float64) float64 { return marginLeft + (v-xt.lo)/(xt.hi-xt.lo)*plotW }
		y := func(v float64) float64 { return top + panelHeight - (v-yt.lo)/(yt.hi-yt.lo)*panelHeight }

		// Grid and tick labels.
		for _, v := range yt.values {
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", marginLeft, y(v), marginLeft+plotW, y(v))
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", marginLeft-6, y(v), yt.label(v))
		}
		for _, v := range xt.values {
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", x(v), top, x(v), top+panelHeight)
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x(v), top+panelHeight+16, xt.label(v))
		}
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="black"/>`+"\n", marginLeft, top, plotW, panelHeight)
		fmt.Fprintf(b, `<text transform="translate(%.1f %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", 16.0, top+panelHeight/2, esc(p.YLabel))
		if pi == len(f.Panels)-1 {
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", marginLeft+plotW/2, top+panelHeight+40, esc(f.XLabel))
		}

		// Lines, markers and the legend.
		for si, s := range p.Series {
			color := palette[si%len(palette)]
			var path []byte
			for i := range min(len(s.X), len(s.Y)) {
				if !finite(s.X[i]) || !finite(s.Y[i]) {
					continue
				}
				cmd := byte('L')
				if len(path) == 0 {
					cmd = 'M'
				}
				path = fmt.Appendf(path, "%c%.1f %.1f ", cmd, x(s.X[i]), clamp(y(s.Y[i]), top, top+panelHeight))
				fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`+"\n", x(s.X[i]), clamp(y(s.Y[i]), top, top+panelHeight), color)
			}
			if len(path) > 0 {
				fmt.Fprintf(b, `<path d="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", path, color)
			}
			if s.Name == "" {
				continue
			}
			ly := top + 14 + float64(si)*16
			lx := marginLeft + plotW - 150
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", lx, ly, lx+20, ly, color)
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" dominant-baseline="middle">%s</text>`+"\n", lx+26, ly, esc(s.Name))
		}
	}
	fmt.Fprintln(b, "</svg>")
	return b.Flush()
}

func extent(panels []Panel, get func(Series) []float64) (lo, hi float64, ok bool) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, p := range panels {
		for _, s := range p.Series {
			for _, v := range get(s) {
				if finite(v) {
					lo, hi, ok = math.Min(lo, v), math.Max(hi, v), true
				}
			}
		}
	}
	return lo, hi, ok
}

// tickSet is a "nice" axis: round tick values covering [lo, hi].
type tickSet struct {
	lo, hi, step float64
	values       []float64
}

func ticks(lo, hi float64, n int) tickSet {
	if hi-lo < 1e-12*math.Max(1, math.Abs(hi)) {
		lo, hi = lo-0.5, hi+0.5
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	t := tickSet{lo: math.Floor(lo/step) * step, hi: math.Ceil(hi/step) * step, step: step}
	for v := t.lo; v <= t.hi+step/2; v += step {
		t.values = append(t.values, v)
	}
	return t
}

// integral reports whether every x value is a whole number (rounds, epochs).
func integral(panels []Panel) bool {
	for _, p := range panels {
		for _, s := range p.Series {
			for _, v := range s.X {
				if finite(v) && v != math.Trunc(v) {
					return false
				}
			}
		}
	}
	return true
}

// integerTicks is ticks with a whole-number step of 1, 2 or 5 × 10^k.
func integerTicks(lo, hi float64, n int) tickSet {
	t := ticks(lo, hi, n)
	if t.step >= 1 && t.step == math.Trunc(t.step) {
		return t
	}
	step := 1.0
	for _, m := range []float64{1, 2, 5, 10, 20, 50} {
		if m*float64(n) >= hi-lo {
			step = m
			break
		}
	}
	t = tickSet{lo: math.Floor(lo/step) * step, hi: math.Ceil(hi/step) * step, step: step}
	if t.hi == t.lo {
		t.hi = t.lo + step
	}
	for v := t.lo; v <= t.hi+step/2; v += step {
		t.values = append(t.values, v)
	}
	return t
}

func (t tickSet) label(v float64) string {
	prec := max(0, -int(math.Floor(math.Log10(t.step)+1e-9)))
	if t.step/math.Pow(10, math.Floor(math.Log10(t.step))) == 2.5 {
		prec++
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

func esc(s string) string { return html.EscapeString(s) }
