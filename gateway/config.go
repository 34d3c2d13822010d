package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/tftpgw/tftpgw/gateway/internal/session"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// maxWindowSize is the largest window granted whatever MaxWindowSize says.
const maxWindowSize = 32767

// config is a Server's settings with defaults applied and values clamped,
// resolved once when serving starts.
type config struct {
	handler       Handler
	writeHandler  WriteHandler // nil: uploads refused
	timeout       time.Duration
	retries       int
	maxBlockSize  int
	maxWindowSize int
	logger        *slog.Logger
	sessionStats  func(SessionStats)
	serverStats   func(ServerStats)
	statsInterval time.Duration
	httpTimeout   time.Duration
	tracer        SessionTracer // nil: none

	maxWindowMemory          int64 // <= 0: none
	maxWindowMemoryPerClient int64 // <= 0: none
	singlePort               bool
	portRange                PortRange // the zero value: any port (and always with singlePort)
	minTimeout               time.Duration

	admit func(Arrival) Admission

	limits  requestLimits  // the built-in limits, of a request without an admission's
	session session.Config // what sessions take of the above
}

// requestLimits are the built-in limits one request meets: the server's,
// or those of its admission (see [Limits]). Zero or less means none.
type requestLimits struct {
	maxSessions          int
	maxSessionsPerClient int
	clientRate           float64
}

// limitsFor returns the limits a request with the admission's limits l
// (nil: none) meets.
func (c *config) limitsFor(l *Limits) requestLimits {
	r := c.limits
	if l == nil {
		return r
	}
	if l.MaxSessions != 0 {
		r.maxSessions = max(l.MaxSessions, 0)
	}
	if l.MaxSessionsPerClient != 0 {
		r.maxSessionsPerClient = max(l.MaxSessionsPerClient, 0)
	}
	if l.ClientRequestRate != 0 {
		r.clientRate = max(l.ClientRequestRate, 0)
	}
	return r
}

// sessionConfig sets *dst to the session configuration of a request with
// the admission's limits l and returns it, or returns the server's if l
// changes nothing of it.
func (c *config) sessionConfig(l *Limits, dst *session.Config) *session.Config {
	if l == nil || l.MaxBlockSize == 0 && l.MaxWindowSize == 0 && len(l.RefuseOptions) == 0 {
		return &c.session
	}
	*dst = c.session
	if l.MaxBlockSize != 0 {
		dst.MaxBlockSize = max(wire.MinBlockSize, min(l.MaxBlockSize, wire.MaxBlockSize))
	}
	if l.MaxWindowSize != 0 {
		dst.MaxWindowSize = max(1, min(l.MaxWindowSize, maxWindowSize))
	}
	dst.Refuse |= refusedOptions(l.RefuseOptions)
	return dst
}

// refusedOptions is the set of the named options; names it does not know
// are left out (Validate reports them).
func refusedOptions(names []string) session.Options {
	var set session.Options
	for _, n := range names {
		set |= session.OptionNamed(strings.ToLower(n))
	}
	return set
}

// orDefault resolves a limit: zero means def, negative means none (0).
func orDefault[T int | int64 | float64](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

func (s *Server) resolve() *config {
	c := &config{
		handler:       s.Handler,
		writeHandler:  s.WriteHandler,
		timeout:       s.Timeout,
		retries:       s.Retries,
		maxBlockSize:  s.MaxBlockSize,
		maxWindowSize: s.MaxWindowSize,
		logger:        s.Logger,
		sessionStats:  s.SessionStatsFunc,
		serverStats:   s.ServerStatsFunc,
		statsInterval: s.StatsInterval,
		httpTimeout:   s.HTTPTimeout,
		tracer:        s.Tracer,

		limits: requestLimits{
			maxSessions:          orDefault(s.MaxSessions, DefaultMaxSessions),
			maxSessionsPerClient: orDefault(s.MaxSessionsPerClient, DefaultMaxSessionsPerClient),
			clientRate:           orDefault(s.ClientRequestRate, DefaultClientRequestRate),
		},
		maxWindowMemory:          orDefault(s.MaxWindowMemory, DefaultMaxWindowMemory),
		maxWindowMemoryPerClient: orDefault(s.MaxWindowMemoryPerClient, 0),
		singlePort:               s.SinglePort,
		admit:                    s.Admit,
		minTimeout:               s.MinTimeout,
	}
	if s.MaxWindowMemoryPerClient == 0 && c.maxWindowMemory > 0 {
		c.maxWindowMemoryPerClient = c.maxWindowMemory / 8
	}
	if c.minTimeout == 0 {
		c.minTimeout = DefaultMinTimeout
	}
	if r := s.PortRange; !r.IsZero() && !c.singlePort {
		if r.First > r.Last {
			r.First, r.Last = r.Last, r.First
		}
		c.portRange = PortRange{First: max(r.First, 1), Last: r.Last}
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
	// Block numbers are 16 bits: an ACK maps to one block of the window only
	// while the window is under half their range.
	c.maxWindowSize = min(c.maxWindowSize, maxWindowSize)
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.statsInterval <= 0 {
		c.statsInterval = DefaultStatsInterval
	}
	if c.httpTimeout <= 0 {
		c.httpTimeout = DefaultHTTPTimeout
	}
	c.session = session.Config{
		Refuse:        refusedOptions(s.RefuseOptions),
		Timeout:       c.timeout,
		MinTimeout:    c.minTimeout,
		Retries:       c.retries,
		MaxBlockSize:  c.maxBlockSize,
		MaxWindowSize: c.maxWindowSize,
		Logger:        c.logger,
	}
	return c
}

// Validate reports the fields of s that the server would not use as they
// are: a value out of its protocol range (MaxBlockSize outside 8..65464,
// MaxWindowSize outside 1..32767), a negative duration, a rate that is
// not a number, a PortRange that is inverted, starts at port 0, holds the
// port of Addr or comes with SinglePort. Zero values are valid (they mean
// the documented defaults), and so are negative limits (no limit).
// [Server.Serve] does not call it: it clamps such values instead, so a
// caller that must never run a configuration other than the one given (a
// command's flags, a config file) calls Validate first.
func (s *Server) Validate() error {
	var errs []error
	if v := s.MaxBlockSize; v != 0 && (v < wire.MinBlockSize || v > wire.MaxBlockSize) {
		errs = append(errs, fmt.Errorf("MaxBlockSize %d: want %d to %d (RFC 2348), or 0 for %d", v, wire.MinBlockSize, wire.MaxBlockSize, DefaultMaxBlockSize))
	}
	if v := s.MaxWindowSize; v != 0 && (v < 1 || v > maxWindowSize) {
		errs = append(errs, fmt.Errorf("MaxWindowSize %d: want 1 to %d (block numbers are 16 bits: an ACK names one block of a window only while the window is under half their range), or 0 for %d", v, maxWindowSize, DefaultMaxWindowSize))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Timeout", s.Timeout}, {"MinTimeout", s.MinTimeout}, {"StatsInterval", s.StatsInterval}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v: must be 0 (the default) or more", d.name, d.v))
		}
	}
	if v := s.ClientRequestRate; math.IsNaN(v) || math.IsInf(v, 0) {
		errs = append(errs, fmt.Errorf("ClientRequestRate %v: want a number", v))
	}
	for _, n := range s.RefuseOptions {
		if refusedOptions([]string{n}) == 0 {
			errs = append(errs, fmt.Errorf("RefuseOptions %q: want blksize, timeout, tsize or windowsize (other options are never granted)", n))
		}
	}
	if r := s.PortRange; !r.IsZero() {
		if err := r.check(); err != nil {
			errs = append(errs, fmt.Errorf("PortRange %d-%d: %w", r.First, r.Last, err))
		}
		if s.SinglePort {
			errs = append(errs, fmt.Errorf("PortRange %v with SinglePort: every reply then comes from the listening port, so a range for the sessions' ports has no use; set one or the other", r))
		}
		if p, ok := addrPort(s.Addr); ok && p != 0 && r.Contains(p) {
			errs = append(errs, fmt.Errorf("PortRange %v holds port %d of Addr %q, the listening port: no session could use it", r, p, s.Addr))
		}
	}
	return errors.Join(errs...)
}

// addrPort is the port of a listening address as Addr gives it (69 for
// ""); ok is false when it names none in digits (a service name).
func addrPort(addr string) (port uint16, ok bool) {
	if addr == "" {
		addr = DefaultAddr
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(p, 10, 16)
	return uint16(n), err == nil
}
