package containertest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/store"
)

// enableEnv turns the tests on.
const enableEnv = "CLOISTER_CONTAINER_TESTS"

// imageUser is the image's user (deploy/image/rootfs.sh).
const imageUser = "65532:65532"

func image() string {
	if i := os.Getenv("CLOISTER_IMAGE"); i != "" {
		return i
	}
	return "cloister:dev"
}

// requireDocker skips the test unless enableEnv is set, and fails it if it
// is set but the engine or the image is missing.
func requireDocker(t *testing.T) {
	t.Helper()
	if os.Getenv(enableEnv) == "" {
		t.Skipf("container tests are off: %s=1 (make test-containers) runs them; they need a Docker engine and the image", enableEnv)
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Fatalf("%s is set but the Docker engine does not answer (docker info): %v\n%s", enableEnv, err, out)
	}
	if out, err := exec.Command("docker", "image", "inspect", image()).CombinedOutput(); err != nil {
		t.Fatalf("no image %s (make image builds it): %v\n%s", image(), err, out)
	}
}

// docker runs the docker CLI and returns its output, failing the test on
// an error.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := dockerOut(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func dockerOut(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// fed is a federation of a coordinator and three nodes, each in a
// container; node-i on the internal network site-i, which the coordinator
// joins under the name "coordinator" (the address in the kits).
type fed struct {
	t      *testing.T
	prefix string // of the containers' and networks' names
	dir    string // fed/ (the kits), state/NAME, data/, observer/
	user   string // the containers' user, who owns dir
	rounds int
	opts   fedOptions
	nodes  []string
	client *http.Client
	addr   string // the coordinator's metrics listener, published on 127.0.0.1
}

type fedOptions struct {
	rounds      int
	localEpochs int      // how long a round's training lasts: the window to act in
	coordArgs   []string // more coordinator flags (later flags win)
}

// provision writes a federation (mode mhe, the InsecureTest preset, no DP,
// a small MLP on a CSV of Gaussian blobs) and its observer certificate.
func provision(t *testing.T, o fedOptions) *fed {
	t.Helper()
	requireDocker(t)
	var b [4]byte
	rand.Read(b[:])
	f := &fed{t: t, prefix: "cloister-ct-" + hex.EncodeToString(b[:]), dir: t.TempDir(), rounds: o.rounds, opts: o,
		nodes: []string{"node-1", "node-2", "node-3"}}
	opts := pki.InitOptions{Nodes: 3, Threshold: 2, MinCohort: 2, Federation: "containers", Address: "coordinator:7443",
		Mode: federation.ModeMHE, Preset: "InsecureTest", DP: &federation.DP{},
		Model:    federation.ModelSpec{Kind: "mlp", Inputs: 24, Classes: 4, Hidden: []int{32}},
		Training: federation.Training{Rounds: o.rounds, LocalEpochs: o.localEpochs, Batch: 16, LearningRate: 0.05, Momentum: 0.9}}
	now := time.Now()
	if err := pki.InitFederation(f.path("fed"), opts, now, nil); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(f.path("fed", pki.CADir))
	if err != nil {
		t.Fatal(err)
	}
	cred, err := ca.Issue(pki.Request{Role: pki.RoleObserver, Name: "test"}, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteCredential(f.path("observer"), ca.Certificate(), cred); err != nil {
		t.Fatal(err)
	}
	for _, n := range f.nodes {
		key := make([]byte, store.KeySize)
		rand.Read(key)
		if err := os.WriteFile(f.path("fed", n, store.KeyFile), key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range append([]string{"coordinator"}, f.nodes...) {
		if err := os.MkdirAll(f.path("state", n), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(f.path("data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.path("data", "blobs.csv"), blobs(1200, 24, 4), 0o644); err != nil {
		t.Fatal(err)
	}
	// The containers run as the image's user, who must own what they read
	// and write; a user who cannot give files away runs them as herself.
	f.user = fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
	if os.Getuid() == 0 {
		f.user = imageUser
		for _, d := range []string{"fed", "state", "data"} {
			chownAll(t, f.path(d), 65532, 65532)
		}
	}
	f.client = observerClient(t, f.path("observer"))
	return f
}

func (f *fed) path(elem ...string) string { return filepath.Join(append([]string{f.dir}, elem...)...) }
func (f *fed) name(s string) string       { return f.prefix + "-" + s }

func chownAll(t *testing.T, dir string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// blobs is a CSV of n examples in `classes` Gaussian blobs over `features`
// columns, the label in column y.
func blobs(n, features, classes int) []byte {
	var b strings.Builder
	for j := range features {
		fmt.Fprintf(&b, "x%d,", j)
	}
	b.WriteString("y\n")
	rng := mrand.New(mrand.NewPCG(42, 1))
	for i := range n {
		y := i % classes
		for j := range features {
			c := 0.0
			if j%classes == y {
				c = 1.5
			}
			fmt.Fprintf(&b, "%.4f,", c+rng.NormFloat64())
		}
		fmt.Fprintf(&b, "%d\n", y)
	}
	return []byte(b.String())
}

func observerClient(t *testing.T, dir string) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dir, pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("observer ca.pem holds no certificate")
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, pki.CertFile), filepath.Join(dir, pki.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
}

// hardening are the docker run flags every daemon container gets.
func (f *fed) hardening() []string {
	return []string{"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", f.user}
}

// start creates the networks and containers and starts the coordinator,
// then the nodes. Everything is removed when the test ends.
func (f *fed) start() {
	t := f.t
	t.Helper()
	t.Cleanup(f.cleanup)
	for i := range f.nodes {
		docker(t, "network", "create", "--internal", f.name(fmt.Sprintf("site-%d", i+1)))
	}
	docker(t, "network", "create", f.name("ops"))
	args := append([]string{"create", "--name", f.name("coordinator"), "--network", f.name("ops"), "-p", "127.0.0.1::9464"}, f.hardening()...)
	args = append(args, "-v", f.path("fed", pki.CoordinatorDir)+":/etc/cloister:ro", "-v", f.path("state", "coordinator")+":/var/lib/cloister",
		image(), "coordinator", "--kit=/etc/cloister", "--state=/var/lib/cloister", "--listen=:7443",
		"--metrics=:9464", "--metrics-tls", "--log-format=json", "--tick=100ms", "--gather=1s",
		"--collect-timeout=20s", "--step-timeout=20s", "--eval-timeout=30s")
	args = append(args, f.opts.coordArgs...)
	docker(t, args...)
	for i := range f.nodes {
		docker(t, "network", "connect", "--alias", "coordinator", f.name(fmt.Sprintf("site-%d", i+1)), f.name("coordinator"))
	}
	f.startCoordinator()
	for i, n := range f.nodes {
		args := append([]string{"run", "-d", "--name", f.name(n), "--network", f.name(fmt.Sprintf("site-%d", i+1))}, f.hardening()...)
		args = append(args, "-v", f.path("fed", n)+":/etc/cloister:ro", "-v", f.path("state", n)+":/var/lib/cloister",
			"-v", f.path("data")+":/data:ro", image(), "node", "--kit=/etc/cloister", "--state=/var/lib/cloister",
			"--data=csv:/data/blobs.csv:label=y", "--partition=iid", "--seed=3", "--tick=100ms", "--log-format=json")
		docker(t, args...)
	}
}

// startCoordinator starts the coordinator's container (again, after a
// kill) and waits for its /status.
func (f *fed) startCoordinator() {
	t := f.t
	t.Helper()
	docker(t, "start", f.name("coordinator"))
	out := docker(t, "port", f.name("coordinator"), "9464/tcp")
	f.addr = strings.Fields(out)[0]
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := f.status(); err == nil {
			return
		}
		if out, _ := dockerOut("inspect", "-f", "{{.State.Running}}", f.name("coordinator")); out != "true" {
			t.Fatalf("the coordinator's container stopped (running: %s)", out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the coordinator's /status does not answer on %s after a minute", f.addr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cleanup removes the containers and networks, after logging the
// containers' last lines if the test failed.
func (f *fed) cleanup() {
	names := []string{f.name("coordinator")}
	for _, n := range f.nodes {
		names = append(names, f.name(n))
	}
	for _, n := range names {
		if f.t.Failed() {
			if out, err := dockerOut("logs", "--tail", "25", n); err == nil {
				f.t.Logf("%s:\n%s", n, out)
			}
		}
		dockerOut("rm", "-f", "-v", n)
	}
	for i := range f.nodes {
		dockerOut("network", "rm", f.name(fmt.Sprintf("site-%d", i+1)))
	}
	dockerOut("network", "rm", f.name("ops"))
}

// status is the part of the coordinator's /status the tests read.
type status struct {
	Phase     string   `json:"phase"`
	Round     int      `json:"round"`
	Commits   int      `json:"commits"`
	Leader    string   `json:"leader"`
	Live      []string `json:"live"`
	Connected []string `json:"connected"`
}

func (f *fed) get(path string, v any) error {
	resp, err := f.client.Get("https://" + f.addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (f *fed) status() (status, error) {
	var s status
	err := f.get("/status", &s)
	return s, err
}

// wait polls /status until ok holds.
func (f *fed) wait(timeout time.Duration, what string, ok func(status) bool) status {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s, err := f.status()
		if err == nil && ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("waiting for %s: timed out after %v (last status %+v, %v)", what, timeout, s, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// victim returns a node that is not the round's leader (so that the
// round's outcome does not hang on a new leader), and its site's index.
func (f *fed) victim(s status) (string, int) {
	for i := len(f.nodes) - 1; i >= 0; i-- {
		if f.nodes[i] != s.Leader {
			return f.nodes[i], i + 1
		}
	}
	panic("unreachable: three nodes, one leader")
}

// finish waits for every node container to exit 0 (the session is over),
// reads the coordinator's round history and stops it.
func (f *fed) finish(timeout time.Duration) *coordinator.History {
	t := f.t
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, n := range f.nodes {
		for {
			out := docker(t, "inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", f.name(n))
			if running, code, _ := strings.Cut(out, " "); running == "false" {
				if code != "0" {
					t.Fatalf("%s exited with status %s", n, code)
				}
				break
			}
			if time.Now().After(deadline) {
				s, err := f.status()
				t.Fatalf("%s still running after %v; coordinator %+v %v", n, timeout, s, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	var h coordinator.History
	if err := f.get("/rounds", &h); err != nil {
		t.Fatal(err)
	}
	docker(t, "stop", "-t", "20", f.name("coordinator"))
	for _, n := range f.nodes {
		f.checkFirstConnect(n)
	}
	return &h
}

// logLine is a daemon's JSON log record, as far as the tests read it.
type logLine struct {
	Time time.Time `json:"time"`
	Msg  string    `json:"msg"`
}

// checkFirstConnect checks that node connected within a few seconds of
// starting: on a network whose resolver drops TXT queries (Docker's
// internal networks), a gRPC channel that asked DNS for a service config
// would wait 10 s at every dial.
func (f *fed) checkFirstConnect(node string) {
	t := f.t
	t.Helper()
	out := docker(t, "logs", f.name(node))
	var started, connected time.Time
	for _, line := range strings.Split(out, "\n") {
		var l logLine
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		switch {
		case l.Msg == "local data" && started.IsZero():
			started = l.Time
		case l.Msg == "connected to the coordinator" && connected.IsZero():
			connected = l.Time
		}
	}
	if started.IsZero() || connected.IsZero() {
		t.Errorf("%s's log lacks its start or its first connection:\n%s", node, out)
		return
	}
	if d := connected.Sub(started); d > 5*time.Second {
		t.Errorf("%s took %.1fs to connect to the coordinator after it started", node, d.Seconds())
	}
}

var okLine = regexp.MustCompile(`(?m)^ok   /state/(\S+)/audit\.log: \d+ records, (\d+) rounds committed`)

// verifyAudit runs the image's cloister audit verify on every log and
// checks that the coordinator's holds every round, once.
func (f *fed) verifyAudit() {
	t := f.t
	t.Helper()
	args := append([]string{"run", "--rm"}, f.hardening()...)
	args = append(args, "--network", "none", "-v", f.path("state")+":/state:ro", "-v", f.path("fed", pki.CoordinatorDir)+":/kit:ro",
		image(), "audit", "verify", "--kit", "/kit", "/state")
	out, err := dockerOut(args...)
	t.Logf("cloister audit verify:\n%s", out)
	if err != nil {
		t.Fatalf("audit verify failed: %v", err)
	}
	logs := map[string]int{}
	for _, m := range okLine.FindAllStringSubmatch(out, -1) {
		logs[m[1]], _ = strconv.Atoi(m[2])
	}
	if len(logs) != 1+len(f.nodes) {
		t.Errorf("%d logs verified (%v), want the coordinator's and %d nodes'", len(logs), logs, len(f.nodes))
	}
	if logs["coordinator"] != f.rounds {
		t.Errorf("the coordinator's log holds %d committed rounds, want %d", logs["coordinator"], f.rounds)
	}
}

// roundOf returns round r of the history.
func roundOf(t *testing.T, h *coordinator.History, r int) coordinator.RoundInfo {
	t.Helper()
	for _, ri := range h.History {
		if int(ri.Round) == r {
			return ri
		}
	}
	t.Fatalf("no round %d in the history", r)
	return coordinator.RoundInfo{}
}

func included(ri coordinator.RoundInfo) []string {
	var s []string
	for _, n := range ri.Included {
		s = append(s, string(n))
	}
	return s
}

// waitConnected waits until the coordinator has (or, with want false, has
// not) a connection from node.
func (f *fed) waitConnected(node string, want bool, timeout time.Duration) {
	f.t.Helper()
	f.wait(timeout, fmt.Sprintf("%s connected: %v", node, want), func(s status) bool { return slices.Contains(s.Connected, node) == want })
}

// waitLive waits until node is live again (it said Hello) and returns the
// time the coordinator's /status first showed it.
func (f *fed) waitLive(node string, timeout time.Duration) time.Time {
	f.t.Helper()
	f.wait(timeout, node+" live again", func(s status) bool { return slices.Contains(s.Live, node) })
	return time.Now()
}

// checkDropped checks that round r committed without victim, by the other
// two.
func checkDropped(t *testing.T, h *coordinator.History, r int, victim string) coordinator.RoundInfo {
	t.Helper()
	ri := roundOf(t, h, r)
	if ri.Outcome != "committed" || slices.Contains(included(ri), victim) || len(ri.Included) != 2 {
		t.Errorf("round %d: %s with %v, want committed by the other two, without %s", r, ri.Outcome, included(ri), victim)
	}
	return ri
}

// checkBack checks that the first round that started after victim was
// live again included it, and returns that round.
func checkBack(t *testing.T, h *coordinator.History, victim string, live time.Time) int {
	t.Helper()
	for _, ri := range h.History {
		if ri.Started.After(live) {
			if ri.Outcome != "committed" || !slices.Contains(included(ri), victim) {
				t.Errorf("round %d, the first to start after %s was live again: %s with %v, want it included", ri.Round, victim, ri.Outcome, included(ri))
			}
			return int(ri.Round)
		}
	}
	t.Errorf("the session ended before %s was back (live again at %s)", victim, live.Format(time.StampMilli))
	return 0
}

// logHistory logs each round's outcome.
func logHistory(t *testing.T, h *coordinator.History) {
	t.Helper()
	for _, ri := range h.History {
		var phases []string
		for _, p := range []string{coordinator.PhaseCollect, coordinator.PhaseReveal, coordinator.PhaseCommit, coordinator.PhaseEvaluate} {
			if s, ok := ri.Phases[p]; ok {
				phases = append(phases, fmt.Sprintf("%s %.1fs", p, s))
			}
		}
		what := ri.Outcome
		if ri.Reason != "" {
			what += " (" + ri.Reason + ")"
		}
		t.Logf("round %d: %s, leader %s, included %v, %.1fs: %s", ri.Round, what, ri.Leader, included(ri), ri.Seconds, strings.Join(phases, ", "))
	}
}
