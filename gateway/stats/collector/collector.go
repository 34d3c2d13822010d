// Package collector is a reference StatsSink (tftpgw.v1.StatsSink): it
// receives the stats events of many tftpgw edges, writes each one as a
// line of protojson, and aggregates them for Prometheus.
//
// It acknowledges a batch (PublishResponse.events_received) only once its
// events are written. It drops the copies of events an edge sent again
// (same StatsEvent.instance, a sequence already seen) and counts the gaps
// in an edge's sequence (events the edge dropped), in
// tftpgw_collector_events_duplicate_total and
// tftpgw_collector_events_missing_total. This assumes that edge IDs are
// unique and that an edge publishes to this collector only: collectors
// behind a balancer that spreads one edge's batches each see gaps, and
// two processes with one edge ID reset each other's sequence (no copy is
// then dropped). Gaps before the first event seen from an edge process
// are not counted.
//
// The number of series it exposes is bounded whatever the edges send:
// label values come from fixed sets (outcomes, TFTP error codes 0 to 8 and
// "other", gRPC code names and "other"), and at most [Config.MaxEdges]
// edges have series of their own; the events of further edges are written
// and counted in tftpgw_collector_events_untracked_total only. See
// [MaxSeries].
package collector

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tftpgw/tftpgw/gateway/stats"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// Defaults of [Config].
const (
	// DefaultEdgeExpiry is how long an edge that stopped reporting keeps
	// its per-edge metrics.
	DefaultEdgeExpiry = 10 * time.Minute
	// DefaultMaxEdges is how many edges have series of their own.
	DefaultMaxEdges = 1000
)

// GlobalSeries counts the series of the collector's registry that belong
// to no edge: the session duration histogram by outcome (6 outcomes of 18
// series), the time-to-first-data and header-latency histograms (17
// each), and the streams, edges and untracked-events series. Each tracked
// edge adds SeriesPerEdge (see [MaxSeries]).
const GlobalSeries = 6*18 + 17 + 17 + 3

// SeriesPerEdge counts the series of one tracked edge: events received by
// type (2), active sessions, last report, missing and duplicate events,
// and the edge's counters ([stats.CollectorCounterMetrics]: one series
// per counter, sessions by outcome, errors sent by TFTP code 0 to 8 or
// other, backend errors by gRPC code name or other). It follows the
// counters table, so it is a variable; do not change it.
var SeriesPerEdge = 2 + 4 + stats.CollectorCounterMetrics().Series()

// MaxSeries returns the most series a collector tracking maxEdges edges
// exposes.
func MaxSeries(maxEdges int) int { return GlobalSeries + SeriesPerEdge*maxEdges }

// maxEdgeID is the longest edge ID given series of its own: a DNS name's
// length. The events of edges with longer IDs are counted as untracked.
const maxEdgeID = 253

// Config configures a [Sink].
type Config struct {
	// Out receives each event as one line of protojson (proto field
	// names), written with a single Write call under a lock, so lines from
	// concurrent streams never interleave. Nil discards the events.
	// Buffering, if any, is the writer's: wrap a *bufio.Writer in a writer
	// that flushes, or pass an *os.File, which does not buffer.
	Out io.Writer

	// EdgeExpiry is how long the per-edge metrics of an edge that stopped
	// reporting are kept; DefaultEdgeExpiry if zero.
	EdgeExpiry time.Duration

	// MaxEdges bounds the edges that have series of their own (and whose
	// sequence is followed); DefaultMaxEdges if zero. The events of
	// further edges are still written, and counted in
	// tftpgw_collector_events_untracked_total.
	MaxEdges int

	// Logger receives stream starts and ends; slog.Default() if nil.
	Logger *slog.Logger
}

// Sink implements tftpgw.v1.StatsSink. It is safe for concurrent streams.
type Sink struct {
	tftpgwv1.UnimplementedStatsSinkServer

	logger *slog.Logger
	mu     sync.Mutex // serialises Record: sequence check, write, commit
	out    io.Writer
	agg    *aggregate
	reg    *prometheus.Registry
}

// New returns a Sink writing to cfg.Out, with its metrics in a private
// registry.
func New(cfg Config) *Sink {
	if cfg.EdgeExpiry <= 0 {
		cfg.EdgeExpiry = DefaultEdgeExpiry
	}
	if cfg.MaxEdges <= 0 {
		cfg.MaxEdges = DefaultMaxEdges
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	s := &Sink{
		logger: logger,
		out:    cfg.Out,
		agg:    newAggregate(cfg.EdgeExpiry, cfg.MaxEdges),
		reg:    prometheus.NewRegistry(),
	}
	s.reg.MustRegister(s.agg, s.agg.sessionDuration, s.agg.firstData, s.agg.headerLatency, s.agg.streams, s.agg.untracked)
	return s
}

// Registry returns the registry of the aggregated metrics.
func (s *Sink) Registry() *prometheus.Registry { return s.reg }

// MetricsHandler serves the aggregated metrics.
func (s *Sink) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg})
}

var marshal = protojson.MarshalOptions{UseProtoNames: true}

// Publish receives the events of one batch until the edge closes the
// stream, and acknowledges all of them (copies included) once they are
// written. If writing fails it fails the call with INTERNAL, so that the
// edge sends the batch again.
func (s *Sink) Publish(stream tftpgwv1.StatsSink_PublishServer) error {
	from := "unknown"
	if p, ok := peer.FromContext(stream.Context()); ok {
		from = p.Addr.String()
	}
	s.agg.streams.Inc()
	defer s.agg.streams.Dec()
	var n uint64
	edge := ""
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			s.logger.Debug("stats stream closed", "peer", from, "edge", edge, "events", n)
			return stream.SendAndClose(&tftpgwv1.PublishResponse{EventsReceived: n})
		}
		if err != nil {
			s.logger.Info("stats stream broken", "peer", from, "edge", edge, "events", n, "err", err)
			return err
		}
		if n == 0 {
			edge = edgeOf(ev)
			s.logger.Debug("stats stream opened", "peer", from, "edge", edge)
		}
		if err := s.Record(ev); err != nil {
			s.logger.Error("stats output failed", "err", err)
			return status.Error(codes.Internal, "collector cannot store events")
		}
		n++
	}
}

// Record writes ev to the output and adds it to the metrics, as Publish
// does for each event it receives. A copy of an event already recorded
// (same edge, instance and sequence) is counted and otherwise ignored; a
// gap in an edge's sequence is counted and logged.
func (s *Sink) Record(ev *tftpgwv1.StatsEvent) error {
	var b []byte
	if s.out != nil {
		var err error
		if b, err = marshal.Marshal(ev); err != nil {
			return fmt.Errorf("collector: marshal event: %w", err)
		}
		b = append(b, '\n')
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.agg.check(ev, now)
	if v.duplicate {
		return nil
	}
	if s.out != nil {
		if _, err := s.out.Write(b); err != nil {
			return fmt.Errorf("collector: write event: %w", err)
		}
	}
	s.agg.add(ev, now, v)
	if v.missing > 0 {
		s.logger.Warn("stats events missing from edge", "edge", v.edge, "instance", ev.GetInstance(),
			"missing", v.missing, "after", ev.GetSequence()-v.missing-1, "got", ev.GetSequence())
	}
	return nil
}

func edgeOf(ev *tftpgwv1.StatsEvent) string {
	if s := ev.GetSession(); s != nil {
		return s.GetEdgeId()
	}
	return ev.GetServer().GetEdgeId()
}

// aggregate holds the per-edge state behind the collector's metrics.
type aggregate struct {
	expiry   time.Duration
	maxEdges int

	mu    sync.Mutex
	edges map[string]*edgeState

	sessionDuration *prometheus.HistogramVec
	firstData       prometheus.Histogram
	headerLatency   prometheus.Histogram
	streams         prometheus.Gauge
	untracked       prometheus.Counter

	events, active, lastReport, missing, duplicates, edgesDesc *prometheus.Desc

	counters *stats.CounterMetrics // from the last report's total
}

type edgeState struct {
	seen     time.Time
	events   [2]uint64 // session, server
	total    *tftpgwv1.Counters
	active   uint64
	reported time.Time

	instance            string // of the sequence followed
	next                uint64 // sequence expected next; 0 before the first
	missing, duplicates uint64
}

const ns = "tftpgw_collector_"

func newAggregate(expiry time.Duration, maxEdges int) *aggregate {
	edge := []string{"edge"}
	return &aggregate{
		expiry:   expiry,
		maxEdges: maxEdges,
		edges:    make(map[string]*edgeState),
		sessionDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    ns + "session_duration_seconds",
			Help:    "Duration of the sessions reported by all edges.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800},
		}, []string{"outcome"}),
		firstData: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    ns + "time_to_first_data_seconds",
			Help:    "Time from the read request to the first DATA, for the sessions of all edges that sent data.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		headerLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    ns + "backend_header_latency_seconds",
			Help:    "Backend header latency of the sessions of all edges that used a backend.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: ns + "streams",
			Help: "Publish streams open now.",
		}),
		untracked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ns + "events_untracked_total",
			Help: "Events written but not given per-edge series: their edge was over -max-edges, or its ID longer than 253 bytes.",
		}),
		events:     prometheus.NewDesc(ns+"events_received_total", "Events received, by edge and type (session, server); copies not included.", []string{"edge", "type"}, nil),
		active:     prometheus.NewDesc(ns+"edge_active_sessions", "Sessions running at the edge's last report.", edge, nil),
		lastReport: prometheus.NewDesc(ns+"edge_last_report_timestamp_seconds", "When the edge's last report was received (Unix time).", edge, nil),
		missing:    prometheus.NewDesc(ns+"events_missing_total", "Gaps in the edge's event sequence: events it dropped (or that never arrived).", edge, nil),
		duplicates: prometheus.NewDesc(ns+"events_duplicate_total", "Copies of events already received (a batch the edge sent again), ignored.", edge, nil),
		edgesDesc:  prometheus.NewDesc(ns+"edges", "Edges with series of their own.", nil, nil),
		counters:   stats.CollectorCounterMetrics(),
	}
}

// verdict is what check found about an event.
type verdict struct {
	edge      string
	state     *edgeState // nil: untracked edge
	duplicate bool
	missing   uint64 // sequence numbers skipped before this event
}

// check finds ev's edge (making its state if there is room) and compares
// ev's sequence with the edge's.
func (a *aggregate) check(ev *tftpgwv1.StatsEvent, now time.Time) verdict {
	v := verdict{edge: edgeOf(ev)}
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.edges[v.edge]
	if e == nil && len(v.edge) <= maxEdgeID {
		a.forgetExpired(now) // without scrapes too, churning edge IDs stay bounded
		if len(a.edges) < a.maxEdges {
			e = &edgeState{}
			a.edges[v.edge] = e
		}
	}
	v.state = e
	seq := ev.GetSequence()
	if e == nil || seq == 0 || e.next == 0 || ev.GetInstance() != e.instance {
		return v // nothing to compare with: an edge restarted, or not followed
	}
	switch {
	case seq < e.next:
		v.duplicate = true
		e.duplicates++
		e.seen = now
	case seq > e.next:
		v.missing = seq - e.next
	}
	return v
}

// add counts a recorded event.
func (a *aggregate) add(ev *tftpgwv1.StatsEvent, now time.Time, v verdict) {
	if s := ev.GetSession(); s != nil {
		outcome := outcomeLabel(s.GetOutcome())
		a.sessionDuration.WithLabelValues(outcome).Observe(s.GetDuration().AsDuration().Seconds())
		if s.GetTimeToFirstData() != nil {
			a.firstData.Observe(s.GetTimeToFirstData().AsDuration().Seconds())
		}
		if b := s.GetBackend(); b.GetHeaderLatency() != nil {
			a.headerLatency.Observe(b.GetHeaderLatency().AsDuration().Seconds())
		}
	}
	if v.state == nil {
		a.untracked.Inc()
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	e := v.state
	if a.edges[v.edge] != e {
		return // forgotten meanwhile
	}
	e.seen = now
	if seq := ev.GetSequence(); seq != 0 {
		if ev.GetInstance() != e.instance || e.next == 0 {
			e.instance, e.next = ev.GetInstance(), seq+1 // first, or a restart
		} else {
			e.next = max(e.next, seq+1)
			e.missing += v.missing
		}
	}
	if r := ev.GetServer(); r != nil {
		e.events[1]++
		e.total = r.GetTotal()
		e.active = r.GetActiveSessions()
		e.reported = now
	} else {
		e.events[0]++
	}
}

// forgetExpired drops the edges silent for longer than the expiry. a.mu
// is held.
func (a *aggregate) forgetExpired(now time.Time) {
	for edge, e := range a.edges {
		if now.Sub(e.seen) > a.expiry {
			delete(a.edges, edge)
		}
	}
}

// edgeCount is how many edges are remembered.
func (a *aggregate) edgeCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.edges)
}

func outcomeLabel(o tftpgwv1.Outcome) string {
	switch o {
	case tftpgwv1.Outcome_OUTCOME_OK:
		return "ok"
	case tftpgwv1.Outcome_OUTCOME_ERROR:
		return "error"
	case tftpgwv1.Outcome_OUTCOME_PROBE:
		return "probe"
	case tftpgwv1.Outcome_OUTCOME_ABORTED:
		return "aborted"
	case tftpgwv1.Outcome_OUTCOME_TIMEOUT:
		return "timeout"
	}
	return "unknown"
}

// Describe implements prometheus.Collector.
func (a *aggregate) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{a.events, a.active, a.lastReport, a.missing, a.duplicates, a.edgesDesc} {
		ch <- d
	}
	a.counters.Describe(ch)
}

// Collect implements prometheus.Collector; it forgets expired edges.
func (a *aggregate) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	a.forgetExpired(now)
	ch <- prometheus.MustNewConstMetric(a.edgesDesc, prometheus.GaugeValue, float64(len(a.edges)))
	for edge, e := range a.edges {
		counter(a.events, e.events[0], edge, "session")
		counter(a.events, e.events[1], edge, "server")
		counter(a.missing, e.missing, edge)
		counter(a.duplicates, e.duplicates, edge)
		if e.total == nil {
			continue
		}
		a.counters.Collect(ch, e.total, edge)
		ch <- prometheus.MustNewConstMetric(a.active, prometheus.GaugeValue, float64(e.active), edge)
		ch <- prometheus.MustNewConstMetric(a.lastReport, prometheus.GaugeValue, float64(e.reported.UnixNano())/1e9, edge)
	}
}
