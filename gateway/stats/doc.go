// Package stats publishes the statistics of a tftpgw edge ([gateway.Server])
// to a StatsSink over gRPC and exposes them to Prometheus.
//
// A [Publisher] sends one SessionStats event per finished session and one
// ServerStats event per report to a sink (tftpgw.v1.StatsSink/Publish), in
// batches that the sink acknowledges; it never blocks the TFTP path, and
// counts every event it could not deliver. [Metrics] is the edge's Prometheus instrumentation,
// including the interceptors for its gRPC content backends, and
// [HTTPServer] serves it with /healthz and /readyz. Wire them to a server
// by chaining their methods into [gateway.Server.SessionStatsFunc] and
// [gateway.Server.ServerStatsFunc]:
//
//	m := stats.NewMetrics()
//	m.SetSource(srv.Stats)
//	p, err := stats.NewPublisher(stats.PublisherConfig{Target: sink, EdgeID: id, Metrics: m})
//	srv.SessionStatsFunc = func(s gateway.SessionStats) { m.ObserveSession(s); p.SessionStats(s) }
//	srv.ServerStatsFunc = func(s gateway.ServerStats) { m.ObserveServer(s); p.ServerStats(s) }
//
// Package [github.com/tftpgw/tftpgw/gateway/stats/collector] is a
// reference StatsSink.
package stats
