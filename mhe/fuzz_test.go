package mhe

import "testing"

// Fuzz targets for every decoder that reads network bytes. Each seeds the
// corpus with a valid payload (made at run time) and Lattigo's 9-byte OOM
// input (also committed under testdata/fuzz), and checks that a rejected
// payload gives ErrMalformed, ErrForeign or ErrNotMember and that nothing
// panics. Run one with, for example,
//
//	go test -run '^$' -fuzz '^FuzzUpdate$' -fuzztime 60s ./mhe

func fuzzKind(f *testing.F, kind string) {
	e := newHostileEnv(f)
	call := e.entries[kind]
	f.Add(e.valid[kind])
	f.Add([]byte(lattigoOOM))
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := call(b); err != nil && !acceptable(err) {
			t.Fatalf("%s: %v: want ErrMalformed, ErrForeign or ErrNotMember", kind, err)
		}
	})
}

func FuzzAnnouncement(f *testing.F)   { fuzzKind(f, "announcement") }
func FuzzPublicDealing(f *testing.F)  { fuzzKind(f, "public dealing") }
func FuzzPrivateDealing(f *testing.F) { fuzzKind(f, "private dealing") }
func FuzzSetup(f *testing.F)          { fuzzKind(f, "setup") }
func FuzzUpdate(f *testing.F)         { fuzzKind(f, "update") }
func FuzzAggregate(f *testing.F)      { fuzzKind(f, "aggregate") }
func FuzzRevealShare(f *testing.F)    { fuzzKind(f, "reveal share") }
func FuzzResult(f *testing.F)         { fuzzKind(f, "result") }
func FuzzPartyState(f *testing.F)     { fuzzKind(f, "party state") }
func FuzzTargetPublic(f *testing.F)   { fuzzKind(f, "target public") }
func FuzzTargetSecret(f *testing.F)   { fuzzKind(f, "target secret") }
