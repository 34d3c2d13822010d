package main

import (
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
		MaxBytes:      size,
		DefaultMaxAge: maxAge,
		Logger:        e.logger.With("component", "cache"),
	}
	if err := e.metrics.Registry().Register(c.Collector()); err != nil {
		e.logger.Warn("cache metrics not registered", "err", err)
	}
	e.logger.Info("edge cache on", "max_bytes", size, "max_entry_bytes", size/4, "max_age", maxAge)
	e.cache = c
	return gateway.Chain(h, c.Middleware())
}
