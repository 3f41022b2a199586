package mhe

import (
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
//	element 1: secret key share s_i
//	element 2: threshold share S(α_i) (ready), else empty
//	element 3, 4: collective public key (ready), else empty
const stateMetaSize = 1 + 32 + 32 + 32

// MarshalBinary returns the party's secret state (key shares, collective
// public key, session binding) at any stage of the setup. Seal it at rest.
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
	var tsk, pk0, pk1 []byte
	if pa.tsk != nil {
		tsk = p.packPoly(nil, pa.tsk.Q, level)
	}
	if pa.pk != nil {
		pk0 = p.packPoly(nil, pa.pk.Value[0].Q, level)
		pk1 = p.packPoly(nil, pa.pk.Value[1].Q, level)
	}
	h := p.header(kindPartyState, level, 0)
	h.session, h.sender = pa.sess.hash, uint16(pa.self)
	return encode(h, meta, p.packPoly(nil, pa.sk.Value.Q, level), tsk, pk0, pk1), nil
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
	h, elems, err := parse(what, state, 5)
	if err != nil {
		return nil, err
	}
	sender := uint16(idx)
	if err := (expect{kind: kindPartyState, preset: p, session: &ss.hash, sender: &sender, level: level, degree: 0}).check(what, h); err != nil {
		return nil, err
	}
	if h.round != 0 || h.aux != 0 || h.bind != [16]byte{} || len(elems) != 5 {
		return nil, malformed(what, "want five elements and zero round, aux and binding")
	}
	if len(elems[0]) != stateMetaSize {
		return nil, malformed(what, "metadata of %d bytes, want %d", len(elems[0]), stateMetaSize)
	}
	m := elems[0]
	pa := &Party{sch: s, p: p, sess: ss, self: idx, rand: rand, stage: stage(m[0])}
	copy(pa.nonce[:], m[1:33])
	copy(pa.crsSeed[:], m[33:65])
	copy(pa.ownPublic[:], m[65:97])
	ps := p.polySize(level)
	want := [3]int{}
	switch pa.stage {
	case stageFresh, stageDealt:
	case stageReady:
		want = [3]int{ps, ps, ps}
	default:
		return nil, malformed(what, "unknown stage %d", m[0])
	}
	if len(elems[1]) != ps {
		return nil, malformed(what, "secret key of %d bytes, want %d", len(elems[1]), ps)
	}
	for i, w := range want {
		if len(elems[2+i]) != w {
			return nil, malformed(what, "element %d has %d bytes, want %d at stage %d", 2+i, len(elems[2+i]), w, pa.stage)
		}
	}
	pa.sk = rlwe.NewSecretKey(p.params)
	if err := p.unpackPoly(what, elems[1], pa.sk.Value.Q, level); err != nil {
		return nil, err
	}
	if pa.stage == stageReady {
		sh := multiparty.NewThresholdizer(p.params).AllocateThresholdSecretShare()
		if err := p.unpackPoly(what, elems[2], sh.Q, level); err != nil {
			return nil, err
		}
		pa.tsk = &sh
		pa.pk = rlwe.NewPublicKey(p.params)
		for i := range 2 {
			if err := p.unpackPoly(what, elems[3+i], pa.pk.Value[i].Q, level); err != nil {
				return nil, err
			}
		}
	}
	return pa, nil
}
