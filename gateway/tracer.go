package gateway

import (
	"context"
	"fmt"
)

// A SessionTracer follows every session from its start to its end, to
// trace it (package tracing makes each session an OpenTelemetry span) or
// to instrument it otherwise. It sees a session only through its context
// and its [SessionStats], so that sessions of any protocol can be traced
// the same way.
//
// Both methods run on the session's goroutine, for every session (reads
// and uploads, including sessions refused with an ERROR), and must not
// block. A panic in either is logged, never fatal.
type SessionTracer interface {
	// StartSession is called when a session starts, before its path is
	// normalised and a handler called, with the session's context and its
	// stats so far: SessionID, RemoteAddr, LocalAddr, Write, RawPath, Mode,
	// RequestedOptions and Start are set. It returns the context the
	// session runs with, derived from ctx with the context package's
	// functions (context.WithValue, as OpenTelemetry's do), so that it is
	// cancelled when ctx is, at once: the handler gets it (and passes it
	// on, to a backend call for one), and the session's log line is
	// written with it, so that a slog.Handler can add what it carries.
	//
	// It may shorten st.RawPath to remove a suffix that is not part of the
	// path (a trace context appended to the filename): the session then
	// serves, logs and reports the path it leaves.
	StartSession(ctx context.Context, st *SessionStats) context.Context

	// EndSession is called once when the session has ended, with the
	// context StartSession returned and the session's final stats, after
	// its log line was written and before Server.SessionStatsFunc.
	EndSession(ctx context.Context, st *SessionStats)
}

// traceStart calls the tracer's StartSession, if the server has a tracer,
// and returns the session's context; st.RawPath and req.RawPath follow the
// RawPath it leaves. The tracer gets a copy of st: st stays on the
// session's stack when there is no tracer (a session costs no allocation
// more than without the seam). A panic there leaves the session untraced.
func traceStart(ctx context.Context, c *config, req *Request, st *SessionStats) context.Context {
	if c.tracer == nil {
		return ctx
	}
	cp := new(SessionStats)
	*cp = *st
	sctx, ok := startTracer(ctx, c, cp)
	if !ok {
		return ctx
	}
	st.RawPath, req.RawPath = cp.RawPath, cp.RawPath
	return sctx
}

// startTracer calls StartSession; ok is false if it panicked (logged).
func startTracer(ctx context.Context, c *config, st *SessionStats) (sctx context.Context, ok bool) {
	defer func() {
		if v := recover(); v != nil {
			c.logger.Error("SessionTracer panic on start", "session", st.SessionID, "panic", fmt.Sprint(v))
			sctx, ok = ctx, false
		}
	}()
	return c.tracer.StartSession(ctx, st), true
}

// traceEnd calls the tracer's EndSession with a copy of st, if the server
// has a tracer; a panic there is logged.
func traceEnd(ctx context.Context, c *config, st *SessionStats) {
	if c.tracer == nil {
		return
	}
	cp := new(SessionStats)
	*cp = *st
	defer func() {
		if v := recover(); v != nil {
			c.logger.Error("SessionTracer panic on end", "session", cp.SessionID, "panic", fmt.Sprint(v))
		}
	}()
	c.tracer.EndSession(ctx, cp)
}
