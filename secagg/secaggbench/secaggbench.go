// Package secaggbench measures mode secagg as the daemons run it (through
// protect's interface) and, in the same run, the floor of the server's work
// on this machine: the AES-CTR masks Open must remove and the plaintext sum
// of the vectors. It is what `cloister bench secagg` prints.
package secaggbench

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/mhe"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/secagg"
)

// Config is one measurement.
type Config struct {
	Params     int     // d
	Nodes      int     // n
	Threshold  int     // t (0: n/2+1)
	Dropout    float64 // fraction of members that drop before their upload
	Neighbours int     // ring of K neighbours (0: every member)
	Preset     *secagg.Preset
	Seed       uint64
}

// Report is what one run measured. Seconds are wall time on one core.
type Report struct {
	Preset     string  `json:"preset"`
	Params     int     `json:"params"`
	Nodes      int     `json:"nodes"`
	Threshold  int     `json:"threshold"`
	Dropout    float64 `json:"dropout"`
	Neighbours int     `json:"neighbours"`
	Included   int     `json:"included"`
	// Masks Open removed: self masks of the included, pair masks with
	// the dropped.
	SelfMasks int `json:"self_masks"`
	PairMasks int `json:"pair_masks"`

	ClientSetupS    float64 `json:"client_setup_s"`  // one client's Announce, Deal and Accept
	ClientMaskS     float64 `json:"client_mask_s"`   // one client's Protect, the median
	RevealS         float64 `json:"reveal_s"`        // one revealer's Reveal, the median
	AggregateS      float64 `json:"aggregate_s"`     // Helper.Aggregate of the included uploads
	OpenS           float64 `json:"open_s"`          // Helper.Open
	UnmaskS         float64 `json:"server_unmask_s"` // Aggregate + Open: the server's whole work
	DecryptS        float64 `json:"decrypt_s"`       // Target.Decrypt (a member's)
	FloorS          float64 `json:"floor_s"`         // the same run: AES-CTR of the masks Open removes + plaintext sum
	UnmaskOverFloor float64 `json:"unmask_over_floor"`

	UploadBytes         int     `json:"upload_bytes"`
	UploadBytesPerParam float64 `json:"upload_bytes_per_param"`
	PlainBytesPerParam  float64 `json:"plain_bytes_per_param"`
	MHEBytesPerParam    float64 `json:"mhe_bytes_per_param"` // Agg128, exact sizes
	MaxAbsError         float64 `json:"max_abs_error"`
}

// Run measures one configuration.
func Run(c Config) (Report, error) {
	if c.Preset == nil {
		c.Preset = secagg.Q32
	}
	if c.Threshold == 0 {
		c.Threshold = c.Nodes/2 + 1
	}
	if c.Dropout < 0 || c.Dropout >= 1 {
		return Report{}, fmt.Errorf("secaggbench: dropout %v, want [0, 1)", c.Dropout)
	}
	p := c.Preset
	if c.Neighbours != 0 {
		var err error
		if p, err = secagg.WithNeighbours(p, c.Neighbours); err != nil {
			return Report{}, err
		}
	}
	s, err := secagg.New(p)
	if err != nil {
		return Report{}, err
	}
	n, d := c.Nodes, c.Params
	if _, err := s.Sizes(d, n); err != nil {
		return Report{}, err
	}
	rep := Report{Preset: p.Name(), Params: d, Nodes: n, Threshold: c.Threshold, Dropout: c.Dropout, Neighbours: c.Neighbours}
	rng := rand.New(rand.NewPCG(c.Seed, 1))
	ids := make([]fl.NodeID, n)
	for i := range ids {
		ids[i] = fl.NodeID(fmt.Sprintf("site-%04d", i))
	}
	g := protect.Group{ID: []byte("secaggbench"), Members: ids, Threshold: c.Threshold}
	src := func(i int) *rand.ChaCha8 {
		var k [32]byte
		binary.BigEndian.PutUint64(k[:], c.Seed)
		binary.BigEndian.PutUint64(k[8:], uint64(i))
		return rand.NewChaCha8(k)
	}

	// Setup.
	h, err := s.NewHelper(g)
	if err != nil {
		return Report{}, err
	}
	parties := make([]protect.Party, n)
	anns := map[fl.NodeID][]byte{}
	var setupT time.Duration
	for i, id := range ids {
		t0 := time.Now()
		if parties[i], err = s.NewParty(g, id, src(i)); err != nil {
			return Report{}, err
		}
		if anns[id], err = parties[i].Announce(); err != nil {
			return Report{}, err
		}
		if i == 0 {
			setupT += time.Since(t0)
		}
	}
	pubs := map[fl.NodeID][]byte{}
	privs := map[fl.NodeID]map[fl.NodeID][]byte{}
	for i, id := range ids {
		t0 := time.Now()
		dl, err := parties[i].Deal(anns)
		if err != nil {
			return Report{}, err
		}
		if i == 0 {
			setupT += time.Since(t0)
		}
		pubs[id] = dl.Public
		for to, b := range dl.Private {
			if privs[to] == nil {
				privs[to] = map[fl.NodeID][]byte{}
			}
			privs[to][id] = b
		}
	}
	setup, err := h.Setup(anns, pubs)
	if err != nil {
		return Report{}, err
	}
	for i, id := range ids {
		t0 := time.Now()
		if err := parties[i].Accept(setup, privs[id]); err != nil {
			return Report{}, err
		}
		if i == 0 {
			setupT += time.Since(t0)
		}
	}
	rep.ClientSetupS = setupT.Seconds()
	tg, err := s.NewTarget(src(-1))
	if err != nil {
		return Report{}, err
	}

	// A round: the dropped never upload.
	r := fl.Round(1)
	perm := rng.Perm(n)
	dropped := int(c.Dropout*float64(n) + 0.5)
	var included []int
	for _, i := range perm[dropped:] {
		included = append(included, i)
	}
	slices.Sort(included)
	rep.Included = len(included)
	if len(included) < c.Threshold {
		return Report{}, fmt.Errorf("secaggbench: %d included, fewer than t = %d: the round would abort", len(included), c.Threshold)
	}
	lim := p.Capacity().MaxAbs / float64(n)
	want := make(fl.Vector, d)
	ups := map[fl.NodeID][]byte{}
	var maskT []time.Duration
	for _, i := range included {
		v := make(fl.Vector, d)
		for j := range v {
			v[j] = lim * (2*rng.Float64() - 1)
			want[j] += v[j]
		}
		t0 := time.Now()
		b, err := parties[i].Protect(r, v, 1)
		if err != nil {
			return Report{}, err
		}
		maskT = append(maskT, time.Since(t0))
		ups[ids[i]] = b
	}
	rep.ClientMaskS = median(maskT)
	rep.UploadBytes = len(ups[ids[included[0]]])
	rep.UploadBytesPerParam = float64(rep.UploadBytes) / float64(d)
	t0 := time.Now()
	agg, err := h.Aggregate(r, ups)
	if err != nil {
		return Report{}, err
	}
	rep.AggregateS = time.Since(t0).Seconds()
	rev := make([]fl.NodeID, c.Threshold)
	for j := range rev {
		rev[j] = ids[included[j]]
	}
	req := protect.RevealRequest{Round: r, Aggregate: agg, Revealers: rev, Target: tg.Public(), Uploads: ups}
	shares := map[fl.NodeID][]byte{}
	var revT []time.Duration
	for _, id := range rev {
		i := slices.Index(ids, id)
		t0 := time.Now()
		if shares[id], err = parties[i].Reveal(req, &protect.MemLedger{}); err != nil {
			return Report{}, err
		}
		revT = append(revT, time.Since(t0))
	}
	rep.RevealS = median(revT)
	if rep.SelfMasks, rep.PairMasks, err = secagg.ShareCounts(shares[rev[0]]); err != nil {
		return Report{}, err
	}
	t0 = time.Now()
	res, err := h.Open(req, shares)
	if err != nil {
		return Report{}, err
	}
	rep.OpenS = time.Since(t0).Seconds()
	rep.UnmaskS = rep.AggregateS + rep.OpenS
	t0 = time.Now()
	sum, err := tg.Decrypt(res)
	if err != nil {
		return Report{}, err
	}
	rep.DecryptS = time.Since(t0).Seconds()
	for j := range want {
		rep.MaxAbsError = max(rep.MaxAbsError, abs(sum.Vector[j]-want[j]))
	}
	if sum.Weight != float64(len(included)) {
		return Report{}, fmt.Errorf("secaggbench: summed weight %v, want %d", sum.Weight, len(included))
	}
	if rep.MaxAbsError > p.Capacity().MaxError {
		return Report{}, fmt.Errorf("secaggbench: error %g beyond the preset's bound %g", rep.MaxAbsError, p.Capacity().MaxError)
	}

	// The floor: the same number of AES-CTR masks of d+1 words added to a
	// vector, and the plaintext sum of the included vectors.
	w := p.Literal().Bits / 8
	packed := make([][]byte, 0, len(included))
	for _, i := range included {
		u := ups[ids[i]]
		packed = append(packed, u[len(u)-(d+1)*w:])
	}
	fs, err := floor(rep.SelfMasks+rep.PairMasks, packed, d+1, w)
	if err != nil {
		return Report{}, err
	}
	rep.FloorS = fs
	rep.UnmaskOverFloor = rep.UnmaskS / rep.FloorS

	if ps, err := (plain.Scheme{}).Sizes(d, n); err == nil {
		rep.PlainBytesPerParam = float64(ps.Update) / float64(d)
	}
	if ms, err := mhe.New(mhe.Agg128); err == nil {
		if sz, err := ms.Sizes(d, n); err == nil {
			rep.MHEBytesPerParam = float64(sz.Update) / float64(d)
		}
	}
	return rep, nil
}

// floor times masks AES-CTR keystreams of words words added to a vector,
// then the sum of packed vectors, on this machine.
func floor(masks int, packed [][]byte, words, width int) (float64, error) {
	if masks < 0 {
		return 0, errors.New("secaggbench: negative mask count")
	}
	sum := make([]uint64, words)
	ks := make([]byte, words*width)
	zero := make([]byte, words*width)
	var key, iv [16]byte
	t0 := time.Now()
	for m := range masks {
		binary.BigEndian.PutUint64(key[:], uint64(m)+1)
		b, err := aes.NewCipher(key[:])
		if err != nil {
			return 0, err
		}
		cipher.NewCTR(b, iv[:]).XORKeyStream(ks, zero)
		addWords(sum, ks, width)
	}
	for _, p := range packed {
		addWords(sum, p, width)
	}
	return time.Since(t0).Seconds(), nil
}

func addWords(sum []uint64, b []byte, width int) {
	if width == 4 {
		for i := range sum {
			sum[i] += uint64(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return
	}
	for i := range sum {
		sum[i] += binary.LittleEndian.Uint64(b[8*i:])
	}
}

func median(ts []time.Duration) float64 {
	if len(ts) == 0 {
		return 0
	}
	s := slices.Clone(ts)
	slices.Sort(s)
	return s[len(s)/2].Seconds()
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
