package coordinator

import (
	"testing"
	"time"

	"github.com/cloisterfl/cloister/round"
)

// TestDeadlineTicks: wall-clock deadlines become whole ticks (rounded up,
// at least one), and a zero deadline takes the documented default.
func TestDeadlineTicks(t *testing.T) {
	got := Deadlines{Join: 1200 * time.Millisecond, Collect: time.Millisecond}.ticks(500 * time.Millisecond)
	want := round.Deadlines{Setup: 240, Collect: 1, Reveal: 120, Commit: 120, Eval: 240, Gather: 6, Join: 3}
	if got != want {
		t.Errorf("ticks at 500ms = %+v, want %+v", got, want)
	}
	if d := (Deadlines{}).ticks(DefaultTick); d.Join != 60 {
		t.Errorf("default join deadline %d ticks, want 60 (30s at %v)", d.Join, DefaultTick)
	}
}
