package mhe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// Party state (kind party state, polynomials at the top level, degree 0):
//
//	element 0: stage (1 byte) ‖ nonce (32) ‖ CRS seed (32) ‖ SHA-256 of our key share (32)
//	           ‖ protected (1 byte: 0 none, 1 the next 8 bytes hold the newest protected round) ‖ round (8)
//	element 1: secret key share s_i
//	element 2, 3: collective public key (ready), else empty
//	element 4 … 3+n: the Shamir share of each dealer's key share, in sorted member order (ready only)
//
// Precomputed reveal randomness (Precompute) is never part of it.
const stateMetaSize = 1 + 32 + 32 + 32 + 1 + 8

// MarshalBinary returns the party's secret state (key shares, collective
// public key, session binding, newest protected round) at any stage of the
// setup. Seal it at rest.
func (pa *Party) MarshalBinary() ([]byte, error) {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	p := pa.p
	level := p.params.MaxLevel()
	meta := make([]byte, 0, stateMetaSize)
	meta = append(meta, byte(pa.stage))
	meta = append(meta, pa.nonce[:]...)
	meta = append(meta, pa.crsSeed[:]...)
	meta = append(meta, pa.ownPublic[:]...)
	if pa.didProtect {
		meta = append(meta, 1)
	} else {
		meta = append(meta, 0)
	}
	meta = binary.LittleEndian.AppendUint64(meta, uint64(pa.protected))
	elems := [][]byte{meta, p.packPoly(nil, pa.sk.Value.Q, level), nil, nil}
	if pa.pk != nil {
		elems[2] = p.packPoly(nil, pa.pk.Value[0].Q, level)
		elems[3] = p.packPoly(nil, pa.pk.Value[1].Q, level)
	}
	for _, sh := range pa.tshares {
		elems = append(elems, p.packPoly(nil, sh.Q, level))
	}
	h := p.header(kindPartyState, level, 0)
	h.session, h.sender = pa.sess.hash, uint16(pa.self)
	return encode(h, elems...), nil
}

// LoadParty restores a party of session sess from Party.MarshalBinary. The
// state must be member self's, for the same session and preset.
func (s *Scheme) LoadParty(sess protect.Group, self fl.NodeID, state []byte, rand io.Reader) (protect.Party, error) {
	p := s.p
	ss, err := newSession(p, sess)
	if err != nil {
		return nil, err
	}
	idx, ok := ss.index[self]
	if !ok {
		return nil, fmt.Errorf("mhe: party %q: %w", self, protect.ErrNotMember)
	}
	if rand == nil {
		return nil, errors.New("mhe: no randomness source")
	}
	const what = "party state"
	level := p.params.MaxLevel()
	h, elems, err := parse(what, state, 4+ss.n)
	if err != nil {
		return nil, err
	}
	sender := uint16(idx)
	if err := (expect{kind: kindPartyState, preset: p, session: &ss.hash, sender: &sender, level: level, degree: 0}).check(what, h); err != nil {
		return nil, err
	}
	if h.round != 0 || h.aux != 0 || h.bind != [16]byte{} || len(elems) < 4 {
		return nil, malformed(what, "want at least four elements and zero round, aux and binding")
	}
	if len(elems[0]) != stateMetaSize {
		return nil, malformed(what, "metadata of %d bytes, want %d", len(elems[0]), stateMetaSize)
	}
	m := elems[0]
	pa := &Party{sch: s, p: p, sess: ss, self: idx, rand: rand, stage: stage(m[0])}
	copy(pa.nonce[:], m[1:33])
	copy(pa.crsSeed[:], m[33:65])
	copy(pa.ownPublic[:], m[65:97])
	switch m[97] {
	case 0:
	case 1:
		pa.didProtect = true
	default:
		return nil, malformed(what, "protected flag %d", m[97])
	}
	pa.protected = fl.Round(binary.LittleEndian.Uint64(m[98:]))
	if !pa.didProtect && pa.protected != 0 {
		return nil, malformed(what, "a protected round without the flag")
	}
	ps := p.polySize(level)
	wantCount, wantPK := 4, 0
	switch pa.stage {
	case stageFresh, stageDealt:
	case stageReady:
		wantCount, wantPK = 4+ss.n, ps
	default:
		return nil, malformed(what, "unknown stage %d", m[0])
	}
	if len(elems) != wantCount {
		return nil, malformed(what, "%d elements, want %d at stage %d", len(elems), wantCount, pa.stage)
	}
	if pa.didProtect && pa.stage != stageReady {
		return nil, malformed(what, "a protected round before the setup completed")
	}
	if len(elems[1]) != ps {
		return nil, malformed(what, "secret key of %d bytes, want %d", len(elems[1]), ps)
	}
	for i := 2; i < 4; i++ {
		if len(elems[i]) != wantPK {
			return nil, malformed(what, "element %d has %d bytes, want %d at stage %d", i, len(elems[i]), wantPK, pa.stage)
		}
	}
	if err := checkLengths(what, elems[4:], ps); err != nil {
		return nil, err
	}
	pa.sk = rlwe.NewSecretKey(p.params)
	if err := p.unpackPoly(what, elems[1], pa.sk.Value.Q, level); err != nil {
		return nil, err
	}
	if pa.stage == stageReady {
		pa.pk = rlwe.NewPublicKey(p.params)
		for i := range 2 {
			if err := p.unpackPoly(what, elems[2+i], pa.pk.Value[i].Q, level); err != nil {
				return nil, err
			}
		}
		thr := multiparty.NewThresholdizer(p.params)
		pa.tshares = make([]multiparty.ShamirSecretShare, ss.n)
		for j := range pa.tshares {
			pa.tshares[j] = thr.AllocateThresholdSecretShare()
			if err := p.unpackPoly(what, elems[4+j], pa.tshares[j].Q, level); err != nil {
				return nil, err
			}
		}
	}
	return pa, nil
}
