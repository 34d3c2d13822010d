package stats

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tftpgw/tftpgw/gateway"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// A counter is one row of the counters table: a field of
// tftpgwv1.Counters, where the edge reads its value, and the Prometheus
// metric that shows it at the edge (tftpgw_*) and at a collector, per edge
// (tftpgw_collector_edge_*). Every use of the server-wide counters is a
// loop over the table: the conversion to protobuf ([ServerReports]), the
// edge's metrics ([Metrics]) and the collector's ([CollectorCounterMetrics]).
// The deltas of a report need no row (see subCounters).
//
// Metric names, label names and field numbers are a public contract:
// never rename or renumber one.
type counter struct {
	// field is the name of the tftpgwv1.Counters field: a uint64, or a
	// map whose values are uint64.
	field protoreflect.Name

	// edge and collector are the names of the metrics. Rows that share a
	// metric (the sessions by outcome) tell their series apart by label,
	// with this row's value; a map row's keys are the values of label.
	edge, collector string
	label, value    string

	// help says what is counted. It is the metrics' help, and the comment
	// of the field in stats.proto starts with it (a test checks). Rows
	// sharing a metric share it.
	help string

	// Where the edge reads the value; exactly one is set. server reads it
	// from the gateway's ServerStats, extra from the counters this package
	// keeps, and fill sets a map field from either.
	server func(*gateway.ServerStats) int64
	extra  func(*Extra) uint64
	fill   func(*tftpgwv1.Counters, *gateway.ServerStats, *Extra)

	// keys are the label values a map row shows as they are; the series of
	// other keys are summed under "other", so that no sender can make the
	// series grow without bound.
	keys []string
}

// counters is the counters table. To add a counter, add its field to
// message Counters in proto/tftpgw/v1/stats.proto, with a comment that
// starts with the row's help, run make proto, and add its row here. A
// counter the gateway keeps is read from its field of
// [gateway.ServerStats]; one this package keeps, from [Extra]. The tests
// name a Counters field without a row (TestCountersTable,
// TestCountersEverywhere) and a ServerStats or Extra counter that reaches
// no field (TestServerStatsReachCounters).
var counters = []counter{
	sessions("sessions_ok", gateway.OutcomeOK),
	sessions("sessions_error", gateway.OutcomeError),
	sessions("sessions_probe", gateway.OutcomeProbe),
	sessions("sessions_aborted", gateway.OutcomeAborted),
	sessions("sessions_timeout", gateway.OutcomeTimeout),
	{
		field:     "bytes_sent",
		edge:      "tftpgw_bytes_sent_total",
		collector: "tftpgw_collector_edge_bytes_sent_total",
		help:      "Payload bytes of all DATA packets sent, retransmissions included.",
		server:    func(s *gateway.ServerStats) int64 { return s.BytesSent },
	},
	{
		field:     "packets_sent",
		edge:      "tftpgw_packets_sent_total",
		collector: "tftpgw_collector_edge_packets_sent_total",
		help:      "Packets sent by sessions: OACK, DATA and ERROR, retransmissions included.",
		server:    func(s *gateway.ServerStats) int64 { return s.PacketsSent },
	},
	{
		field:     "retransmits",
		edge:      "tftpgw_retransmits_total",
		collector: "tftpgw_collector_edge_retransmits_total",
		help:      "Packets sent again: after a timeout, when a window restarts after a gap, or at the client's own timer (the client acknowledged less than the window sent).",
		server:    func(s *gateway.ServerStats) int64 { return s.Retransmits },
	},
	{
		field:     "duplicate_acks",
		edge:      "tftpgw_duplicate_acks_total",
		collector: "tftpgw_collector_edge_duplicate_acks_total",
		help:      "ACKs that acknowledged nothing new, summed over finished sessions.",
		server:    func(s *gateway.ServerStats) int64 { return s.DuplicateAcks },
	},
	{
		field:     "errors_sent",
		edge:      "tftpgw_errors_sent_total",
		collector: "tftpgw_collector_edge_errors_sent_total",
		label:     "code",
		help:      "ERROR packets sent, by TFTP error code, those sent outside a session included.",
		fill: func(c *tftpgwv1.Counters, s *gateway.ServerStats, _ *Extra) {
			for code, n := range s.ErrorsSent {
				if n > 0 {
					if c.ErrorsSent == nil {
						c.ErrorsSent = make(map[uint32]uint64, len(s.ErrorsSent))
					}
					c.ErrorsSent[uint32(code)] = uint64(n)
				}
			}
		},
		keys: tftpCodes(),
	},
	{
		field:     "malformed_packets",
		edge:      "tftpgw_malformed_packets_total",
		collector: "tftpgw_collector_edge_malformed_packets_total",
		help:      "Packets on the listening port that were not a valid request: dropped, or answered with ERROR 4 when only the transfer mode was unknown.",
		server:    func(s *gateway.ServerStats) int64 { return s.MalformedPackets },
	},
	{
		field:     "unknown_tid_packets",
		edge:      "tftpgw_unknown_tid_packets_total",
		collector: "tftpgw_collector_edge_unknown_tid_packets_total",
		help:      "Packets that reached a session's port from another transfer ID than its client's; those answered with ERROR 5 are also counted as errors sent.",
		server:    func(s *gateway.ServerStats) int64 { return s.UnknownTIDPackets },
	},
	{
		field:     "write_requests_refused",
		edge:      "tftpgw_write_requests_total",
		collector: "tftpgw_collector_edge_write_requests_refused_total",
		help:      "Write requests refused with ERROR 2 because uploads are off (no -upload-allow) or the path is not allowed (-upload-allow); a network that a policy rule refuses uploads is counted in policy_refusals.",
		server:    func(s *gateway.ServerStats) int64 { return s.WriteRequests },
	},
	{
		field:     "duplicate_requests",
		edge:      "tftpgw_duplicate_requests_total",
		collector: "tftpgw_collector_edge_duplicate_requests_total",
		help:      "Read requests ignored as repeats of one whose session runs: same client address, port and file, arrived before the client acknowledged anything.",
		server:    func(s *gateway.ServerStats) int64 { return s.DuplicateRequests },
	},
	{
		field:     "backend_errors",
		edge:      "tftpgw_backend_errors_total",
		collector: "tftpgw_collector_edge_backend_errors_total",
		label:     "code",
		help:      "Content backend calls that failed, by gRPC status code; calls the edge cancelled itself (the session ended first) are not counted.",
		fill: func(c *tftpgwv1.Counters, _ *gateway.ServerStats, x *Extra) {
			for code, n := range x.BackendErrors {
				if n > 0 {
					if c.BackendErrors == nil {
						c.BackendErrors = make(map[string]uint64, len(x.BackendErrors))
					}
					c.BackendErrors[code] = n
				}
			}
		},
		keys: grpcCodes(),
	},
	{
		field:     "stats_events_dropped",
		edge:      "tftpgw_stats_events_dropped_total",
		collector: "tftpgw_collector_edge_stats_events_dropped_total",
		help:      "Stats events the edge dropped instead of delivering them to its sink: its queue was full, a report sent without acknowledgement was replaced by a newer one (one never sent is not dropped), an event was sent in a few batches without acknowledgement, or it was still queued when the edge stopped.",
		extra:     func(x *Extra) uint64 { return x.EventsDropped },
	},
	{
		field:     "busy_refusals",
		edge:      "tftpgw_busy_refusals_total",
		collector: "tftpgw_collector_edge_busy_refusals_total",
		help:      "Read requests refused with ERROR 0 \"server busy\": over a session, per-client, rate or window-memory limit, or no free port in the port range.",
		server:    func(s *gateway.ServerStats) int64 { return s.BusyRefusals },
	},
	{
		field:     "ignored_broadcasts",
		edge:      "tftpgw_ignored_broadcasts_total",
		collector: "tftpgw_collector_edge_ignored_broadcasts_total",
		help:      "Requests sent to a broadcast or multicast address, ignored (RFC 1123 4.2.3.5).",
		server:    func(s *gateway.ServerStats) int64 { return s.IgnoredBroadcasts },
	},
	{
		field:     "integrity_failures",
		edge:      "tftpgw_integrity_failures_total",
		collector: "tftpgw_collector_edge_integrity_failures_total",
		help:      "Sessions ended with ERROR 0 because their content's bytes did not match the SHA-256 digest of its header.",
		server:    func(s *gateway.ServerStats) int64 { return s.IntegrityFailures },
	},
	{
		field:     "policy_refusals",
		edge:      "tftpgw_policy_refusals_total",
		collector: "tftpgw_collector_edge_policy_refusals_total",
		help:      "Requests the edge's admission policy refused with an ERROR, before any session (also counted in errors_sent).",
		server:    func(s *gateway.ServerStats) int64 { return s.PolicyRefusals },
	},
	{
		field:     "policy_drops",
		edge:      "tftpgw_policy_drops_total",
		collector: "tftpgw_collector_edge_policy_drops_total",
		help:      "Requests the edge's admission policy dropped without an answer.",
		server:    func(s *gateway.ServerStats) int64 { return s.PolicyDrops },
	},
	{
		field:     "ports_exhausted",
		edge:      "tftpgw_ports_exhausted_total",
		collector: "tftpgw_collector_edge_ports_exhausted_total",
		help:      "Read requests refused with ERROR 0 \"server busy\" because no port of the edge's port range (tftpgw -port-range) was free for the session's socket, or none could be bound (other programs held them).",
		server:    func(s *gateway.ServerStats) int64 { return s.PortsExhausted },
	},
	uploads("uploads_ok", gateway.OutcomeOK),
	uploads("uploads_error", gateway.OutcomeError),
	uploads("uploads_aborted", gateway.OutcomeAborted),
	uploads("uploads_timeout", gateway.OutcomeTimeout),
	{
		field:     "bytes_received",
		edge:      "tftpgw_bytes_received_total",
		collector: "tftpgw_collector_edge_bytes_received_total",
		help:      "Payload bytes of uploads received in order, each block once.",
		server:    func(s *gateway.ServerStats) int64 { return s.BytesReceived },
	},
	{
		field:     "http_requests",
		edge:      "tftpgw_http_requests_total",
		collector: "tftpgw_collector_edge_http_requests_total",
		label:     "status",
		help:      "Finished HTTP requests (tftpgw -http), by status code; not in the TFTP session counters.",
		fill: func(c *tftpgwv1.Counters, s *gateway.ServerStats, _ *Extra) {
			for code, n := range s.HTTPRequests {
				if n > 0 && code >= 0 {
					if c.HttpRequests == nil {
						c.HttpRequests = make(map[uint32]uint64, len(s.HTTPRequests))
					}
					c.HttpRequests[uint32(code)] = uint64(n)
				}
			}
		},
		keys: []string{"200", "206", "304", "400", "403", "404", "405", "412", "416", "500", "503"},
	},
	{
		field:     "http_bytes_sent",
		edge:      "tftpgw_http_bytes_sent_total",
		collector: "tftpgw_collector_edge_http_bytes_sent_total",
		help:      "Body bytes of HTTP responses written.",
		server:    func(s *gateway.ServerStats) int64 { return s.HTTPBytesSent },
	},
}

// uploads is the row of the uploads with outcome o.
func uploads(field protoreflect.Name, o gateway.Outcome) counter {
	return counter{
		field:     field,
		edge:      "tftpgw_uploads_total",
		collector: "tftpgw_collector_edge_uploads_total",
		label:     "outcome",
		value:     o.String(),
		help:      "Finished uploads (write requests), by outcome; also counted in the sessions.",
		server:    func(s *gateway.ServerStats) int64 { return s.Uploads[o] },
	}
}

// sessions is the row of the sessions with outcome o.
func sessions(field protoreflect.Name, o gateway.Outcome) counter {
	return counter{
		field:     field,
		edge:      "tftpgw_sessions_total",
		collector: "tftpgw_collector_edge_sessions_total",
		label:     "outcome",
		value:     o.String(),
		help:      "Finished TFTP sessions, by outcome.",
		server:    func(s *gateway.ServerStats) int64 { return s.Sessions[o] },
	}
}

// tftpCodes are the TFTP error codes, "0" to "8".
func tftpCodes() []string {
	var r []string
	for c := range 9 {
		r = append(r, strconv.Itoa(c))
	}
	return r
}

// grpcCodes are the names of the gRPC status codes, as codes.Code.String
// writes them ("Unavailable", ...).
func grpcCodes() []string {
	var r []string
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		r = append(r, c.String())
	}
	return r
}

// otherKey is the label value under which a map row sums the keys it does
// not list.
const otherKey = "other"

// counterFields are the descriptors of counters' fields, in table order.
// Building it checks the table against the message: a row naming no
// field, or a field of a type the table cannot count, is a programming
// error that stops the program at start.
var counterFields = func() []protoreflect.FieldDescriptor {
	fields := (&tftpgwv1.Counters{}).ProtoReflect().Descriptor().Fields()
	fds := make([]protoreflect.FieldDescriptor, len(counters))
	for i, c := range counters {
		fd := fields.ByName(c.field)
		switch {
		case fd == nil:
			panic(fmt.Sprintf("stats: counters table: no field %q in tftpgw.v1.Counters", c.field))
		case fd.IsMap() && fd.MapValue().Kind() == protoreflect.Uint64Kind:
			if c.fill == nil || c.label == "" {
				panic(fmt.Sprintf("stats: counters table: map %q needs fill and label", c.field))
			}
		case fd.Kind() == protoreflect.Uint64Kind && fd.Cardinality() != protoreflect.Repeated:
			if (c.server == nil) == (c.extra == nil) {
				panic(fmt.Sprintf("stats: counters table: %q needs one of server and extra", c.field))
			}
		default:
			panic(fmt.Sprintf("stats: counters table: %q is neither a uint64 nor a map of them", c.field))
		}
		fds[i] = fd
	}
	return fds
}()

// countersProto converts the gateway's counters and this package's to a
// Counters message, row by row.
func countersProto(s gateway.ServerStats, x Extra) *tftpgwv1.Counters {
	c := &tftpgwv1.Counters{}
	m := c.ProtoReflect()
	for i, r := range counters {
		switch {
		case r.fill != nil:
			r.fill(c, &s, &x)
		case r.server != nil:
			m.Set(counterFields[i], protoreflect.ValueOfUint64(count(r.server(&s))))
		default:
			m.Set(counterFields[i], protoreflect.ValueOfUint64(r.extra(&x)))
		}
	}
	return c
}

// subCounters returns cur - prev field by field, for every field of the
// message, with or without a row. A counter that went down (the edge
// restarted, which a fresh ServerReports would not see, or a source that
// reset) counts from zero, as Prometheus treats a reset.
func subCounters(cur, prev *tftpgwv1.Counters) *tftpgwv1.Counters {
	if prev == nil {
		prev = &tftpgwv1.Counters{}
	}
	d := &tftpgwv1.Counters{}
	cm, pm, dm := cur.ProtoReflect(), prev.ProtoReflect(), d.ProtoReflect()
	cm.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if !fd.IsMap() {
			if n := sub(v.Uint(), pm.Get(fd).Uint()); n > 0 {
				dm.Set(fd, protoreflect.ValueOfUint64(n))
			}
			return true
		}
		pmap := pm.Get(fd).Map()
		v.Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			var was uint64
			if pv := pmap.Get(k); pv.IsValid() {
				was = pv.Uint()
			}
			if n := sub(v.Uint(), was); n > 0 {
				dm.Mutable(fd).Map().Set(k, protoreflect.ValueOfUint64(n))
			}
			return true
		})
		return true
	})
	return d
}

// sub is cur - prev, or cur if the counter went down.
func sub(cur, prev uint64) uint64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// CounterMetrics shows the fields of tftpgwv1.Counters messages as
// Prometheus counters, named and described by the counters table: one
// series per field, or per label value for the sessions by outcome and the
// maps by code. The map keys shown are fixed sets (TFTP error codes 0 to 8,
// the gRPC code names); the others are summed under "other", so that one
// message makes at most [CounterMetrics.Series] series. It is not a
// prometheus.Collector itself: the collector that owns it sends its
// descriptions from Describe and a message's metrics from Collect.
type CounterMetrics struct {
	descs []*prometheus.Desc // by row; rows sharing a metric share one
	keys  []map[string]bool  // by row: the keys a map row shows as they are
}

// newCounterMetrics builds the metrics named by name, with the variable
// labels labels before each row's own and help made from the row's.
func newCounterMetrics(name func(*counter) string, help func(string) string, labels ...string) *CounterMetrics {
	m := &CounterMetrics{descs: make([]*prometheus.Desc, len(counters)), keys: make([]map[string]bool, len(counters))}
	byName := make(map[string]*prometheus.Desc)
	for i := range counters {
		r := &counters[i]
		d := byName[name(r)]
		if d == nil {
			l := labels
			if r.label != "" {
				l = append(slices.Clip(labels), r.label)
			}
			d = prometheus.NewDesc(name(r), help(r.help), l, nil)
			byName[name(r)] = d
		}
		m.descs[i] = d
		if r.keys != nil {
			m.keys[i] = make(map[string]bool, len(r.keys))
			for _, k := range r.keys {
				m.keys[i][k] = true
			}
		}
	}
	return m
}

// edgeCounterMetrics returns the edge's metrics: tftpgw_*.
func edgeCounterMetrics() *CounterMetrics {
	return newCounterMetrics(func(r *counter) string { return r.edge }, func(h string) string { return h })
}

// CollectorCounterMetrics returns the metrics a stats sink shows for each
// edge, as tftp-collector does: tftpgw_collector_edge_*, with an "edge"
// label before the counter's own, read from the total of the edge's last
// report. Pass the edge ID as the label value to Collect.
func CollectorCounterMetrics() *CounterMetrics {
	return newCounterMetrics(func(r *counter) string { return r.collector },
		func(h string) string { return strings.TrimSuffix(h, ".") + " (the edge's last reported total)." },
		"edge")
}

// Describe sends the descriptions of the metrics, each once.
func (m *CounterMetrics) Describe(ch chan<- *prometheus.Desc) {
	sent := make(map[*prometheus.Desc]bool, len(m.descs))
	for _, d := range m.descs {
		if !sent[d] {
			sent[d] = true
			ch <- d
		}
	}
}

// Collect sends the series of c, with labelValues for the labels the
// metrics were made with (the edge ID for [CollectorCounterMetrics]).
// Every series of a scalar field is sent, zero or not; a map's series are
// those of its keys.
func (m *CounterMetrics) Collect(ch chan<- prometheus.Metric, c *tftpgwv1.Counters, labelValues ...string) {
	msg := c.ProtoReflect()
	send := func(d *prometheus.Desc, v uint64, label string) {
		lv := labelValues
		if label != "" {
			lv = append(slices.Clip(labelValues), label)
		}
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	for i, r := range counters {
		fd := counterFields[i]
		if !fd.IsMap() {
			send(m.descs[i], msg.Get(fd).Uint(), r.value)
			continue
		}
		sums := make(map[string]uint64)
		msg.Get(fd).Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			key := k.String()
			if !m.keys[i][key] {
				key = otherKey
			}
			sums[key] += v.Uint()
			return true
		})
		for key, n := range sums {
			send(m.descs[i], n, key)
		}
	}
}

// Series returns the most series Collect sends for one message: one per
// scalar field, and one per listed key plus "other" per map.
func (m *CounterMetrics) Series() int {
	n := 0
	for i := range counters {
		if counterFields[i].IsMap() {
			n += len(m.keys[i]) + 1
		} else {
			n++
		}
	}
	return n
}
