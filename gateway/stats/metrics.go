package stats

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
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
// The server-wide counters (tftpgw_sessions_total{outcome},
// tftpgw_bytes_sent_total, tftpgw_packets_sent_total,
// tftpgw_retransmits_total, tftpgw_errors_sent_total{code},
// tftpgw_malformed_packets_total, tftpgw_unknown_tid_packets_total,
// tftpgw_write_requests_total, tftpgw_duplicate_requests_total,
// tftpgw_busy_refusals_total, tftpgw_ignored_broadcasts_total,
// tftpgw_integrity_failures_total and the tftpgw_active_sessions gauge)
// are read at scrape time from the source set
// with [Metrics.SetSource] (the server's [gateway.Server.Stats]), or else
// from the last report given to [Metrics.ObserveServer]. The per-session
// histograms (tftpgw_session_duration_seconds{outcome},
// tftpgw_time_to_first_data_seconds) and tftpgw_duplicate_acks_total come
// from [Metrics.ObserveSession]. tftpgw_stats_events_dropped_total and
// tftpgw_stats_events_delivered_total are fed by a [Publisher];
// tftpgw_backend_header_latency_seconds, tftpgw_backend_errors_total{code}
// and go-grpc-middleware's grpc_client_* metrics by the interceptors of
// [Metrics.GRPCClientInterceptors].
//
// All methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	mu     sync.Mutex
	source func() gateway.ServerStats
	last   gateway.ServerStats
	// backendErrs counts failed backend calls by gRPC code.
	backendErrs map[codes.Code]uint64

	duplicateAcks   prometheus.Counter
	eventsDropped   prometheus.Counter
	eventsDelivered prometheus.Counter
	sessionDuration *prometheus.HistogramVec
	firstData       prometheus.Histogram
	headerLatency   prometheus.Histogram
	backendErrors   *prometheus.CounterVec
	grpc            *grpcprom.ClientMetrics

	descSessions, descBytes, descPackets, descRetransmits, descErrors,
	descMalformed, descUnknownTID, descWRQ, descDuplicates, descActive,
	descBusy, descBroadcasts, descIntegrity *prometheus.Desc
}

// NewMetrics returns the metrics of an edge, registered in a new private
// registry together with the Go runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg:         prometheus.NewRegistry(),
		backendErrs: make(map[codes.Code]uint64),
		duplicateAcks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tftpgw_duplicate_acks_total",
			Help: "ACKs that acknowledged nothing new, summed over finished sessions.",
		}),
		eventsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tftpgw_stats_events_dropped_total",
			Help: "Stats events not delivered to the stats sink: queue full, report replaced by a newer one, sent repeatedly without acknowledgement, or still queued at shutdown.",
		}),
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
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tftpgw_backend_errors_total",
			Help: "Backend calls that failed, by gRPC code; calls the edge cancelled are not counted.",
		}, []string{"code"}),
		grpc: grpcprom.NewClientMetrics(grpcprom.WithClientHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets(latencyBuckets))),
		descSessions:    prometheus.NewDesc("tftpgw_sessions_total", "Finished TFTP sessions, by outcome.", []string{"outcome"}, nil),
		descBytes:       prometheus.NewDesc("tftpgw_bytes_sent_total", "Payload bytes of all DATA packets sent, retransmissions included.", nil, nil),
		descPackets:     prometheus.NewDesc("tftpgw_packets_sent_total", "Packets sent by sessions: OACK, DATA and ERROR, retransmissions included.", nil, nil),
		descRetransmits: prometheus.NewDesc("tftpgw_retransmits_total", "Packets sent again after a timeout.", nil, nil),
		descErrors:      prometheus.NewDesc("tftpgw_errors_sent_total", "ERROR packets sent, by TFTP error code.", []string{"code"}, nil),
		descMalformed:   prometheus.NewDesc("tftpgw_malformed_packets_total", "Packets on the listening port that were not a valid request.", nil, nil),
		descUnknownTID:  prometheus.NewDesc("tftpgw_unknown_tid_packets_total", "Packets that reached a session's port from another transfer ID than its client's (those answered are in tftpgw_errors_sent_total{code=\"5\"}).", nil, nil),
		descWRQ:         prometheus.NewDesc("tftpgw_write_requests_total", "Write requests, refused with ERROR 2.", nil, nil),
		descDuplicates:  prometheus.NewDesc("tftpgw_duplicate_requests_total", "Read requests ignored because the same session was running.", nil, nil),
		descActive:      prometheus.NewDesc("tftpgw_active_sessions", "TFTP sessions running now.", nil, nil),
		descBusy:        prometheus.NewDesc("tftpgw_busy_refusals_total", "Read requests refused with ERROR 0 \"server busy\" (over a limit).", nil, nil),
		descBroadcasts:  prometheus.NewDesc("tftpgw_ignored_broadcasts_total", "Requests sent to a broadcast or multicast address, ignored.", nil, nil),
		descIntegrity:   prometheus.NewDesc("tftpgw_integrity_failures_total", "Sessions ended because their content's bytes did not match its SHA-256 digest.", nil, nil),
	}
	m.last.Time = time.Now()
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		(*serverCollector)(m),
		m.duplicateAcks, m.eventsDropped, m.eventsDelivered, m.sessionDuration, m.firstData,
		m.headerLatency, m.backendErrors, m.grpc,
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
	m.duplicateAcks.Add(float64(max(s.DuplicateAcks, 0)))
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
func (m *Metrics) addDropped(n int) { m.eventsDropped.Add(float64(n)) }

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
	m.backendErrors.WithLabelValues(c.String()).Inc()
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
// TFTP session ended first, which is not the backend's fault).
func (m *Metrics) callEnded(ctx context.Context, err error) {
	if err == nil || errors.Is(err, io.EOF) || ctx.Err() != nil {
		return
	}
	m.backendFailed(status.Code(err))
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

// serverCollector exposes the server-wide counters at scrape time.
type serverCollector Metrics

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.descSessions, c.descBytes, c.descPackets,
		c.descRetransmits, c.descErrors, c.descMalformed, c.descUnknownTID,
		c.descWRQ, c.descDuplicates, c.descActive, c.descBusy, c.descBroadcasts, c.descIntegrity} {
		ch <- d
	}
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	src, s := c.source, c.last
	c.mu.Unlock()
	if src != nil {
		s = src()
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for o := gateway.OutcomeOK; o <= gateway.OutcomeTimeout; o++ { // every outcome has a series
		counter(c.descSessions, s.Sessions[o], o.String())
	}
	counter(c.descBytes, s.BytesSent)
	counter(c.descPackets, s.PacketsSent)
	counter(c.descRetransmits, s.Retransmits)
	for code, n := range s.ErrorsSent {
		counter(c.descErrors, n, strconv.Itoa(int(code)))
	}
	counter(c.descMalformed, s.MalformedPackets)
	counter(c.descUnknownTID, s.UnknownTIDPackets)
	counter(c.descWRQ, s.WriteRequests)
	counter(c.descDuplicates, s.DuplicateRequests)
	counter(c.descBusy, s.BusyRefusals)
	counter(c.descBroadcasts, s.IgnoredBroadcasts)
	counter(c.descIntegrity, s.IntegrityFailures)
	ch <- prometheus.MustNewConstMetric(c.descActive, prometheus.GaugeValue, float64(s.ActiveSessions))
}

func cloneServerStats(s gateway.ServerStats) gateway.ServerStats {
	if s.ErrorsSent != nil {
		m := make(map[gateway.ErrorCode]int64, len(s.ErrorsSent))
		for k, v := range s.ErrorsSent {
			m[k] = v
		}
		s.ErrorsSent = m
	}
	return s
}
