package stats

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/gateway"
)

// Buckets of the latency histograms, in seconds: from 1 ms (a cached
// file's first DATA) to 30 s (a firmware's whole patience).
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Buckets of the session duration histogram, in seconds: from a refused
// request to a slow multi-gigabyte image.
var durationBuckets = []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}

// Metrics is the Prometheus instrumentation of an edge, in a registry of
// its own (never prometheus.DefaultRegisterer), served by [Metrics.Handler].
//
// The server-wide counters are those of a ServerStats report: one metric
// per field of its Counters (tftpgw_sessions_total{outcome},
// tftpgw_bytes_sent_total, tftpgw_errors_sent_total{code}, ...; the
// counters table, counters.go, lists them), made at scrape time with the
// conversion that makes the reports, plus the tftpgw_active_sessions
// gauge. The gateway's counters among them are read from the source set
// with [Metrics.SetSource] (the server's [gateway.Server.Stats]), or else
// from the last report given to [Metrics.ObserveServer]; the others are
// kept here: tftpgw_stats_events_dropped_total is fed by a [Publisher] and
// tftpgw_backend_errors_total{code} by the interceptors of
// [Metrics.GRPCClientInterceptors]. tftpgw_duplicate_acks_total is the
// gateway's count, or the sum over the sessions given to
// [Metrics.ObserveSession] when that is larger (sessions observed without a
// source).
//
// The per-session histograms (tftpgw_session_duration_seconds{outcome},
// tftpgw_time_to_first_data_seconds) come from [Metrics.ObserveSession];
// tftpgw_stats_events_delivered_total from a [Publisher];
// tftpgw_backend_header_latency_seconds and go-grpc-middleware's
// grpc_client_* metrics from the interceptors.
//
// All methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	mu     sync.Mutex
	source func() gateway.ServerStats
	last   gateway.ServerStats
	// backendErrs counts failed backend calls by gRPC code.
	backendErrs map[codes.Code]uint64

	duplicateAcks atomic.Int64 // of the sessions observed
	eventsDropped atomic.Uint64

	eventsDelivered prometheus.Counter
	sessionDuration *prometheus.HistogramVec
	firstData       prometheus.Histogram
	headerLatency   prometheus.Histogram
	grpc            *grpcprom.ClientMetrics

	counters   *CounterMetrics
	descActive *prometheus.Desc
	descHTTP   *prometheus.Desc
}

// NewMetrics returns the metrics of an edge, registered in a new private
// registry together with the Go runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg:         prometheus.NewRegistry(),
		backendErrs: make(map[codes.Code]uint64),
		eventsDelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tftpgw_stats_events_delivered_total",
			Help: "Stats events the stats sink acknowledged.",
		}),
		sessionDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tftpgw_session_duration_seconds",
			Help:    "Duration of finished TFTP sessions, from the read request to the end.",
			Buckets: durationBuckets,
		}, []string{"outcome"}),
		firstData: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tftpgw_time_to_first_data_seconds",
			Help:    "Time from the read request to the first DATA packet, for sessions that sent data.",
			Buckets: latencyBuckets,
		}),
		headerLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tftpgw_backend_header_latency_seconds",
			Help:    "Time from the start of a streaming backend call to its first message (the content header).",
			Buckets: latencyBuckets,
		}),
		grpc: grpcprom.NewClientMetrics(grpcprom.WithClientHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets(latencyBuckets))),
		counters:   edgeCounterMetrics(),
		descActive: prometheus.NewDesc("tftpgw_active_sessions", "TFTP sessions running now.", nil, nil),
		descHTTP:   prometheus.NewDesc("tftpgw_active_http_requests", "HTTP requests running now (tftpgw -http).", nil, nil),
	}
	m.last.Time = time.Now()
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		(*serverCollector)(m),
		m.eventsDelivered, m.sessionDuration, m.firstData, m.headerLatency, m.grpc,
	)
	return m
}

// Registry returns the private registry, to add more collectors to it.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// SetSource makes the server-wide counters come from f at every scrape;
// pass the server's [gateway.Server.Stats]. With no source they come from
// the last [Metrics.ObserveServer] report, up to one interval old.
func (m *Metrics) SetSource(f func() gateway.ServerStats) {
	m.mu.Lock()
	m.source = f
	m.mu.Unlock()
}

// ObserveSession records a finished session; it has the signature of
// [gateway.Server.SessionStatsFunc] and does not block.
func (m *Metrics) ObserveSession(s gateway.SessionStats) {
	m.duplicateAcks.Add(max(s.DuplicateAcks, 0))
	m.sessionDuration.WithLabelValues(s.Outcome.String()).Observe(s.Duration.Seconds())
	if s.TimeToFirstData > 0 {
		m.firstData.Observe(s.TimeToFirstData.Seconds())
	}
}

// ObserveServer keeps a server report for the scrapes that have no
// source; it has the signature of [gateway.Server.ServerStatsFunc].
func (m *Metrics) ObserveServer(s gateway.ServerStats) {
	m.mu.Lock()
	m.last = cloneServerStats(s)
	m.mu.Unlock()
}

// addDropped counts stats events dropped by a Publisher.
func (m *Metrics) addDropped(n int) { m.eventsDropped.Add(uint64(max(n, 0))) }

// addDelivered counts stats events a Publisher's sink acknowledged.
func (m *Metrics) addDelivered(n int) { m.eventsDelivered.Add(float64(n)) }

// BackendErrors returns the number of failed backend calls so far, by
// gRPC code name ("Unavailable", ...), as counted by the interceptors.
func (m *Metrics) BackendErrors() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.backendErrs) == 0 {
		return nil
	}
	r := make(map[string]uint64, len(m.backendErrs))
	for c, n := range m.backendErrs {
		r[c.String()] = n
	}
	return r
}

func (m *Metrics) backendFailed(c codes.Code) {
	m.mu.Lock()
	m.backendErrs[c]++
	m.mu.Unlock()
}

// extra returns the counters of the reports that Metrics keeps.
func (m *Metrics) extra() Extra {
	return Extra{BackendErrors: m.BackendErrors(), EventsDropped: m.eventsDropped.Load()}
}

// GRPCClientInterceptors returns the interceptors to install on the
// client connections to the content backends: go-grpc-middleware's client
// metrics (grpc_client_started_total, grpc_client_handled_total{grpc_code},
// grpc_client_handling_seconds, ...) chained with this package's backend
// metrics (tftpgw_backend_header_latency_seconds for streaming calls and
// tftpgw_backend_errors_total{code}, also reported to the stats sink).
// Install both, e.g. with grpc.WithChainUnaryInterceptor and
// grpc.WithChainStreamInterceptor, or use [Metrics.GRPCDialOptions].
func (m *Metrics) GRPCClientInterceptors() (grpc.UnaryClientInterceptor, grpc.StreamClientInterceptor) {
	gu, gs := m.grpc.UnaryClientInterceptor(), m.grpc.StreamClientInterceptor()
	unary := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := gu(ctx, method, req, reply, cc, invoker, opts...)
		m.callEnded(ctx, err)
		return err
	}
	stream := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		start := time.Now()
		cs, err := gs(ctx, desc, cc, method, streamer, opts...)
		if err != nil {
			m.callEnded(ctx, err)
			return nil, err
		}
		return &observedStream{ClientStream: cs, m: m, ctx: ctx, start: start, header: desc.ServerStreams}, nil
	}
	return unary, stream
}

// GRPCDialOptions returns the options that install
// [Metrics.GRPCClientInterceptors] on a client connection.
func (m *Metrics) GRPCDialOptions() []grpc.DialOption {
	u, s := m.GRPCClientInterceptors()
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(u), grpc.WithChainStreamInterceptor(s)}
}

// callEnded counts a failed call, unless the caller cancelled it (the
// TFTP session ended first, which is not the backend's fault). A call
// cancelled with a cause that wraps context.DeadlineExceeded missed a
// budget the caller gave the backend (the remote handler's header and
// idle budgets, a deadline): the backend's failure, counted as
// DeadlineExceeded. Without that, a backend that is down (every call
// waiting for a connection until its budget) would count nothing.
func (m *Metrics) callEnded(ctx context.Context, err error) {
	switch {
	case err == nil || errors.Is(err, io.EOF):
	case ctx.Err() == nil:
		m.backendFailed(status.Code(err))
	case errors.Is(context.Cause(ctx), context.DeadlineExceeded):
		m.backendFailed(codes.DeadlineExceeded)
	}
}

// observedStream times a streaming call's first message and counts its
// failure. gRPC calls RecvMsg from one goroutine at a time.
type observedStream struct {
	grpc.ClientStream
	m      *Metrics
	ctx    context.Context
	start  time.Time
	header bool // time the first message
	done   bool
}

func (s *observedStream) RecvMsg(msg any) error {
	err := s.ClientStream.RecvMsg(msg)
	if s.done {
		return err
	}
	if err == nil {
		if s.header {
			s.header = false
			s.m.headerLatency.Observe(time.Since(s.start).Seconds())
		}
		return nil
	}
	s.done = true
	s.m.callEnded(s.ctx, err)
	return err
}

// serverCollector makes the server-wide counters at scrape time: the
// Counters of a report, as a [Publisher] would send it now.
type serverCollector Metrics

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	c.counters.Describe(ch)
	ch <- c.descActive
	ch <- c.descHTTP
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	src, s := c.source, c.last
	c.mu.Unlock()
	if src != nil {
		s = src()
	}
	s.DuplicateAcks = max(s.DuplicateAcks, c.duplicateAcks.Load())
	c.counters.Collect(ch, countersProto(s, (*Metrics)(c).extra()))
	ch <- prometheus.MustNewConstMetric(c.descActive, prometheus.GaugeValue, float64(s.ActiveSessions))
	ch <- prometheus.MustNewConstMetric(c.descHTTP, prometheus.GaugeValue, float64(s.HTTPActive))
}

func cloneServerStats(s gateway.ServerStats) gateway.ServerStats {
	s.Sessions = maps.Clone(s.Sessions)
	s.ErrorsSent = maps.Clone(s.ErrorsSent)
	s.Uploads = maps.Clone(s.Uploads)
	s.HTTPRequests = maps.Clone(s.HTTPRequests)
	return s
}
