package cache

import "github.com/prometheus/client_golang/prometheus"

// Collector returns a Prometheus collector of h's counters, read from
// [Handler.Stats] at scrape time: tftpgw_cache_requests_total{result}
// (hit, join, miss, pass), tftpgw_cache_revalidations_total,
// tftpgw_cache_fetch_errors_total, tftpgw_cache_evictions_total,
// tftpgw_cache_fetched_bytes_total, tftpgw_cache_served_bytes_total and
// the gauges tftpgw_cache_bytes, tftpgw_cache_entries and
// tftpgw_cache_max_bytes. Register it, once per Handler, in the registry
// that serves the edge's metrics:
//
//	metrics.Registry().MustRegister(h.Collector())
func (h *Handler) Collector() prometheus.Collector { return collector{h} }

// A cacheMetric is one series of a Handler's collector.
type cacheMetric struct {
	name, help string
	kind       prometheus.ValueType
	result     string // the value of the result label, for the requests
	field      string // what read returns: a field of Stats, or MaxBytes
	read       func(*Handler, *Stats) int64
}

const requestsHelp = "Read requests seen by the edge cache, by result: hit (complete entry), join (fetch in progress), miss (started a fetch), pass (not cacheable, too large or no room)."

// cacheMetrics are the series of a Handler's collector. Names and labels
// are a public contract: never rename one.
var cacheMetrics = []cacheMetric{
	requests("hit", "Hits", func(s *Stats) int64 { return s.Hits }),
	requests("join", "Joins", func(s *Stats) int64 { return s.Joins }),
	requests("miss", "Misses", func(s *Stats) int64 { return s.Misses }),
	requests("pass", "Passes", func(s *Stats) int64 { return s.Passes }),
	stat("tftpgw_cache_revalidations_total", "Hits and joins that asked the source and found the cached etag.",
		prometheus.CounterValue, "Revalidations", func(s *Stats) int64 { return s.Revalidations }),
	stat("tftpgw_cache_fetch_errors_total", "Fetches into the cache that failed; their sessions got the error.",
		prometheus.CounterValue, "FetchErrors", func(s *Stats) int64 { return s.FetchErrors }),
	stat("tftpgw_cache_evictions_total", "Entries evicted to make room.",
		prometheus.CounterValue, "Evictions", func(s *Stats) int64 { return s.Evictions }),
	stat("tftpgw_cache_fetched_bytes_total", "Bytes read from the source into the cache.",
		prometheus.CounterValue, "BytesFetched", func(s *Stats) int64 { return s.BytesFetched }),
	stat("tftpgw_cache_served_bytes_total", "Bytes read by sessions from the cache.",
		prometheus.CounterValue, "BytesServed", func(s *Stats) int64 { return s.BytesServed }),
	stat("tftpgw_cache_bytes", "Memory held by the cache now, entries being fetched and buffers still read included.",
		prometheus.GaugeValue, "Bytes", func(s *Stats) int64 { return s.Bytes }),
	stat("tftpgw_cache_entries", "Entries in the cache now.",
		prometheus.GaugeValue, "Entries", func(s *Stats) int64 { return int64(s.Entries) }),
	{
		name: "tftpgw_cache_max_bytes", help: "The cache's memory bound (tftpgw -cache-size).",
		kind: prometheus.GaugeValue, field: "MaxBytes",
		read: func(h *Handler, _ *Stats) int64 { return max(h.maxBytes(), 0) },
	},
}

// stat is a series read from a field of Stats.
func stat(name, help string, kind prometheus.ValueType, field string, read func(*Stats) int64) cacheMetric {
	return cacheMetric{
		name: name, help: help, kind: kind, field: field,
		read: func(_ *Handler, s *Stats) int64 { return read(s) },
	}
}

// requests is the series of tftpgw_cache_requests_total with a result.
func requests(result, field string, read func(*Stats) int64) cacheMetric {
	m := stat("tftpgw_cache_requests_total", requestsHelp, prometheus.CounterValue, field, read)
	m.result = result
	return m
}

// cacheDescs are the descriptions of cacheMetrics, by row; the requests
// share one.
var cacheDescs = func() []*prometheus.Desc {
	d := make([]*prometheus.Desc, len(cacheMetrics))
	for i, m := range cacheMetrics {
		switch {
		case i > 0 && m.name == cacheMetrics[i-1].name:
			d[i] = d[i-1]
		case m.result != "":
			d[i] = prometheus.NewDesc(m.name, m.help, []string{"result"}, nil)
		default:
			d[i] = prometheus.NewDesc(m.name, m.help, nil, nil)
		}
	}
	return d
}()

// collector is the prometheus.Collector of a Handler.
type collector struct{ h *Handler }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for i, d := range cacheDescs {
		if i == 0 || d != cacheDescs[i-1] {
			ch <- d
		}
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.h.Stats()
	for i, m := range cacheMetrics {
		var labels []string
		if m.result != "" {
			labels = []string{m.result}
		}
		ch <- prometheus.MustNewConstMetric(cacheDescs[i], m.kind, float64(m.read(c.h, &s)), labels...)
	}
}
