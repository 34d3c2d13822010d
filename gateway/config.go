package gateway

import (
	"log/slog"
	"time"

	"github.com/tftpgw/tftpgw/gateway/internal/wire"
)

// config is a Server's settings with defaults applied and values clamped,
// resolved once when serving starts.
type config struct {
	handler       Handler
	timeout       time.Duration
	retries       int
	maxBlockSize  int
	maxWindowSize int
	logger        *slog.Logger
	sessionStats  func(SessionStats)
	serverStats   func(ServerStats)
	statsInterval time.Duration
}

func (s *Server) resolve() *config {
	c := &config{
		handler:       s.Handler,
		timeout:       s.Timeout,
		retries:       s.Retries,
		maxBlockSize:  s.MaxBlockSize,
		maxWindowSize: s.MaxWindowSize,
		logger:        s.Logger,
		sessionStats:  s.SessionStatsFunc,
		serverStats:   s.ServerStatsFunc,
		statsInterval: s.StatsInterval,
	}
	if c.handler == nil {
		c.handler = HandlerFunc(notFound)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	switch {
	case c.retries == 0:
		c.retries = DefaultRetries
	case c.retries < 0:
		c.retries = 0
	}
	if c.maxBlockSize <= 0 {
		c.maxBlockSize = DefaultMaxBlockSize
	}
	c.maxBlockSize = max(wire.MinBlockSize, min(c.maxBlockSize, wire.MaxBlockSize))
	if c.maxWindowSize <= 0 {
		c.maxWindowSize = DefaultMaxWindowSize
	}
	c.maxWindowSize = min(c.maxWindowSize, 65535)
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.statsInterval <= 0 {
		c.statsInterval = DefaultStatsInterval
	}
	return c
}
