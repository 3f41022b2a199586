package simulation

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/cloisterfl/cloister/attack"
	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/model"
	"github.com/cloisterfl/cloister/robust"
	"github.com/cloisterfl/cloister/strategy"
)

// blocks returns n 4×4 images in 3 classes: class k lights up row k; the
// last row, where a backdoor trigger goes, is faint noise in every class.
func blocks(n int, seed uint64) *dataset.Set {
	rng := rand.New(rand.NewPCG(seed, 99))
	s := &dataset.Set{Name: "blocks", Features: 16, Classes: 3, X: make([]float64, 16*n), Y: make([]int, n)}
	for i := range n {
		k := rng.IntN(3)
		s.Y[i] = k
		row := s.Row(i)
		for j := range row {
			row[j] = 0.3 * rng.Float64()
			if j/4 == k {
				row[j] += 0.4 + 0.3*rng.Float64()
			}
		}
	}
	return s
}

func split() dataset.Split {
	return dataset.Split{Train: blocks(600, 1), Test: blocks(300, 2)}
}

func config(t *testing.T) Config {
	t.Helper()
	fedavg, err := strategy.New("fedavg")
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Data:      split(),
		Model:     model.Spec{Kind: model.Softmax},
		Optimizer: model.SGD{LR: 0.1, Momentum: 0.5, Batch: 16},
		Strategy:  fedavg, Nodes: 10, Partition: dataset.IID{}, Rounds: 5, LocalEpochs: 1, Seed: 7,
	}
}

func run(t *testing.T, cfg Config) *Result {
	t.Helper()
	res, err := Run(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func mustRule(t *testing.T, spec string, n int) robust.Rule {
	t.Helper()
	r, err := robust.Parse(spec, n)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustAttack(t *testing.T, spec string, n, f int) attack.Attack {
	t.Helper()
	a, err := attack.Parse(spec, n, f)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// spy records what the simulation asks of an attack.
type spy struct {
	mu       sync.Mutex
	poisoned []string // names of the shards poisoned
	own      []int    // len(own) per Forge
	honest   []int    // len(honest) per Forge
}

func (*spy) Name() string   { return "spy" }
func (*spy) String() string { return "spy" }
func (s *spy) Poison(set *dataset.Set, _ *rand.Rand) (*dataset.Set, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.poisoned = append(s.poisoned, set.Name)
	return set, nil
}
func (s *spy) Forge(own, honest []fl.Vector, _ *rand.Rand) ([]fl.Vector, error) {
	s.own = append(s.own, len(own))
	s.honest = append(s.honest, len(honest))
	return attack.None{}.Forge(own, nil, nil)
}

// The first F nodes, and only they, are attackers: their shards are
// poisoned once, and each round's Forge sees F own and n−F honest updates.
// An attack that changes nothing leaves the run bit-identical to a clean one.
func TestAttackWiring(t *testing.T) {
	cfg := config(t)
	clean := run(t, cfg)
	s := &spy{}
	cfg.Attack, cfg.Byzantine = s, 3
	res := run(t, cfg)
	if len(s.poisoned) != 3 {
		t.Errorf("%d shards poisoned, want 3", len(s.poisoned))
	}
	if !reflect.DeepEqual(s.own, []int{3, 3, 3, 3, 3}) || !reflect.DeepEqual(s.honest, []int{7, 7, 7, 7, 7}) {
		t.Errorf("Forge saw own %v, honest %v", s.own, s.honest)
	}
	if !reflect.DeepEqual(clean.Params, res.Params) {
		t.Error("a no-op attack changed the model")
	}
	if res.Setup.Attack != "spy" || res.Setup.Byzantine != 3 {
		t.Errorf("setup %+v", res.Setup)
	}
}

// Sign flipping by 2 of 10 nodes (×4) cancels the mean's progress, while
// the median, the trimmed mean and Krum stay close to the clean run.
func TestSignFlipAgainstRules(t *testing.T) {
	cfg := config(t)
	clean := run(t, cfg).Final.Accuracy
	if clean < 0.9 {
		t.Fatalf("clean accuracy %.3f: the toy task should be easy", clean)
	}
	cfg.Attack, cfg.Byzantine = mustAttack(t, "sign-flip", 10, 2), 2
	mean := run(t, cfg).Final.Accuracy
	if mean > clean-0.2 {
		t.Errorf("mean under sign flipping: %.3f, clean %.3f: expected a collapse", mean, clean)
	}
	for _, spec := range []string{"median", "trimmed:0.2", "krum:f=2", "bulyan:f=1", "cclip"} {
		cfg.Rule = mustRule(t, spec, 10)
		res := run(t, cfg)
		if acc := res.Final.Accuracy; acc < clean-0.05 {
			t.Errorf("%s under sign flipping: %.3f, clean %.3f", spec, acc, clean)
		}
		if res.Setup.Rule != cfg.Rule.String() {
			t.Errorf("setup records rule %q", res.Setup.Rule)
		}
	}
}

// A clip bound shortens the scaled attackers' updates every round and keeps
// the model close to the clean one.
func TestClipBoundsScaling(t *testing.T) {
	cfg := config(t)
	cfg.Clip = 0.5
	clipOnly := run(t, cfg)
	cfg.Attack, cfg.Byzantine = mustAttack(t, "scale:100", 10, 2), 2
	res := run(t, cfg)
	for _, r := range res.Rounds {
		if r.Clipped < 2 {
			t.Errorf("round %d: %d updates clipped, want at least the 2 attackers", r.Round, r.Clipped)
		}
		if !(r.UpdateNorm > 0) {
			t.Errorf("round %d: update norm %v", r.Round, r.UpdateNorm)
		}
	}
	if d := math.Abs(res.Final.Accuracy - clipOnly.Final.Accuracy); d > 0.05 {
		t.Errorf("clipped scaling attack: accuracy %.3f vs %.3f without attack", res.Final.Accuracy, clipOnly.Final.Accuracy)
	}
}

// A boosted backdoor succeeds against the mean (positive control); the
// clean model's backdoor accuracy, measured with no attacker, is low.
func TestBackdoor(t *testing.T) {
	cfg := config(t)
	cfg.Attack, cfg.Byzantine = mustAttack(t, "backdoor:target=0,size=1,frac=0.5,value=2", 10, 1), 0
	base := run(t, cfg)
	cfg.Byzantine = 1
	atk := run(t, cfg)
	for _, r := range append(base.Rounds, atk.Rounds...) {
		if r.BackdoorAccuracy == nil {
			t.Fatalf("round %d: no backdoor accuracy", r.Round)
		}
	}
	b0, b1 := *base.Final.BackdoorAccuracy, *atk.Final.BackdoorAccuracy
	t.Logf("backdoor accuracy %.3f with the attacker, %.3f without", b1, b0)
	if b0 > 0.3 || b1 < 0.8 {
		t.Errorf("backdoor accuracy %.3f with the attacker, %.3f without", b1, b0)
	}
	if base.Setup.Byzantine != 0 || atk.Setup.Attack == "" {
		t.Errorf("setups %+v, %+v", base.Setup, atk.Setup)
	}
}

// ε per round grows and matches the dp accountant with the distributed
// multiplier; the budget stops the run before the round that would exceed
// it, at the round dp.Budget predicts.
func TestPrivacyAccounting(t *testing.T) {
	cfg := config(t)
	cfg.Rounds = 6
	cfg.Clip = 1
	cfg.Privacy = &Privacy{Noise: 2}
	res := run(t, cfg)
	if len(res.Rounds) != 6 || res.Stopped != "" {
		t.Fatalf("%d rounds, stopped %q", len(res.Rounds), res.Stopped)
	}
	dim := res.Setup.Params
	z, err := dp.DistributedMultiplier(2, 1, 10, dim, dp.DefaultBits)
	if err != nil {
		t.Fatal(err)
	}
	var acc dp.Accountant
	prev := 0.0
	for _, r := range res.Rounds {
		acc.Compose(1, z, 1)
		want, _, _ := acc.Epsilon(DefaultDelta)
		if r.Epsilon <= prev || math.Abs(r.Epsilon-want) > 1e-12*want {
			t.Errorf("round %d: ε %v after %v, want %v", r.Round, r.Epsilon, prev, want)
		}
		prev = r.Epsilon
	}
	if p := res.Setup.Privacy; p.MinCohort != 10 || p.SampleRate != 1 || p.Multiplier != z || math.Abs(p.ShareStd-2/math.Sqrt(10)) > 1e-15 {
		t.Errorf("privacy setup %+v", p)
	}
	if res.Final.Epsilon != prev {
		t.Errorf("final ε %v, last round %v", res.Final.Epsilon, prev)
	}

	// A budget between rounds 3 and 4.
	e3, e4 := res.Rounds[2].Epsilon, res.Rounds[3].Epsilon
	cfg.Privacy = &Privacy{Noise: 2, Budget: (e3 + e4) / 2}
	stopped := run(t, cfg)
	if len(stopped.Rounds) != 3 || !strings.Contains(stopped.Stopped, "round 4") {
		t.Errorf("budget %v: %d rounds, stopped %q", (e3+e4)/2, len(stopped.Rounds), stopped.Stopped)
	}
	for i, r := range stopped.Rounds {
		if r.Epsilon != res.Rounds[i].Epsilon || r.Accuracy != res.Rounds[i].Accuracy {
			t.Errorf("round %d differs under a budget", r.Round)
		}
	}
	// A budget below one round stops before round 1.
	cfg.Privacy = &Privacy{Noise: 2, Budget: res.Rounds[0].Epsilon / 2}
	none := run(t, cfg)
	if len(none.Rounds) != 0 || !strings.Contains(none.Stopped, "round 1") {
		t.Errorf("tiny budget: %d rounds, stopped %q", len(none.Rounds), none.Stopped)
	}

	// A sampled cohort accounts with q = m/n, which costs less.
	cfg.Privacy = &Privacy{Noise: 2}
	cfg.Cohort = 5
	sampled := run(t, cfg)
	if p := sampled.Setup.Privacy; p.SampleRate != 0.5 || p.MinCohort != 5 {
		t.Errorf("sampled privacy setup %+v", p)
	}
	if e := sampled.Final.Epsilon; !(e < res.Final.Epsilon) {
		t.Errorf("q = 0.5 spent %v, q = 1 spent %v", e, res.Final.Epsilon)
	}
}

// DP noise makes updates noisy by the stated amount: the change of the
// global model in a DP round with all updates zero is noise with the
// mean's standard deviation σC/n.
func TestPrivacyNoiseLevel(t *testing.T) {
	cfg := config(t)
	cfg.Rounds = 1
	cfg.Optimizer.LR = 1e-300 // updates are (essentially) zero
	cfg.Clip = 1
	cfg.Privacy = &Privacy{Noise: 3}
	// 51 parameters per run are too few; pool several seeds.
	var ss float64
	var n int
	for seed := uint64(1); seed <= 40; seed++ {
		cfg.Seed = seed
		res := run(t, cfg)
		init, err := model.New(model.Spec{Kind: model.Softmax, Inputs: 16, Classes: 3}, rand.New(rand.NewPCG(seed, 2)))
		if err != nil {
			t.Fatal(err)
		}
		d := res.Params.Clone()
		d.Add(-1, init.Params())
		for _, x := range d {
			ss += x * x
			n++
		}
	}
	std := math.Sqrt(ss / float64(n))
	if want := 3.0 / 10; math.Abs(std-want) > 0.05*want {
		t.Errorf("noise std of the mean %.4f, want σC/n = %.4f", std, want)
	}
}

func TestConfigRejects(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"dp without clip":     func(c *Config) { c.Privacy = &Privacy{Noise: 1} },
		"dp with median":      func(c *Config) { c.Clip = 1; c.Privacy = &Privacy{Noise: 1}; c.Rule = mustRule(t, "median", 10) },
		"dp zero noise":       func(c *Config) { c.Clip = 1; c.Privacy = &Privacy{} },
		"min cohort > cohort": func(c *Config) { c.Clip = 1; c.Privacy = &Privacy{Noise: 1, MinCohort: 11} },
		"bad delta":           func(c *Config) { c.Clip = 1; c.Privacy = &Privacy{Noise: 1, Delta: 1} },
		"negative budget":     func(c *Config) { c.Clip = 1; c.Privacy = &Privacy{Noise: 1, Budget: -1} },
		"negative clip":       func(c *Config) { c.Clip = -1 },
		"NaN clip":            func(c *Config) { c.Clip = math.NaN() },
		"cohort > nodes":      func(c *Config) { c.Cohort = 11 },
		"byzantine > nodes":   func(c *Config) { c.Byzantine = 11 },
		"scaffold cosine": func(c *Config) {
			c.Strategy, _ = strategy.New("scaffold")
			c.Optimizer.Cosine = true
		},
	} {
		cfg := config(t)
		mutate(&cfg)
		if _, err := Run(cfg, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}

// Bytes on the wire are the payloads' exact sizes; compressed training
// still learns the toy task.
func TestCompression(t *testing.T) {
	cfg := config(t)
	dense := run(t, cfg)
	dim := dense.Setup.Params // 51
	for _, r := range dense.Rounds {
		if r.BytesUp != int64(10*(5+4*dim)) || r.BytesUpDense != int64(10*(5+4*dim)) {
			t.Errorf("dense round %d: %d bytes up, %d dense", r.Round, r.BytesUp, r.BytesUpDense)
		}
	}
	for spec, perNode := range map[string]int{
		"topk:0.1": 9 + 8*6,       // k = ⌈5.1⌉ = 6
		"q8":       9 + 8*1 + dim, // one bucket
		"q8:16":    9 + 8*4 + dim, // four buckets
		"topk:1":   9 + 8*dim,     // everything
		"topk:0.5": 9 + 8*26,      // k = ⌈25.5⌉
		"none":     5 + 4*dim,     // dense
	} {
		cfg.Compress, _ = compress.Parse(spec)
		res := run(t, cfg)
		for _, r := range res.Rounds {
			if r.BytesUp != int64(10*perNode) {
				t.Errorf("%s round %d: %d bytes up, want %d", spec, r.Round, r.BytesUp, 10*perNode)
			}
		}
		if res.Final.Accuracy < 0.85 {
			t.Errorf("%s: accuracy %.3f", spec, res.Final.Accuracy)
		}
		if res.Setup.Compress != cfg.Compress.String() {
			t.Errorf("setup compress %q", res.Setup.Compress)
		}
	}
}

// SCAFFOLD, FedAdam and FedProx run end to end on skewed data, and the
// same seed gives the same result.
func TestStrategies(t *testing.T) {
	for _, spec := range []string{"scaffold", "fedadam:lr=0.05", "fedyogi:lr=0.05", "fedadagrad:lr=0.05"} {
		cfg := config(t)
		cfg.Partition = dataset.Dirichlet{Alpha: 0.1}
		cfg.Strategy, _ = strategy.New(spec)
		res := run(t, cfg)
		if res.Final.Accuracy < 0.8 {
			t.Errorf("%s: accuracy %.3f", spec, res.Final.Accuracy)
		}
		if len(res.Params) != res.Setup.Params {
			t.Errorf("%s: final model of %d parameters, want %d", spec, len(res.Params), res.Setup.Params)
		}
		cfg.Strategy, _ = strategy.New(spec)
		again := run(t, cfg)
		if !reflect.DeepEqual(res.Params, again.Params) {
			t.Errorf("%s: not deterministic", spec)
		}
	}
	cfg := config(t)
	cfg.Optimizer.ProxMu = 0.1
	if res := run(t, cfg); res.Setup.ProxMu != 0.1 || res.Final.Accuracy < 0.85 {
		t.Errorf("FedProx: %+v, accuracy %.3f", res.Setup, res.Final.Accuracy)
	}
}

// Everything random, DP noise and quantization included, follows the seed.
func TestDeterminism(t *testing.T) {
	cfg := config(t)
	cfg.Rounds = 2
	cfg.Clip = 1
	cfg.Privacy = &Privacy{Noise: 0.5}
	cfg.Compress, _ = compress.Parse("q8")
	cfg.Cohort = 6
	cfg.Attack, cfg.Byzantine = mustAttack(t, "gaussian", 6, 2), 2
	a, b := run(t, cfg), run(t, cfg)
	if !reflect.DeepEqual(a.Params, b.Params) {
		t.Error("same seed, different models")
	}
	cfg.Seed++
	if c := run(t, cfg); reflect.DeepEqual(a.Params, c.Params) {
		t.Error("different seeds, same model")
	}
}
