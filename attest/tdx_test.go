package attest

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"testing"
	"time"

	tabi "github.com/google/go-tdx-guest/abi"
	tpb "github.com/google/go-tdx-guest/proto/tdx"
)

// fakeTSM is a fake configfs-tsm report subsystem
// (/sys/kernel/config/tsm/report) as seen through configfsi.Client: entries
// are directories; writing inblob bumps the generation; reading outblob
// returns a quote over the inblob, made by quote.
type fakeTSM struct {
	provider string
	quote    func(reportData []byte) []byte
	entries  map[string]*fakeEntry
	n        int
	race     bool // another writer bumps the generation behind the reader
}

type fakeEntry struct {
	inblob     []byte
	generation int
}

func (f *fakeTSM) MkdirTemp(dir, pattern string) (string, error) {
	if dir != "/sys/kernel/config/tsm/report" {
		return "", fmt.Errorf("mkdir %s: %w", dir, fs.ErrNotExist)
	}
	f.n++
	p := path.Join(dir, fmt.Sprintf("%s%d", pattern, f.n))
	if f.entries == nil {
		f.entries = map[string]*fakeEntry{}
	}
	f.entries[p] = &fakeEntry{}
	return p, nil
}

func (f *fakeTSM) entry(name string) (*fakeEntry, string, error) {
	e, ok := f.entries[path.Dir(name)]
	if !ok {
		return nil, "", fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	return e, path.Base(name), nil
}

func (f *fakeTSM) ReadFile(name string) ([]byte, error) {
	e, attr, err := f.entry(name)
	if err != nil {
		return nil, err
	}
	switch attr {
	case "generation":
		g := e.generation
		if f.race && g > 0 {
			g++
		}
		return []byte(fmt.Sprintf("%d\n", g)), nil
	case "provider":
		return []byte(f.provider + "\n"), nil
	case "outblob":
		if len(e.inblob) != 64 {
			return nil, fmt.Errorf("%s: inblob not set: %w", name, fs.ErrInvalid)
		}
		return f.quote(e.inblob), nil
	}
	return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
}

func (f *fakeTSM) WriteFile(name string, contents []byte) error {
	e, attr, err := f.entry(name)
	if err != nil {
		return err
	}
	if attr != "inblob" {
		return fmt.Errorf("%s: %w", name, fs.ErrPermission)
	}
	e.inblob = append([]byte(nil), contents...)
	e.generation++
	return nil
}

func (f *fakeTSM) RemoveAll(name string) error {
	delete(f.entries, name)
	return nil
}

func TestTDXAttesterAndVerifier(t *testing.T) {
	forger := newTDXForger(t)
	sample := tdxSample(t)
	policy := tdxPolicy(sample)
	roots := Roots{TDX: forger.pool}
	now := tdxNow
	want := testBinding(t, now.Add(-time.Minute), 1)
	tsm := func() *fakeTSM {
		return &fakeTSM{provider: "tdx_guest", quote: func(rd []byte) []byte {
			return forger.quote(t, func(b *tpb.TDQuoteBody) { copy(b.ReportData, rd) })
		}}
	}

	t.Run("accepted", func(t *testing.T) {
		fs := tsm()
		ev := mustAttest(t, NewTDXAttester(fs), want, now)
		c, err := mustVerifier(t, policy, roots).Verify(ev, want, now)
		if err != nil {
			t.Fatal(err)
		}
		if c.Measurement != tdxMeasurement(sample) || c.Debug || len(c.TCB) != 16 || !c.Time.Equal(now.Add(-time.Minute)) {
			t.Fatalf("claims %+v", c)
		}
		if len(fs.entries) != 0 {
			t.Fatalf("report entries left behind: %v", fs.entries)
		}
		if _, err := mustVerifier(t, policy, Roots{}).Verify(ev, want, now); !errors.Is(err, ErrSignature) {
			t.Fatalf("test chain under Intel's root: %v", err)
		}
	})
	t.Run("relayed", func(t *testing.T) {
		ev := mustAttest(t, NewTDXAttester(tsm()), want, now)
		peer := want.clone()
		peer.EKM = nil // a peer does not know the node's connection
		if _, err := mustVerifier(t, policy, roots).VerifyRelayed(ev, peer, now); err != nil {
			t.Fatal(err)
		}
		if _, err := mustVerifier(t, policy, roots).Verify(ev, peer, now); !errors.Is(err, ErrSessionBinding) {
			t.Fatalf("Verify without the EKM: %v", err)
		}
	})
	t.Run("another provider", func(t *testing.T) {
		fs := tsm()
		fs.provider = "sev_guest"
		if _, err := Attest(NewTDXAttester(fs), want, now); err == nil || !strings.Contains(err.Error(), "sev_guest") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("concurrent writer", func(t *testing.T) {
		fs := tsm()
		fs.race = true
		if _, err := Attest(NewTDXAttester(fs), want, now); err == nil {
			t.Fatal("accepted a report whose generation changed")
		}
	})
	t.Run("quote over other data", func(t *testing.T) {
		fs := tsm()
		fs.quote = func([]byte) []byte { return forger.quote(t, nil) }
		if _, err := Attest(NewTDXAttester(fs), want, now); err == nil {
			t.Fatal("accepted a quote over other report data")
		}
	})
	t.Run("no configfs-tsm here", func(t *testing.T) {
		if _, err := OpenTDX(); err != nil && !errors.Is(err, ErrUnsupported) {
			t.Fatalf("got %v, want ErrUnsupported", err)
		}
	})
}

// go-tdx-guest's parser trusts the quote's nested sizes and panics on a
// quote whose signed data is shorter than its fixed fields. checkTDXLayout
// refuses such quotes first.
func TestTDXShortSignedData(t *testing.T) {
	sample := tdxSample(t)
	raw := forgeSize(t, 0)
	panicked := func() (p bool) {
		defer func() { p = recover() != nil }()
		tabi.QuoteToProto(raw)
		return false
	}()
	t.Logf("go-tdx-guest abi.QuoteToProto panics on a quote with signed data size 0: %v", panicked)
	ev := envelope(t, FormatTDX, Binding{}, raw)
	_, err := mustVerifier(t, tdxPolicy(sample), Roots{}).VerifyReportData(ev, tdxReportData(sample), tdxNow, tdxNow)
	if !errors.Is(err, ErrMalformed) || strings.Contains(err.Error(), "crashed") {
		t.Fatalf("got %v, want ErrMalformed from the layout check", err)
	}
}

// forgeSize returns the sample quote with its signed data size set to n
// and everything after the size field cut to 0x3FC bytes in all.
func forgeSize(t *testing.T, n uint32) []byte {
	t.Helper()
	raw := make([]byte, 0x3FC) // QuoteMinSize
	copy(raw, tdxRawQuote())
	raw[0x278], raw[0x279], raw[0x27A], raw[0x27B] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
	return raw
}
