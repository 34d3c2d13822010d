package gateway

import (
	"context"
	"log/slog"
	"net/netip"
	"time"
)

// An Arrival is a request as it reaches a listening socket, before the
// server spends anything on it: no session slot, socket or goroutine yet.
// It is what [Server.Admit] decides about.
type Arrival struct {
	Client  netip.AddrPort // the client's address and port (its transfer ID)
	Local   netip.AddrPort // the address the request was sent to, and the port
	Write   bool           // a write request (WRQ); else a read request
	RawPath string         // the filename as the client sent it
	Mode    string         // the transfer mode, lower-cased
	At      time.Time      // when the request reached the socket
	// Protocol is TFTP, or HTTP for a request to [Server.ServeHTTP]:
	// refusing it answers with the HTTP status of the Error (see
	// ServeHTTP), dropping it closes the connection without an answer.
	Protocol Protocol
}

// AdmitAction is what an admission hook does with a request.
type AdmitAction uint8

const (
	// AdmitAccept lets the request on, to the built-in limits and then a
	// session. It is the zero Admission's action.
	AdmitAccept AdmitAction = iota
	// AdmitRefuse answers the request with an ERROR from the listening
	// port (Admission.Error; ERROR 2 "access violation" if nil).
	AdmitRefuse
	// AdmitDrop ignores the request: nothing is sent, it is only counted.
	AdmitDrop
)

// Admission is an admission hook's decision about a request.
type Admission struct {
	Action AdmitAction
	// Error is what a refused request gets. It is sent from the listening
	// port, so its message is cut to the request's length (see
	// [Server.Admit]).
	Error *Error
	// Limits, if not nil, are the limits an accepted request meets and
	// the options its session may grant, in place of the server's (per
	// client network policy, or limits that change while the server
	// runs). The server only reads them; a hook may return the same
	// Limits for many requests, and must not change them afterwards.
	Limits *Limits
}

// Limits are what an admission hook can set for one request (see
// [Admission]). A zero field keeps the [Server]'s value.
type Limits struct {
	// MaxSessions, MaxSessionsPerClient and ClientRequestRate replace the
	// Server's fields of the same names for this request: the request is
	// refused with "server busy" if running it would go over them.
	// Negative means no limit. A client's rate limiter takes the rate of
	// its latest request.
	MaxSessions          int
	MaxSessionsPerClient int
	ClientRequestRate    float64

	// MaxBlockSize and MaxWindowSize replace the Server's caps on the
	// blksize and windowsize options for this session.
	MaxBlockSize  int
	MaxWindowSize int

	// RefuseOptions are options left out of this session's OACK, on top of
	// Server.RefuseOptions: "blksize", "timeout", "tsize" or "windowsize".
	RefuseOptions []string
}

// Validate reports values of l that the server would not use: those of
// [Server.Validate], and option names that cannot be refused.
func (l *Limits) Validate() error {
	return (&Server{
		MaxBlockSize:      l.MaxBlockSize,
		MaxWindowSize:     l.MaxWindowSize,
		ClientRequestRate: l.ClientRequestRate,
		RefuseOptions:     l.RefuseOptions,
	}).Validate()
}

// errPolicy is what a request refused without a chosen error gets.
var errPolicy = &Error{Code: ErrAccessViolation, Message: "access violation"}

// admit runs the server's admission hook, if any, and acts on a refusal or
// a drop: it reports whether the request goes on. A panic of the hook
// refuses the request and is logged.
// It returns the limits of the request: the hook's, or nil for the
// server's.
func (s *Server) admit(c *config, a Arrival, answer func(*Error)) (l *Limits, ok bool) {
	if c.admit == nil {
		return nil, true
	}
	defer func() {
		if v := recover(); v != nil {
			c.logger.Error("admission hook panic", "client", a.Client, "panic", v)
			s.state.policyRefusals.Add(1)
			answer(errPolicy)
			l, ok = nil, false
		}
	}()
	d := c.admit(a)
	switch d.Action {
	case AdmitAccept:
		return d.Limits, true
	case AdmitDrop:
		s.state.policyDrops.Add(1)
		logPolicy(c.logger, a, "dropped", nil)
		return nil, false
	default:
		e := d.Error
		if e == nil {
			e = errPolicy
		}
		s.state.policyRefusals.Add(1)
		logPolicy(c.logger, a, "refused", e)
		answer(e)
		return nil, false
	}
}

// logPolicy logs, at debug level, a request the admission hook refused or
// dropped (to follow one client: a flood of them is counted, never
// logged at the default level).
func logPolicy(l *slog.Logger, a Arrival, what string, e *Error) {
	if !l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{slog.String("client", a.Client.String()), slog.String("raw_path", a.RawPath), slog.Bool("write", a.Write)}
	if e != nil {
		attrs = append(attrs, slog.Int("error_code", int(e.Code)), slog.String("error", e.Message))
	}
	l.LogAttrs(context.Background(), slog.LevelDebug, "request "+what+" by policy", attrs...)
}
