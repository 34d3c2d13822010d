// Package collector is a reference StatsSink (tftpgw.v1.StatsSink): it
// receives the stats events of many tftpgw edges, writes each one as a
// line of protojson, and aggregates them for Prometheus.
package collector

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// DefaultEdgeExpiry is how long an edge that stopped reporting keeps its
// per-edge metrics.
const DefaultEdgeExpiry = 10 * time.Minute

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

	// Logger receives stream starts and ends; slog.Default() if nil.
	Logger *slog.Logger
}

// Sink implements tftpgw.v1.StatsSink. It is safe for concurrent streams.
type Sink struct {
	tftpgwv1.UnimplementedStatsSinkServer

	logger *slog.Logger
	mu     sync.Mutex // serialises writes to out
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
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	s := &Sink{
		logger: logger,
		out:    cfg.Out,
		agg:    newAggregate(cfg.EdgeExpiry),
		reg:    prometheus.NewRegistry(),
	}
	s.reg.MustRegister(s.agg, s.agg.sessionDuration, s.agg.firstData, s.agg.headerLatency, s.agg.streams)
	return s
}

// Registry returns the registry of the aggregated metrics.
func (s *Sink) Registry() *prometheus.Registry { return s.reg }

// MetricsHandler serves the aggregated metrics.
func (s *Sink) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg})
}

var marshal = protojson.MarshalOptions{UseProtoNames: true}

// Publish receives the events of one stream until the edge closes it.
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
		n++
		if err := s.Record(ev); err != nil {
			s.logger.Error("stats output failed", "err", err)
			return status.Error(codes.Internal, "collector cannot store events")
		}
	}
}

// Record writes ev to the output and adds it to the metrics, as Publish
// does for each event it receives.
func (s *Sink) Record(ev *tftpgwv1.StatsEvent) error {
	s.agg.add(ev, time.Now())
	if s.out == nil {
		return nil
	}
	b, err := marshal.Marshal(ev)
	if err != nil {
		return fmt.Errorf("collector: marshal event: %w", err)
	}
	b = append(b, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.out.Write(b); err != nil {
		return fmt.Errorf("collector: write event: %w", err)
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
	expiry time.Duration

	mu    sync.Mutex
	edges map[string]*edgeState

	sessionDuration *prometheus.HistogramVec
	firstData       prometheus.Histogram
	headerLatency   prometheus.Histogram
	streams         prometheus.Gauge

	events, sessions, errors, backendErrors, active, lastReport *prometheus.Desc
	counters                                                    []edgeCounter
}

type edgeState struct {
	seen     time.Time
	events   [2]uint64 // session, server
	total    *tftpgwv1.Counters
	active   uint64
	reported time.Time
}

// edgeCounter is a per-edge counter read from the last report's totals.
type edgeCounter struct {
	desc *prometheus.Desc
	get  func(*tftpgwv1.Counters) uint64
}

const ns = "tftpgw_collector_"

func newAggregate(expiry time.Duration) *aggregate {
	edge := []string{"edge"}
	counter := func(name, help string, get func(*tftpgwv1.Counters) uint64) edgeCounter {
		return edgeCounter{prometheus.NewDesc(ns+"edge_"+name, help+" (the edge's last reported total).", edge, nil), get}
	}
	return &aggregate{
		expiry: expiry,
		edges:  make(map[string]*edgeState),
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
		events:        prometheus.NewDesc(ns+"events_received_total", "Events received, by edge and type (session, server).", []string{"edge", "type"}, nil),
		sessions:      prometheus.NewDesc(ns+"edge_sessions_total", "Sessions by outcome (the edge's last reported total).", []string{"edge", "outcome"}, nil),
		errors:        prometheus.NewDesc(ns+"edge_errors_sent_total", "ERROR packets sent by TFTP code (the edge's last reported total).", []string{"edge", "code"}, nil),
		backendErrors: prometheus.NewDesc(ns+"edge_backend_errors_total", "Failed backend calls by gRPC code (the edge's last reported total).", []string{"edge", "code"}, nil),
		active:        prometheus.NewDesc(ns+"edge_active_sessions", "Sessions running at the edge's last report.", edge, nil),
		lastReport:    prometheus.NewDesc(ns+"edge_last_report_timestamp_seconds", "When the edge's last report was received (Unix time).", edge, nil),
		counters: []edgeCounter{
			counter("bytes_sent_total", "Payload bytes of DATA packets sent", (*tftpgwv1.Counters).GetBytesSent),
			counter("packets_sent_total", "Packets sent", (*tftpgwv1.Counters).GetPacketsSent),
			counter("retransmits_total", "Packets sent again after a timeout", (*tftpgwv1.Counters).GetRetransmits),
			counter("duplicate_acks_total", "ACKs that acknowledged nothing new", (*tftpgwv1.Counters).GetDuplicateAcks),
			counter("malformed_packets_total", "Malformed packets on the listening port", (*tftpgwv1.Counters).GetMalformedPackets),
			counter("unknown_tid_packets_total", "Packets from unknown transfer IDs", (*tftpgwv1.Counters).GetUnknownTidPackets),
			counter("write_requests_refused_total", "Write requests refused", (*tftpgwv1.Counters).GetWriteRequestsRefused),
			counter("duplicate_requests_total", "Duplicate read requests ignored", (*tftpgwv1.Counters).GetDuplicateRequests),
			counter("stats_events_dropped_total", "Stats events the edge dropped", (*tftpgwv1.Counters).GetStatsEventsDropped),
			counter("busy_refusals_total", "Read requests refused with \"server busy\" (over a limit)", (*tftpgwv1.Counters).GetBusyRefusals),
			counter("ignored_broadcasts_total", "Requests sent to a broadcast or multicast address, ignored", (*tftpgwv1.Counters).GetIgnoredBroadcasts),
		},
	}
}

func (a *aggregate) add(ev *tftpgwv1.StatsEvent, now time.Time) {
	edge := edgeOf(ev)
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
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.edges[edge]
	if e == nil {
		a.forgetExpired(now) // without scrapes too, churning edge IDs stay bounded
		e = &edgeState{}
		a.edges[edge] = e
	}
	e.seen = now
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
	for _, d := range []*prometheus.Desc{a.events, a.sessions, a.errors, a.backendErrors, a.active, a.lastReport} {
		ch <- d
	}
	for _, c := range a.counters {
		ch <- c.desc
	}
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
	for edge, e := range a.edges {
		counter(a.events, e.events[0], edge, "session")
		counter(a.events, e.events[1], edge, "server")
		if e.total == nil {
			continue
		}
		t := e.total
		counter(a.sessions, t.GetSessionsOk(), edge, "ok")
		counter(a.sessions, t.GetSessionsError(), edge, "error")
		counter(a.sessions, t.GetSessionsProbe(), edge, "probe")
		counter(a.sessions, t.GetSessionsAborted(), edge, "aborted")
		counter(a.sessions, t.GetSessionsTimeout(), edge, "timeout")
		for _, c := range a.counters {
			counter(c.desc, c.get(t), edge)
		}
		for code, n := range t.GetErrorsSent() {
			counter(a.errors, n, edge, strconv.FormatUint(uint64(code), 10))
		}
		for code, n := range t.GetBackendErrors() {
			counter(a.backendErrors, n, edge, code)
		}
		ch <- prometheus.MustNewConstMetric(a.active, prometheus.GaugeValue, float64(e.active), edge)
		ch <- prometheus.MustNewConstMetric(a.lastReport, prometheus.GaugeValue, float64(e.reported.UnixNano())/1e9, edge)
	}
}
