package dataset

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/cloisterfl/cloister/internal/spec"
)

// Partition divides a dataset's examples among n sites, to simulate a
// federation from one dataset.
type Partition interface {
	// Split returns, for each of n sites, the indices of its examples in
	// increasing order. labels[i] is the class of example i, in
	// [0, classes). Every index appears at exactly one site and no site is
	// empty; n must lie in [1, len(labels)]. All randomness comes from rng,
	// so the same rng state gives the same split.
	Split(labels []int, classes, n int, rng *rand.Rand) ([][]int, error)
	// String returns the spec that ParsePartition reads back.
	String() string
}

// partitionForms lists the specs ParsePartition understands, for errors.
const partitionForms = "iid, dirichlet:ALPHA (ALPHA > 0), shards:K (K ≥ 1)"

// ParsePartition reads a partition spec: "iid", "dirichlet:ALPHA" or
// "shards:K". See [IID], [Dirichlet] and [Shards].
func ParsePartition(text string) (Partition, error) {
	s, err := spec.ParseExact(text)
	if err != nil {
		return nil, fmt.Errorf("partition %w", err)
	}
	switch s.Name {
	case "iid":
		if err := s.NoArg(); err != nil {
			return nil, fmt.Errorf("partition %w", err)
		}
		return IID{}, nil
	case "dirichlet":
		a, err := s.Float()
		if err != nil || !(a > 0) {
			return nil, fmt.Errorf("partition %w", s.Errorf("ALPHA must be a positive number"))
		}
		return Dirichlet{Alpha: a}, nil
	case "shards":
		k, err := s.Int()
		if err != nil || k < 1 {
			return nil, fmt.Errorf("partition %w", s.Errorf("K must be an integer ≥ 1"))
		}
		return Shards{PerSite: k}, nil
	}
	return nil, fmt.Errorf("unknown partition %q; the forms are %s", text, partitionForms)
}

// IID deals the examples out uniformly at random: site sizes differ by at
// most one, and every site sees roughly the global label mix.
type IID struct{}

func (IID) String() string { return "iid" }

func (p IID) Split(labels []int, classes, n int, rng *rand.Rand) ([][]int, error) {
	if err := checkSplit(p, labels, classes, n, rng); err != nil {
		return nil, err
	}
	perm := rng.Perm(len(labels))
	sites := make([][]int, n)
	for s := range sites {
		lo, hi := s*len(perm)/n, (s+1)*len(perm)/n
		sites[s] = perm[lo:hi:hi]
	}
	return sorted(sites), nil
}

// Dirichlet gives each site a skewed label mix (Hsu et al., 2019): for each
// class, the shares of the n sites are drawn from a symmetric Dirichlet(α)
// distribution, and the class's examples are dealt out in those shares.
// Small α (0.1) gives each site a few dominant classes; large α (100)
// approaches IID.
//
// Sampling can leave a site with nothing. Each such site then takes one
// example, at random, from the currently largest site, so that every site
// has at least one example; with n ≤ len(labels) this always succeeds and
// barely disturbs the drawn proportions.
type Dirichlet struct {
	Alpha float64 // concentration α > 0
}

func (d Dirichlet) String() string {
	return "dirichlet:" + strconv.FormatFloat(d.Alpha, 'g', -1, 64)
}

func (d Dirichlet) Split(labels []int, classes, n int, rng *rand.Rand) ([][]int, error) {
	if !(d.Alpha > 0) || math.IsInf(d.Alpha, 0) {
		return nil, fmt.Errorf("partition %q: ALPHA must be a positive number", d)
	}
	if err := checkSplit(d, labels, classes, n, rng); err != nil {
		return nil, err
	}
	byClass := make([][]int, classes)
	for i, y := range labels {
		byClass[y] = append(byClass[y], i)
	}
	sites := make([][]int, n)
	for _, idx := range byClass {
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		start, cum := 0, 0.0
		for s, share := range sampleDirichlet(rng, d.Alpha, n) {
			cum += share
			end := len(idx)
			if s < n-1 {
				end = min(max(int(cum*float64(len(idx))), start), len(idx))
			}
			sites[s] = append(sites[s], idx[start:end]...)
			start = end
		}
	}
	for s := range sites { // repair empty sites, as documented above
		if len(sites[s]) > 0 {
			continue
		}
		big := 0
		for t := range sites {
			if len(sites[t]) > len(sites[big]) {
				big = t
			}
		}
		k := rng.IntN(len(sites[big]))
		sites[s] = append(sites[s], sites[big][k])
		sites[big] = slices.Delete(sites[big], k, k+1)
	}
	return sorted(sites), nil
}

// sampleDirichlet draws n shares from a symmetric Dirichlet(alpha)
// distribution as normalized Gamma(alpha, 1) variates.
func sampleDirichlet(rng *rand.Rand, alpha float64, n int) []float64 {
	p := make([]float64, n)
	top := math.Inf(-1)
	for i := range p {
		p[i] = logGamma(rng, alpha)
		top = max(top, p[i])
	}
	var sum float64
	for i := range p {
		p[i] = math.Exp(p[i] - top)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// logGamma returns the logarithm of a Gamma(a, 1) variate, a > 0, using
// Marsaglia and Tsang's method ("A simple method for generating gamma
// variables", 2000). Logarithms keep small shapes usable: for a = 0.01 most
// variates underflow float64.
func logGamma(rng *rand.Rand, a float64) float64 {
	var boost float64
	if a < 1 { // Gamma(a) = Gamma(a+1) · U^(1/a)
		boost = math.Log(1-rng.Float64()) / a
		a++
	}
	d := a - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := 1 - rng.Float64() // in (0, 1]
		if u < 1-0.0331*x*x*x*x || math.Log(u) < x*x/2+d*(1-v+math.Log(v)) {
			return math.Log(d*v) + boost
		}
	}
}

// Shards is the pathological non-IID split of McMahan et al. (2017): sort
// the examples by label, cut them into n·K equal shards, and give each site
// K shards at random. With balanced classes a site sees at most K labels
// (more only where a shard straddles a class boundary). It needs at least
// n·K examples.
type Shards struct {
	PerSite int // K ≥ 1, shards per site
}

func (k Shards) String() string { return "shards:" + strconv.Itoa(k.PerSite) }

func (k Shards) Split(labels []int, classes, n int, rng *rand.Rand) ([][]int, error) {
	if k.PerSite < 1 {
		return nil, fmt.Errorf("partition %q: K must be an integer ≥ 1", k)
	}
	if err := checkSplit(k, labels, classes, n, rng); err != nil {
		return nil, err
	}
	if k.PerSite > len(labels)/n {
		return nil, fmt.Errorf("partition %q: %d sites × %d shards need at least as many examples, have %d", k, n, k.PerSite, len(labels))
	}
	order := rng.Perm(len(labels)) // random order within each class
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(labels[a], labels[b]) })
	m := n * k.PerSite
	shards := rng.Perm(m)
	sites := make([][]int, n)
	for s := range sites {
		for _, sh := range shards[s*k.PerSite : (s+1)*k.PerSite] {
			sites[s] = append(sites[s], order[sh*len(order)/m:(sh+1)*len(order)/m]...)
		}
	}
	return sorted(sites), nil
}

// checkSplit validates the arguments every Partition.Split takes.
func checkSplit(p Partition, labels []int, classes, n int, rng *rand.Rand) error {
	switch {
	case rng == nil:
		return fmt.Errorf("partition %q: nil random source", p)
	case n < 1:
		return fmt.Errorf("partition %q: %d sites; need at least 1", p, n)
	case n > len(labels):
		return fmt.Errorf("partition %q: %d sites but only %d examples; every site needs one", p, n, len(labels))
	case classes < 1:
		return fmt.Errorf("partition %q: %d classes", p, classes)
	}
	for i, y := range labels {
		if y < 0 || y >= classes {
			return fmt.Errorf("partition %q: label %d of example %d outside [0, %d)", p, y, i, classes)
		}
	}
	return nil
}

// sorted sorts each site's indices in place and returns sites.
func sorted(sites [][]int) [][]int {
	for _, s := range sites {
		slices.Sort(s)
	}
	return sites
}
