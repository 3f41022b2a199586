package coordinator

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/store"
	"github.com/cloisterfl/cloister/transport"
)

// metrics are the coordinator's Prometheus metrics, in their own registry.
type metrics struct {
	reg         *prometheus.Registry
	rounds      *prometheus.CounterVec   // by event: started, committed, aborted
	phase       *prometheus.HistogramVec // seconds per phase
	stepSeconds *prometheus.HistogramVec // engine Step time by message kind (aggregation, Open, ...)
	rejected    *prometheus.CounterVec   // by reason
	limited     *prometheus.CounterVec   // by reason: hello, message, unrecorded (Config.Rates)
	dropouts    prometheus.Counter
	round       prometheus.Gauge
	live        prometheus.Gauge

	attestations *prometheus.CounterVec // evidence checked, by result (ok, or the failed check)
	attestVerify prometheus.Histogram   // seconds to verify one Hello's evidence
	attestBytes  prometheus.Histogram   // bytes of one Hello's evidence
	attestAge    *prometheus.GaugeVec   // age of each member's verified evidence
	attestOK     *prometheus.GaugeVec   // 1 if the member's evidence is valid now
	epsilon      prometheus.Gauge       // ε recorded in the audit log (with DP)
}

func newMetrics(c *Coordinator) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	const ns = "cloister_coordinator"
	m.rounds = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rounds_total",
		Help: "Rounds by event: started, committed, aborted."}, []string{"event"})
	m.phase = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "phase_seconds",
		Help:    "Time spent in each phase of a round (collect, reveal, commit, evaluate).",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 16)}, []string{"phase"})
	m.stepSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "step_seconds",
		Help:    "Time the engine spent on one accepted message, by kind (uploads include checking and summing ciphertexts).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"kind"})
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rejected_total",
		Help: "Messages or streams rejected, by reason."}, []string{"reason"})
	m.limited = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "limited_total",
		Help: "What members' rate limits stopped: hello (Hellos dropped before attestation and the engine), " +
			"message (other messages dropped before the engine), unrecorded (refusals not recorded one by one in the audit log)."},
		[]string{"reason"})
	for _, r := range []string{"hello", "message", "unrecorded"} {
		m.limited.WithLabelValues(r)
	}
	m.dropouts = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "dropouts_total",
		Help: "Members marked down (missed a deadline or unreachable)."})
	m.round = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "round", Help: "The current round."})
	m.live = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "live_members", Help: "Members that said Hello and are not down."})
	m.attestations = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "attestations_total",
		Help: "Members' evidence checked, by result: ok, or the check that failed (measurement, tcb, stale-nonce, ...), or expired."}, []string{"result"})
	m.attestVerify = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "attestation_verify_seconds",
		Help: "Time to verify one Hello's evidence (envelope and TEE evidence).", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)})
	m.attestBytes = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "attestation_bytes",
		Help: "Bytes of one Hello's evidence (process keys and TEE evidence).", Buckets: prometheus.ExponentialBuckets(1024, 2, 8)})
	m.attestAge = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "attestation_age_seconds",
		Help: "Age of each member's verified evidence."}, []string{"node"})
	m.attestOK = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "attestation_ok",
		Help: "1 if the member's evidence is valid now, 0 if it failed or expired."}, []string{"node"})
	insecure := 0.0
	if p := c.manifest().Attestation; c.manifest().AttestationRequired() && (p.AllowSim || p.AllowDebug) {
		insecure = 1
	}
	m.reg.MustRegister(m.attestations, m.attestVerify, m.attestBytes, m.attestAge, m.attestOK,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "attestation_insecure",
			Help: "1 if the attestation policy is off or accepts simulated or debug TEEs: development only."},
			func() float64 {
				if !c.manifest().AttestationRequired() {
					return 1
				}
				return insecure
			}))
	m.epsilon = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "epsilon_spent",
		Help: "The federation's cumulative ε recorded at commits, at the manifest's δ (0 without DP)."})
	m.reg.MustRegister(m.rounds, m.phase, m.stepSeconds, m.rejected, m.limited, m.dropouts, m.round, m.live, m.epsilon,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "bytes_received_total",
			Help: "Bytes received from nodes (transport frames)."}, func() float64 { return float64(c.tm.BytesIn.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "bytes_sent_total",
			Help: "Bytes sent to nodes (transport frames)."}, func() float64 { return float64(c.tm.BytesOut.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "max_message_bytes",
			Help: "The message limit, computed from the manifest."}, func() float64 { return float64(c.cfg.Limits.MaxMessage) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "largest_message_bytes",
			Help: "The largest message received from (in) or sent to (out) a node.", ConstLabels: prometheus.Labels{"direction": "in"}},
			func() float64 { return float64(c.tm.LargestIn.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "largest_message_bytes",
			Help: "The largest message received from (in) or sent to (out) a node.", ConstLabels: prometheus.Labels{"direction": "out"}},
			func() float64 { return float64(c.tm.LargestOut.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "connected_nodes",
			Help: "Nodes with an open stream."}, func() float64 { return float64(len(c.srv.Connected())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "commits",
			Help: "Rounds committed in this session."}, func() float64 { return float64(c.Status().Commits) }),
	)
	for _, r := range transport.Reasons() {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "transport_rejected_total",
			Help:        "Connections and streams the transport refused, by reason (handshake: no or foreign certificate).",
			ConstLabels: prometheus.Labels{"reason": r.String()}}, func() float64 { return float64(c.tm.Rejected[r].Load()) }))
	}
	return m
}

// observe updates the metrics from a Ready's events.
func (c *Coordinator) observe(evs []round.Event) {
	for _, e := range evs {
		if e.Kind == round.EventDown {
			c.met.dropouts.Inc()
		}
	}
}

// RoundInfo is one round in the /rounds history.
type RoundInfo struct {
	Round     fl.Round           `json:"round"`
	Outcome   string             `json:"outcome"`
	Reason    string             `json:"reason,omitempty"`
	Leader    fl.NodeID          `json:"leader"`
	Cohort    []fl.NodeID        `json:"cohort"`
	Included  []fl.NodeID        `json:"included"`
	Started   time.Time          `json:"started"`
	Ended     time.Time          `json:"ended,omitzero"`
	Seconds   float64            `json:"seconds"`
	Phases    map[string]float64 `json:"phase_seconds"`
	BytesUp   uint64             `json:"bytes_up"`
	BytesDown uint64             `json:"bytes_down"`
	// The nodes' evaluation of the model committed in this round,
	// example-weighted: the only plaintext the coordinator sees.
	Nodes    int      `json:"nodes_reporting"`
	Examples int      `json:"examples"`
	Accuracy *float64 `json:"accuracy,omitempty"`
	Loss     *float64 `json:"loss,omitempty"`
	// With DP, for a committed round: Epsilon is the ε this round added to
	// the total (aborted rounds since the last commit included), and
	// EpsilonTotal the federation's cumulative ε after it, at the
	// manifest's δ (improved conversion, as recorded in the audit log).
	Epsilon      float64 `json:"epsilon,omitempty"`
	EpsilonTotal float64 `json:"epsilon_total,omitempty"`
}

// History is the /rounds document.
type History struct {
	Session string      `json:"session"`
	Mode    string      `json:"mode"`
	Phase   string      `json:"phase"`
	Round   fl.Round    `json:"round"`
	Commits int         `json:"commits"`
	Rounds  int         `json:"rounds_planned"`
	Live    []fl.NodeID `json:"live"`
	Privacy *Privacy    `json:"privacy,omitempty"` // nil without DP
	History []RoundInfo `json:"history"`
}

// History returns the session's round history from the store.
func (c *Coordinator) History(ctx context.Context) (*History, error) {
	st := c.Status()
	h := &History{Session: c.sessionName(), Mode: c.scheme.Name(), Phase: st.Phase.String(), Round: st.Round,
		Commits: st.Commits, Rounds: c.rcfg.Rounds, Live: st.Live, History: []RoundInfo{}}
	if b := c.budget; b != nil {
		d := c.manifest().DP
		h.Privacy = &Privacy{NoiseMultiplier: d.NoiseMultiplier, Clip: d.Clip, Budget: d.Epsilon, Delta: d.Delta,
			Multiplier: b.Rule.Multiplier, SampleRate: b.Rule.SampleRate, MaxRound: b.MaxRound,
			Exhausted: st.Phase == round.PhaseDone && st.Round >= b.MaxRound && st.Commits < c.rcfg.Rounds}
	}
	rs, err := c.sc.Rounds(ctx, 1, 0)
	if err != nil {
		return nil, err
	}
	sums, err := c.sc.Summaries(ctx, 1, 0)
	if err != nil {
		return nil, err
	}
	byRound := make(map[fl.Round]store.Summary)
	for _, s := range sums {
		byRound[s.Round] = s
	}
	for _, r := range rs {
		ri := RoundInfo{Round: r.Round, Outcome: r.Outcome.String(), Reason: r.Reason, Leader: r.Leader, Cohort: r.Cohort,
			Started: r.Started, Ended: r.Ended, Phases: map[string]float64{}, BytesUp: r.BytesUp, BytesDown: r.BytesDown}
		for _, ct := range r.Included {
			ri.Included = append(ri.Included, ct.Node)
		}
		for _, t := range r.Timings {
			ri.Phases[t.Phase] += t.Duration.Seconds()
		}
		if !r.Ended.IsZero() {
			ri.Seconds = r.Ended.Sub(r.Started).Seconds()
		}
		if c.budget != nil && r.Outcome == store.Committed {
			ri.Epsilon = dp.EpsilonFromMicro(int64(r.MicroEpsilon))
			if _, total, err := c.budget.Cost(r.Round); err == nil {
				ri.EpsilonTotal = dp.EpsilonFromMicro(total)
			}
		}
		if s, ok := byRound[r.Round]; ok {
			ri.Nodes, ri.Examples = s.Nodes, s.Examples
			if !math.IsNaN(s.Accuracy) {
				a, l := s.Accuracy, s.Loss
				ri.Accuracy, ri.Loss = &a, &l
			}
		}
		h.History = append(h.History, ri)
	}
	return h, nil
}

// Handler serves the dashboard at / (HTML), /metrics (Prometheus), /rounds
// (the History as JSON) and /status (the engine's status, the members and
// their attestation as JSON). Serve it on its own listener.
func (c *Coordinator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.serveDashboard)
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.met.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /rounds", func(w http.ResponseWriter, r *http.Request) {
		h, err := c.History(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, h)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, c.statusDoc()) })
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
