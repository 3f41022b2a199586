package round

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/*.txt")

// TestInteraction runs the transcripts in testdata/*.txt. Each file is a
// sequence of blocks:
//
//	command arg key=value ...
//	----
//	output
//
// separated by blank lines; lines starting with # are comments. Run
// go test ./round -run TestInteraction -rewrite to regenerate the outputs.
func TestInteraction(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			runTranscript(t, file)
		})
	}
}

type block struct {
	pre    string // comments and blank lines before the command
	cmd    string
	output string
}

func parseTranscript(t *testing.T, data string) []block {
	var blocks []block
	lines := strings.Split(data, "\n")
	var pre strings.Builder
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			pre.WriteString(l + "\n")
			continue
		}
		b := block{pre: pre.String(), cmd: l}
		pre.Reset()
		i++
		if i >= len(lines) || lines[i] != "----" {
			t.Fatalf("line %d: %q: want ---- after the command", i+1, l)
		}
		var out []string
		for i++; i < len(lines) && lines[i] != ""; i++ {
			out = append(out, lines[i])
		}
		b.output = strings.Join(out, "\n")
		blocks = append(blocks, b)
		i-- // the blank line goes to the next block's pre
	}
	return blocks
}

func runTranscript(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blocks := parseTranscript(t, string(data))
	var f *fed
	var out strings.Builder
	for _, b := range blocks {
		got := strings.TrimRight(interpret(t, &f, b.cmd), "\n")
		if got == "" {
			got = "ok"
		}
		if *rewrite {
			fmt.Fprintf(&out, "%s%s\n----\n%s\n", b.pre, b.cmd, got)
			continue
		}
		if got != b.output {
			t.Errorf("%s: %s\n--- got:\n%s\n--- want:\n%s", file, b.cmd, got, b.output)
		}
	}
	if *rewrite {
		if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type args struct {
	pos []string
	kv  map[string]string
}

func parseArgs(fields []string) args {
	a := args{kv: map[string]string{}}
	for _, s := range fields {
		if k, v, ok := strings.Cut(s, "="); ok {
			a.kv[k] = v
		} else {
			a.pos = append(a.pos, s)
		}
	}
	return a
}

func (a args) int(t *testing.T, k string, def int) int {
	v, ok := a.kv[k]
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%s: %v", k, v, err)
	}
	return n
}

func parseVector(t *testing.T, s string) fl.Vector {
	var v fl.Vector
	for _, x := range strings.Split(s, ",") {
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			t.Fatalf("vector %q: %v", s, err)
		}
		v = append(v, f)
	}
	return v
}

func interpret(t *testing.T, fp **fed, line string) string {
	fields := strings.Fields(line)
	cmd, a := fields[0], parseArgs(fields[1:])
	if cmd == "federation" {
		o := fedOptions{
			nodes: a.int(t, "nodes", 3), t: a.int(t, "t", 2), min: a.int(t, "min", 2),
			rounds: a.int(t, "rounds", 2), maxRound: fl.Round(a.int(t, "maxround", 0)),
			strategy: a.kv["strategy"], seed: uint64(a.int(t, "seed", 1)),
			deadlines: Deadlines{Setup: a.int(t, "setup", 0), Collect: a.int(t, "collect", 0),
				Reveal: a.int(t, "reveal", 0), Commit: a.int(t, "commit", 0), Eval: a.int(t, "eval", 0),
				Idle: a.int(t, "idle", 0), Join: a.int(t, "join", 0), Gather: a.int(t, "gather", 0)},
		}
		if s, ok := a.kv["fraction"]; ok {
			o.fraction, _ = strconv.ParseFloat(s, 64)
		}
		if s, ok := a.kv["distrust"]; ok {
			for _, id := range strings.Split(s, ",") {
				o.badEvidence = append(o.badEvidence, fl.NodeID(id))
			}
		}
		if s, ok := a.kv["init"]; ok {
			o.init = parseVector(t, s)
		}
		*fp = newFed(t, o)
		return "ok"
	}
	f := *fp
	if f == nil {
		t.Fatalf("%s: no federation yet", line)
	}
	f.w.Reset()
	f.show = "all"
	if s, ok := a.kv["show"]; ok {
		f.show = s
	}
	targets := func() []*simNode {
		var ns []*simNode
		for _, p := range a.pos {
			if p == "all" {
				return f.nodes
			}
			sn := f.byID[fl.NodeID(p)]
			if sn == nil {
				t.Fatalf("%s: no node %q", line, p)
			}
			ns = append(ns, sn)
		}
		return ns
	}
	var stop func() bool
	if u, ok := a.kv["until"]; ok {
		r := fl.Round(a.int(t, "round", 0))
		stop = func() bool {
			if f.c == nil || r != 0 && f.c.st.Round != r {
				return false
			}
			if u == "pledged" { // collecting, the pledges closed
				return f.c.st.Phase == PhaseCollect && f.c.st.Pledges != nil
			}
			return f.c.st.Phase.String() == u
		}
	}
	switch cmd {
	case "delta":
		for _, sn := range targets() {
			sn.delta = parseVector(t, a.kv["v"])
			if w, ok := a.kv["w"]; ok {
				sn.weight, _ = strconv.ParseFloat(w, 64)
			}
		}
		return "ok"
	case "run":
		f.run(stop)
	case "tick":
		who := "c"
		if len(a.pos) > 0 {
			who = a.pos[0]
		}
		for range a.int(t, "n", 1) {
			if who == "c" || who == "all" {
				if f.c != nil {
					f.c.Tick()
				}
			}
			if who == "nodes" || who == "all" {
				for _, sn := range f.nodes {
					if sn.n != nil {
						sn.n.Tick()
					}
				}
			} else if sn := f.byID[fl.NodeID(who)]; sn != nil && sn.n != nil {
				sn.n.Tick()
			}
			f.run(stop)
			if stop != nil && stop() {
				break
			}
		}
	case "partition", "heal":
		for _, sn := range targets() {
			sn.cut = cmd == "partition"
		}
		return "ok"
	case "delay":
		for _, sn := range targets() {
			sn.delay = true
		}
		return "ok"
	case "undelay":
		for _, sn := range targets() {
			sn.delay = false
			f.inflight = append(f.inflight, sn.stash...)
			sn.stash = nil
		}
		f.run(stop)
	case "hold":
		for _, sn := range targets() {
			sn.hold = true
		}
		return "ok"
	case "release":
		for _, sn := range targets() {
			sn.hold = false
			held := sn.held
			sn.held = nil
			for _, task := range held {
				if sn.n != nil {
					f.runTask(sn, task)
				}
			}
		}
		f.run(stop)
	case "drop":
		// drop the messages in flight to or from the named nodes (or c)
		n := 0
		f.inflight = slices.DeleteFunc(f.inflight, func(e flight) bool {
			for _, p := range a.pos {
				if string(e.to) == p || string(e.from) == p {
					n++
					return true
				}
			}
			return false
		})
		return fmt.Sprintf("dropped %d", n)
	case "crash":
		for _, p := range a.pos {
			if p == "c" {
				f.crashCoordinator()
			} else {
				f.crashNode(fl.NodeID(p))
			}
		}
		return "ok"
	case "restart":
		for _, p := range a.pos {
			if p == "c" {
				f.restartCoordinator()
			} else {
				if a.kv["wipe"] == "1" {
					f.byID[fl.NodeID(p)].state = nil
				}
				f.restartNode(fl.NodeID(p))
			}
		}
		f.run(stop)
	case "reconnect":
		for _, sn := range targets() {
			if sn.n != nil {
				sn.n.Reconnect()
			}
		}
		f.run(stop)
	case "reattest":
		// new evidence (new process keys) on a connection that stays up;
		// with bad=1, evidence that fails every peer's VerifyPeer
		for _, sn := range targets() {
			if sn.n != nil {
				sn.attests++
				prefix := "evidence"
				if a.kv["bad"] == "1" {
					prefix = "forged"
				}
				sn.n.SetEvidence(fmt.Appendf(nil, "%s:%s#%d", prefix, sn.id, sn.attests))
				sn.n.Reattest()
			}
		}
		f.run(stop)
	case "unreachable":
		for _, sn := range targets() {
			f.c.Unreachable(sn.id)
		}
		f.run(stop)
	case "status":
		return f.status()
	case "exclude":
		for _, sn := range targets() {
			f.c.Exclude(sn.id, a.kv["reason"])
		}
		f.run(stop)
	case "readmit":
		for _, sn := range targets() {
			f.c.Readmit(sn.id)
		}
		f.run(stop)
	case "distrust":
		// distrust n3 by=n1,n2 reason=...: n1 and n2 call Distrust(n3)
		for _, by := range strings.Split(a.kv["by"], ",") {
			for _, sn := range targets() {
				f.byID[fl.NodeID(by)].n.Distrust(sn.id, a.kv["reason"])
			}
		}
		f.run(stop)
	case "keys":
		return f.keys()
	case "received":
		// what was delivered to the named nodes, by kind
		var b strings.Builder
		for _, sn := range targets() {
			count := map[Kind]int{}
			for _, e := range f.sent {
				if e.to == sn.id {
					count[e.m.Kind]++
				}
			}
			fmt.Fprintf(&b, "%s:", sn.id)
			for k := KindUnknown; k < kindEnd; k++ {
				if count[k] > 0 {
					fmt.Fprintf(&b, " %s=%d", k, count[k])
				}
			}
			b.WriteString("\n")
		}
		return b.String()
	case "ledgers":
		var b strings.Builder
		for _, sn := range f.nodes {
			fmt.Fprintf(&b, "%s: %v\n", sn.id, sn.ledger.entries)
		}
		return b.String()
	case "model":
		v, r := f.globalModel()
		return fmt.Sprintf("round %d: %v", r, v)
	case "audit":
		var b strings.Builder
		for _, e := range f.caudit {
			if k, ok := a.kv["kind"]; !ok || e.Kind.String() == k {
				fmt.Fprintf(&b, "%s\n", e)
			}
		}
		return b.String()
	case "inject", "replay":
		return f.inject(t, cmd, a)
	default:
		t.Fatalf("unknown command %q", cmd)
	}
	return f.w.String()
}

func (f *fed) status() string {
	var b strings.Builder
	if f.c == nil {
		b.WriteString("c: down\n")
	} else {
		s := f.c.Status()
		fmt.Fprintf(&b, "c: phase=%s epoch=%d round=%d commits=%d last=%d live=%v cohort=%v leader=%s\n",
			s.Phase, s.Epoch, s.Round, s.Commits, s.LastCommitted, s.Live, s.Cohort, s.Leader)
	}
	for _, sn := range f.nodes {
		if sn.n == nil {
			fmt.Fprintf(&b, "%s: down\n", sn.id)
			continue
		}
		s := sn.n.Status()
		fmt.Fprintf(&b, "%s: epoch=%d keyed=%t groupkey=%t round=%d step=%s model=%d led=%d done=%t\n",
			sn.id, s.Epoch, s.Keyed, s.GroupKey, s.Round, s.Step, s.ModelRound, s.Led, s.Done)
	}
	return b.String()
}

// keys shows who holds which key epoch.
func (f *fed) keys() string {
	var b strings.Builder
	if f.c != nil {
		st := f.c.st
		excl := slices.Sorted(maps.Keys(st.Excluded))
		fmt.Fprintf(&b, "c: epoch=%d participants=%v dealer=%s key-epoch=%d keyholders=%v excluded=%v model-round=%d resealed=%t\n",
			st.Epoch, st.Participants, st.Dealer, st.KeyEpoch, st.Keyholders, excl, st.ModelRound, st.Resealed)
	}
	for _, sn := range f.nodes {
		if sn.n == nil {
			fmt.Fprintf(&b, "%s: down\n", sn.id)
			continue
		}
		st := sn.n.st
		gk := "none"
		if t := sn.n.keys.Target; t != nil {
			gk = DigestOf(t).String()
		}
		fmt.Fprintf(&b, "%s: epoch=%d participants=%v groupkey=%s old-keys=%v distrusted=%v\n", sn.id, st.Epoch,
			st.Participants, gk, slices.Sorted(maps.Keys(st.OldModelKeys)), sn.n.Status().Distrusted)
	}
	return b.String()
}

var sentinels = []struct {
	name string
	err  error
}{
	{"ErrNotMember", ErrNotMember}, {"ErrForged", ErrForged}, {"ErrWrongSession", ErrWrongSession},
	{"ErrReplay", ErrReplay}, {"ErrFuture", ErrFuture}, {"ErrWrongPhase", ErrWrongPhase},
	{"ErrNotSelected", ErrNotSelected}, {"ErrDuplicate", ErrDuplicate}, {"ErrStale", ErrStale},
	{"ErrMalformed", ErrMalformed}, {"ErrRefused", ErrRefused}, {"ErrUnknownKind", ErrUnknownKind},
	{"ErrExcluded", ErrExcluded},
}

func sentinelOf(err error) string {
	var names []string
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			names = append(names, s.name)
		}
	}
	return strings.Join(names, ",")
}

// snapshot captures a machine's whole state, to check that a rejected
// message changed nothing.
func (f *fed) snapshot(to fl.NodeID) string {
	if to == coordID {
		c := f.c
		return fmt.Sprintf("%+v|%v|%v|%v|%v|%v|%v|%v|%v|%d", c.st.clone(), c.live, c.keyed, c.uploads, c.shares,
			c.expected, c.reported, c.declined, c.acked, c.elapsed)
	}
	n := f.byID[to].n
	return fmt.Sprintf("%+v|%v|%v|%d|%d|%v|%v|%v", n.st.clone(), n.step, n.uploaded, n.evalRound, n.setupStep,
		n.distrusted, n.target != nil, n.party != nil)
}

// inject steps a crafted (inject) or previously delivered (replay) message
// into a machine and reports the error and whether the state changed.
func (f *fed) inject(t *testing.T, cmd string, a args) string {
	from := fl.NodeID(a.kv["from"])
	to := fl.NodeID(a.kv["to"])
	if to == "" {
		to = coordID
	}
	kind, err := ParseKind(a.kv["kind"])
	if err != nil {
		t.Fatal(err)
	}
	var m Message
	if cmd == "replay" {
		found := false
		pool := f.sent
		if a.kv["inflight"] == "1" {
			pool = f.inflight
		}
		for i := len(pool) - 1; i >= 0; i-- {
			e := pool[i]
			if e.m.Kind == kind && e.from == from && (a.kv["to"] == "" || e.to == to) &&
				(a.kv["round"] == "" || int(e.m.Round) == a.int(t, "round", 0)) {
				m, to, found = e.m, e.to, true
				break
			}
		}
		if !found {
			return fmt.Sprintf("no %s from %s was delivered", kind, from)
		}
		if as, ok := a.kv["as"]; ok {
			from = fl.NodeID(as)
		}
	} else {
		m = Message{Kind: kind, Session: f.cfg.Session}
		if f.c != nil {
			m.Epoch, m.Round = f.c.st.Epoch, f.c.st.Round
		}
	}
	if _, ok := a.kv["round"]; ok && cmd == "inject" {
		m.Round = fl.Round(a.int(t, "round", 0))
	}
	if _, ok := a.kv["setround"]; ok {
		m.Round = fl.Round(a.int(t, "setround", 0))
	}
	if _, ok := a.kv["base"]; ok {
		m.Base = fl.Round(a.int(t, "base", 0))
	}
	if s, ok := a.kv["dealer"]; ok {
		m.Dealer = fl.NodeID(s)
	}
	if _, ok := a.kv["epoch"]; ok {
		m.Epoch = uint64(a.int(t, "epoch", 0))
	}
	if s, ok := a.kv["session"]; ok {
		m.Session = []byte(s)
	}
	if s, ok := a.kv["payload"]; ok {
		m.Payload = []byte(s)
	}
	if s, ok := a.kv["model"]; ok {
		m.Model = []byte(s)
	}
	if s, ok := a.kv["sig"]; ok {
		m.Signature = []byte(s)
	}
	if s, ok := a.kv["sealed"]; ok {
		m.Sealed = []byte(s)
	}
	if s, ok := a.kv["target"]; ok {
		m.Target = []byte(s)
	}
	if s, ok := a.kv["aggregate"]; ok {
		m.Aggregate = []byte(s)
	}
	if s, ok := a.kv["evidence"]; ok {
		// evidence=n4:bytes relays "bytes" as n4's evidence
		id, ev, _ := strings.Cut(s, ":")
		m.Evidences = map[fl.NodeID][]byte{fl.NodeID(id): []byte(ev)}
	}
	if s, ok := a.kv["cohort"]; ok {
		m.Cohort = nil
		for _, id := range strings.Split(s, ",") {
			m.Cohort = append(m.Cohort, fl.NodeID(id))
		}
	}
	if s, ok := a.kv["included"]; ok {
		keep := strings.Split(s, ",")
		m.Included = slices.DeleteFunc(slices.Clone(m.Included), func(c Contribution) bool {
			return !slices.Contains(keep, string(c.Node))
		})
	}
	if a.kv["tamper"] == "sig" && len(m.Included) > 0 {
		m.Included = slices.Clone(m.Included)
		m.Included[0].Signature = []byte("tampered")
	}
	if a.kv["sign"] == "1" {
		// a valid signature by from over whatever payload the message has
		var pledges Digest
		if f.c != nil {
			pledges = f.c.pledgeDigest
		}
		m.Signature, _ = fakeSigner{from}.Sign(uploadSigned(m.Session, m.Epoch, m.Round, DigestOf(m.Payload), pledges))
	}
	before := f.snapshot(to)
	if to == coordID {
		err = f.c.Step(from, m)
	} else {
		err = f.byID[to].n.Step(from, m)
	}
	after := f.snapshot(to)
	var b strings.Builder
	if err == nil {
		b.WriteString("ok\n")
	} else {
		var se *StepError
		if !errors.As(err, &se) {
			t.Fatalf("%s: error %v is not a *StepError", cmd, err)
		}
		fmt.Fprintf(&b, "%s: %v\n", sentinelOf(err), err)
	}
	if before == after {
		b.WriteString("state unchanged\n")
	} else {
		b.WriteString("state changed\n")
	}
	// Show what the machines emitted (the rejection's audit event, a
	// refusal); the messages stay in flight.
	f.show = "all"
	f.w.Reset()
	for f.drain() {
	}
	b.WriteString(f.w.String())
	return b.String()
}
