package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/cache"
)

// wrapCache returns h behind the edge cache configured by -cache-size and
// -cache-max-age, and sets e.cache, or returns h itself when -cache-size
// is 0. The cache's counters are exported as tftpgw_cache_* metrics with
// -metrics.
func (e *edge) wrapCache(h gateway.Handler) gateway.Handler {
	size, maxAge := int64(e.opts.Cache.Size), e.opts.Cache.MaxAge
	if size <= 0 {
		e.logger.Info("edge cache off")
		return h
	}
	c := &cache.Handler{
		Next:          h,
		MaxBytes:      size,
		DefaultMaxAge: maxAge,
		Logger:        e.logger.With("component", "cache"),
	}
	if err := e.metrics.Registry().Register(cacheCollector{c}); err != nil {
		e.logger.Warn("cache metrics not registered", "err", err)
	}
	e.logger.Info("edge cache on", "max_bytes", size, "max_entry_bytes", size/4, "max_age", maxAge)
	e.cache = c
	return c
}

// cacheCollector exports a cache's Stats to Prometheus at scrape time.
type cacheCollector struct{ c *cache.Handler }

var (
	descCacheRequests = prometheus.NewDesc("tftpgw_cache_requests_total",
		"Read requests seen by the edge cache, by result: hit (complete entry), join (fetch in progress), miss (started a fetch), pass (not cacheable, too large or no room).",
		[]string{"result"}, nil)
	descCacheRevalidations = prometheus.NewDesc("tftpgw_cache_revalidations_total",
		"Hits and joins that asked the source and found the cached etag.", nil, nil)
	descCacheFetchErrors = prometheus.NewDesc("tftpgw_cache_fetch_errors_total",
		"Fetches into the cache that failed; their sessions got the error.", nil, nil)
	descCacheEvictions = prometheus.NewDesc("tftpgw_cache_evictions_total",
		"Entries evicted to make room.", nil, nil)
	descCacheFetched = prometheus.NewDesc("tftpgw_cache_fetched_bytes_total",
		"Bytes read from the source into the cache.", nil, nil)
	descCacheServed = prometheus.NewDesc("tftpgw_cache_served_bytes_total",
		"Bytes read by sessions from the cache.", nil, nil)
	descCacheBytes = prometheus.NewDesc("tftpgw_cache_bytes",
		"Memory held by the cache now, entries being fetched and buffers still read included.", nil, nil)
	descCacheMaxBytes = prometheus.NewDesc("tftpgw_cache_max_bytes",
		"The cache's memory bound (-cache-size).", nil, nil)
	descCacheEntries = prometheus.NewDesc("tftpgw_cache_entries",
		"Entries in the cache now.", nil, nil)
)

func (cc cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCacheRequests, descCacheRevalidations, descCacheFetchErrors,
		descCacheEvictions, descCacheFetched, descCacheServed, descCacheBytes, descCacheMaxBytes, descCacheEntries} {
		ch <- d
	}
}

func (cc cacheCollector) Collect(ch chan<- prometheus.Metric) {
	s := cc.c.Stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter(descCacheRequests, s.Hits, "hit")
	counter(descCacheRequests, s.Joins, "join")
	counter(descCacheRequests, s.Misses, "miss")
	counter(descCacheRequests, s.Passes, "pass")
	counter(descCacheRevalidations, s.Revalidations)
	counter(descCacheFetchErrors, s.FetchErrors)
	counter(descCacheEvictions, s.Evictions)
	counter(descCacheFetched, s.BytesFetched)
	counter(descCacheServed, s.BytesServed)
	gauge(descCacheBytes, s.Bytes)
	gauge(descCacheMaxBytes, cc.c.MaxBytes)
	gauge(descCacheEntries, int64(s.Entries))
}
