package coordinator

import (
	"bytes"
	"fmt"
	"html/template"
	"math"

	"github.com/cloisterfl/cloister/plot"
	"github.com/cloisterfl/cloister/store"
)

// The dashboard's charts: accuracy, loss and cumulative ε per committed
// round, drawn by package plot as inline SVG on the server. They need no
// script and load nothing, so the page's Content-Security-Policy
// (dashboardCSP) stays as strict as it was: plot draws with presentation
// attributes, not style attributes.

// Chart sizes, in pixels: three fit side by side in a 1200-pixel window.
const (
	chartWidth  = 360
	chartHeight = 180 // the plotting area; the figure adds its title and x labels
)

// chart is one chart of the dashboard.
type chart struct {
	ID      string // accuracy, loss or epsilon
	Title   string
	SVG     template.HTML // empty when there is nothing to draw yet
	Points  int           // rounds drawn
	Caption string        // the range and the last value, in words
}

// charts draws the history's committed rounds: accuracy and loss (the
// nodes' example-weighted means, as /rounds has them) and, with DP, the
// cumulative ε against the budget. It returns no chart before the first
// commit.
func charts(h *History) []chart {
	var accX, accY, lossX, lossY, epsX, epsY []float64
	commits := 0
	for _, r := range h.History {
		if r.Outcome != store.Committed.String() {
			continue
		}
		commits++
		x := float64(r.Round)
		if r.Accuracy != nil && r.Loss != nil {
			accX, accY = append(accX, x), append(accY, *r.Accuracy)
			lossX, lossY = append(lossX, x), append(lossY, *r.Loss)
		}
		if h.Privacy != nil {
			epsX, epsY = append(epsX, x), append(epsY, r.EpsilonTotal)
		}
	}
	if commits == 0 {
		return nil
	}
	out := []chart{
		newChart("accuracy", "Accuracy", "accuracy (example-weighted)", accX, accY, plot.Panel{}),
		newChart("loss", "Loss", "loss (example-weighted)", lossX, lossY, plot.Panel{}),
	}
	if p := h.Privacy; p != nil {
		panel := plot.Panel{}
		if last := epsY[len(epsY)-1]; p.Budget > 0 && last <= p.Budget {
			panel.YMin, panel.YMax = 0, p.Budget // the y axis is the budget
		}
		c := newChart("epsilon", "ε spent (cumulative)", "ε", epsX, epsY, panel)
		c.Caption = fmt.Sprintf("ε %.4g of the budget %g after round %.0f, at δ = %g; the y axis runs to the budget",
			epsY[len(epsY)-1], p.Budget, epsX[len(epsX)-1], p.Delta)
		if panel.YMax == 0 {
			c.Caption = fmt.Sprintf("ε %.4g after round %.0f, at δ = %g (budget %g)", epsY[len(epsY)-1], epsX[len(epsX)-1], p.Delta, p.Budget)
		}
		out = append(out, c)
	}
	return out
}

// newChart draws one series against the round numbers.
func newChart(id, title, ylabel string, x, y []float64, panel plot.Panel) chart {
	c := chart{ID: id, Title: title, Points: len(x)}
	if len(x) == 0 {
		c.Caption = "no node has reported metrics for a committed model yet"
		return c
	}
	lo, hi := 0, 0
	for i := range y {
		if y[i] < y[lo] {
			lo = i
		}
		if y[i] > y[hi] {
			hi = i
		}
	}
	n := len(y) - 1
	rounds := "rounds"
	if len(y) == 1 {
		rounds = "round"
	}
	c.Caption = fmt.Sprintf("min %s (round %.0f) · max %s (round %.0f) · last %s (round %.0f) · %d %s",
		num(y[lo]), x[lo], num(y[hi]), x[hi], num(y[n]), x[n], len(y), rounds)
	panel.YLabel = ylabel
	panel.Series = []plot.Series{{X: x, Y: y}}
	f := plot.Figure{Title: title, XLabel: "round", Width: chartWidth, PanelHeight: chartHeight, Panels: []plot.Panel{panel}}
	var buf bytes.Buffer
	if err := f.WriteSVG(&buf); err != nil {
		c.Caption = "cannot draw: " + err.Error()
		return c
	}
	// plot escapes every text it writes (the titles and labels above are
	// ours; the rest is numbers) and writes no script and no reference.
	c.SVG = template.HTML(buf.String())
	return c
}

// num formats a chart's value for its caption.
func num(v float64) string {
	if math.Abs(v) >= 1e4 || (v != 0 && math.Abs(v) < 1e-3) {
		return fmt.Sprintf("%.3g", v)
	}
	return fmt.Sprintf("%.4f", v)
}
