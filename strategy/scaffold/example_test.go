package scaffold_test

import (
	"fmt"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/strategy/scaffold"
)

// A node's SCAFFOLD round on the loss f(y) = (y − 1)²/2, with two corrected
// local steps.
func Example() {
	model, _ := scaffold.Join(fl.Vector{0}, fl.Vector{0.25}) // x = 0, c = 0.25
	ci := fl.Vector{0}                                       // the node's own control

	x, c, _ := scaffold.Split(model)
	const steps, lr = 2, 0.5
	y := x.Clone()
	for k := 0; k < steps; k++ {
		g := fl.Vector{y[0] - 1}
		scaffold.Correct(g, ci, c) // g − cᵢ + c
		y.Add(-lr, g)
	}
	ci, dc, _ := scaffold.NextControl(ci, c, x, y, steps, lr)
	dy := y.Clone()
	dy.Add(-1, x)
	update, _ := scaffold.Join(dy, dc) // clip, noise, weight and encrypt this
	fmt.Println("update:", update, "new control:", ci)
	// Output: update: [0.5625 -0.8125] new control: [-0.8125]
}
