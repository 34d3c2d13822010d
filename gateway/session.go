package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"github.com/tftpgw/tftpgw/gateway/internal/session"
	"github.com/tftpgw/tftpgw/gateway/internal/udp"
	"github.com/tftpgw/tftpgw/gateway/internal/winmem"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// admitted is a request the listener accepted, handed to its session.
type admitted struct {
	key   sessionKey
	act   *activeSession
	req   wire.Request
	src   netip.AddrPort // the client
	local netip.AddrPort // where the request was sent
	mux   *udp.MuxConn   // single-port mode: the connection through the listening socket
	at    time.Time      // when the request arrived

	limits *Limits // the admission hook's; nil: the server's

	// port is the port of the port range reserved for the session's
	// socket, 0 without a range; the session puts it back when it ends.
	port uint16
	// l and reqLen are the listening socket the request came in on and
	// the request's length, to refuse it from there when no port of the
	// range can be bound.
	l      *udp.Listener
	reqLen int

	write bool // a write request (WRQ): an upload
}

// errNoFreePort ends a session whose socket could bind no port of the
// port range: every free one was held by other sockets.
var errNoFreePort = errors.New("gateway: every free port of the port range is held by another socket")

// runSession runs on the session's goroutine: startSession runs the
// session, then finishSession reports it. The report (the log line, the
// stats callback) runs once startSession has returned, on a stack
// without its frame. Kept that shallow, a session's goroutine needs a
// 4 KiB stack where it needed 8 (without an info log line, which slog's
// handlers make deeper): at a burst of 10,000 sessions that is 40 MiB
// less memory to fault in, and one stack copy less per session.
func (s *Server) runSession(ctx context.Context, c *config, a *admitted) {
	defer a.act.cancel(nil)
	sess, stats := s.startSession(ctx, c, a)
	s.finishSession(c, a, sess, stats)
}

// startSession normalises the path, calls the handler, opens the
// session's socket and runs the transfer (package session). It returns
// the session and its stats, for finishSession.
func (s *Server) startSession(ctx context.Context, c *config, a *admitted) (sess *session.Session, stats *SessionStats) {
	st := &s.state
	id := st.idPrefix + "-" + strconv.FormatUint(st.nextID.Add(1), 10)
	// What the session's parts point to, in one allocation.
	m := &struct {
		req   Request
		host  sessionHost
		sess  session.Session
		stats SessionStats
		opts  [4]Option
	}{}
	opts := m.opts[:0]
	if len(a.req.Options) > len(m.opts) {
		opts = make([]Option, 0, len(a.req.Options))
	}
	for _, o := range a.req.Options {
		opts = append(opts, Option(o))
	}
	opts = opts[:len(opts):len(opts)] // a handler's append never writes into m
	// m is zeroed: its parts are set field by field. A composite literal
	// assigned through a pointer is built on the stack first (a
	// session.Session is nearly 1 KiB), and this frame is on the stack
	// of every session (see runSession).
	req := &m.req
	req.SessionID = id
	req.RawPath = a.req.Filename
	req.Mode = a.req.Mode
	req.Options = opts
	req.RemoteAddr = a.src
	req.LocalAddr = a.local
	req.At = a.at
	stats = &m.stats
	stats.SessionID = id
	stats.RemoteAddr = a.src
	stats.LocalAddr = a.local
	stats.Write = a.write
	stats.RawPath = a.req.Filename
	stats.Mode = a.req.Mode
	stats.RequestedOptions = opts
	stats.BlockSize = wire.DefaultBlockSize
	stats.WindowSize = 1
	stats.TransferSize = -1
	stats.Start = a.at
	ctx = traceStart(ctx, c, req, stats) // tracer.go
	host := &m.host
	host.st, host.c, host.act = st, c, a.act
	host.client = winmem.ClientPrefix(a.src.Addr())
	cfg := c.sessionConfig(a.limits, &host.cfg)
	sess = &m.sess
	sess.ID = id
	sess.Client = a.src
	sess.Ctx = ctx
	sess.Cancel = a.act.end
	sess.Host = host
	sess.Config = cfg
	sess.Mode = a.req.Mode
	sess.Options = a.req.Options
	sess.Start = a.at
	if a.write && a.mux != nil {
		// In single-port mode the listener hands a session datagrams of
		// up to udp.MaxPacket bytes, and queues a few: an upload's blocks
		// and its window must fit.
		wc := *cfg
		wc.MaxBlockSize = min(wc.MaxBlockSize, udp.MaxPacket-wire.HeaderSize)
		wc.MaxWindowSize = min(wc.MaxWindowSize, udp.MuxWindow)
		sess.Config = &wc
	}

	// The path and, for a read, the content are decided before the
	// session's socket exists: a refusal (most of a PXELINUX client's
	// config search) then needs only a socket that sends its ERROR.
	var (
		refuse  *session.Error
		cause   error
		content Content
	)
	p, err := CleanPath(req.RawPath)
	switch {
	case err != nil:
		// The log line's path is the normalised one, empty here: the
		// cause names what was asked for.
		var e *Error
		e, cause = refusePath(err, req.RawPath)
		refuse = errorOf(e)
	case a.write:
		req.Path, stats.Path = p, p
		stats.Write = true
	default:
		req.Path, stats.Path = p, p
		content, err = s.serve(ctx, c, req)
		if req.Path != p {
			stats.RewrittenPath = req.Path
		}
		if content != nil {
			defer s.closeContent(c, id, content, stats)
		}
		switch {
		case err != nil:
			stats.Backend = backendStatsOf(err)
			refuse, cause = errorOf(ErrorFor(err)), err
		case content == nil:
			refuse, cause = errorOf(ErrorFor(nil)), errors.New("gateway: handler returned no content and no error")
		}
	}

	// err is the socket's from here on: the path's or the handler's error
	// is in refuse and cause.
	var conn udp.Conn = a.mux
	err = nil
	if a.mux == nil {
		conn, sess.Client, err = s.listenSession(a, refuse != nil)
	}
	if errors.Is(err, errNoFreePort) {
		// Refused as admission refuses a full range: from the listening
		// port, counted with the other refusals (and as a session).
		st.portsExhausted.Add(1)
		st.refusedBusy(c, a.src, time.Now(), busyPortRange)
		msg := a.l.ReplyError(a.src, a.local.Addr(), uint16(errBusy.Code), errBusy.Message, a.reqLen)
		sess.Conn = udp.ClosedConn{}
		stats.Outcome, stats.cause = OutcomeError, fmt.Errorf("%w (%v)", err, c.portRange)
		stats.ErrorSent = &Error{Code: errBusy.Code, Message: msg}
		return
	}
	if err != nil {
		c.logger.Error("cannot open session socket", "session", id, "client", a.src, "err", err)
		sess.Conn = udp.ClosedConn{}
		stats.Outcome, stats.cause = OutcomeError, fmt.Errorf("gateway: %w", err)
		return
	}
	sess.Conn = conn
	if refuse != nil {
		sess.Refuse(refuse, cause)
		return
	}
	// A session ended from outside (a shutdown, a new request from the
	// client's port) stops waiting for its client at once.
	a.act.attach(conn)
	defer a.act.attach(nil)
	if a.write {
		s.receiveUpload(ctx, c, req, sess, stats)
		return
	}
	sess.Run(content)
	return
}

// listenSession opens the session's own socket (one that only sends, for
// a session refused before it started: replyOnly): on a port the kernel
// picks, or, with a port range, on a.port, reserved at admission. When
// another socket holds that port (another program's), the port goes back
// to the pool and the next free one is tried, at most as many times as
// the range has ports; a.port follows, so that the session puts back the
// port it holds. It returns errNoFreePort, a.port then 0, when no port
// could be bound.
func (s *Server) listenSession(a *admitted, replyOnly bool) (udp.Conn, netip.AddrPort, error) {
	listen := udp.ListenSessionPort
	if replyOnly {
		listen = udp.ListenReply
	}
	if a.port == 0 {
		return listen(a.local.Addr(), a.src, 0)
	}
	st := &s.state
	for range st.ports.Size() { // Size never changes: no lock needed
		conn, client, err := listen(a.local.Addr(), a.src, a.port)
		if err == nil || !udp.AddrInUse(err) {
			return conn, client, err
		}
		st.mu.Lock()
		next, ok := st.ports.Take()
		st.ports.Put(a.port) // after Take: not the next one tried
		st.mu.Unlock()
		if !ok {
			a.port = 0
			return nil, a.src, errNoFreePort
		}
		a.port = next
	}
	st.mu.Lock()
	st.ports.Put(a.port)
	st.mu.Unlock()
	a.port = 0
	return nil, a.src, errNoFreePort
}

// receiveUpload calls the write handler and runs the upload; the upload
// is aborted unless it ended stored and acknowledged.
func (s *Server) receiveUpload(ctx context.Context, c *config, req *Request, sess *session.Session, stats *SessionStats) {
	up, err := s.receive(ctx, c, req)
	if req.Path != stats.Path {
		stats.RewrittenPath = req.Path
	}
	if bs, ok := up.(interface{ BackendStats() BackendStats }); ok {
		defer func() { b := bs.BackendStats(); stats.Backend = &b }()
	}
	switch {
	case err != nil:
		stats.Backend = backendStatsOf(err)
		if errors.Is(err, ErrUploadRefused) {
			s.state.writeRequests.Add(1)
		}
		sess.Refuse(errorOf(ErrorFor(err)), err)
		return
	case up == nil:
		sess.Refuse(errorOf(ErrorFor(nil)), errNoUpload)
		return
	}
	defer func() {
		if sess.Stats().Outcome != session.OutcomeOK {
			abortUpload(c, req.SessionID, up)
		}
	}()
	sess.Receive(up)
}

// backendStatsOf returns the backend stats a handler's error carries (a
// method BackendStats, as package remote's errors have), or nil.
func backendStatsOf(err error) *BackendStats {
	var be interface{ BackendStats() BackendStats }
	if !errors.As(err, &be) {
		return nil
	}
	b := be.BackendStats()
	return &b
}

// receive calls the write handler; a panic there is logged and returned
// as an error.
func (s *Server) receive(ctx context.Context, c *config, req *Request) (up Upload, err error) {
	defer func() {
		if v := recover(); v != nil {
			c.logger.Error("write handler panic", "session", req.SessionID, "panic", v)
			up, err = nil, fmt.Errorf("gateway: write handler panic: %v", v)
		}
	}()
	return c.writeHandler.ReceiveTFTP(ctx, req)
}

// abortUpload aborts an upload; a panic there is logged, never fatal.
func abortUpload(c *config, id string, up Upload) {
	defer func() {
		if v := recover(); v != nil {
			c.logger.Error("upload panic on abort", "session", id, "panic", v)
		}
	}()
	up.Abort()
}

// serve calls the handler; a panic there is logged and returned as an
// error.
func (s *Server) serve(ctx context.Context, c *config, req *Request) (content Content, err error) {
	defer func() {
		if v := recover(); v != nil {
			c.logger.Error("handler panic", "session", req.SessionID, "panic", v)
			content, err = nil, fmt.Errorf("gateway: handler panic: %v", v)
		}
	}()
	return c.handler.ServeTFTP(ctx, req)
}

// errorOf converts a TFTP error for the session engine.
func errorOf(e *Error) *session.Error {
	return &session.Error{Code: uint16(e.Code), Message: e.Message}
}

// closeContent takes the content's backend stats and closes it; a panic
// in either is logged, never fatal.
func (s *Server) closeContent(c *config, id string, content Content, st *SessionStats) {
	defer func() {
		if v := recover(); v != nil {
			c.logger.Error("content panic on close", "session", id, "panic", v)
		}
	}()
	if bc, ok := content.(BackendContent); ok {
		b := bc.BackendStats()
		st.Backend = &b
	}
	if err := content.Close(); err != nil {
		c.logger.Debug("content close", "session", id, "err", err)
	}
}

// finishSession closes the session's connection, completes its stats from
// the engine's, logs one line, counts it and reports it.
func (s *Server) finishSession(c *config, a *admitted, sess *session.Session, st *SessionStats) {
	if sess.Conn != nil {
		sess.Conn.Close()
	}
	es := sess.Stats()
	if st.Outcome == OutcomeUnknown { // else decided here (no socket)
		st.Outcome = Outcome(es.Outcome)
		st.cause = es.Cause
		if es.BlockSize > 0 {
			st.BlockSize, st.WindowSize = es.BlockSize, es.WindowSize
		}
		st.TransferSize = es.TransferSize
		if len(es.NegotiatedOptions) > 0 {
			st.NegotiatedOptions = make([]Option, len(es.NegotiatedOptions))
			for i, o := range es.NegotiatedOptions {
				st.NegotiatedOptions[i] = Option(o)
			}
		}
		if e := es.ErrorSent; e != nil {
			st.ErrorSent = &Error{Code: ErrorCode(e.Code), Message: e.Message}
		}
		if e := es.ErrorReceived; e != nil {
			st.ErrorReceived = &Error{Code: ErrorCode(e.Code), Message: e.Message}
		}
		st.BytesSent, st.BytesAcked, st.PacketsSent = es.BytesSent, es.BytesAcked, es.PacketsSent
		st.Retransmits, st.DuplicateAcks, st.TimeToFirstData = es.Retransmits, es.DuplicateAcks, es.TimeToFirstData
		st.BytesReceived = es.BytesReceived
	}
	st.Duration = time.Since(st.Start)
	logSession(sess.Ctx, c.logger, st)
	traceEnd(sess.Ctx, c, st)
	s.state.sessionDone(a.key, a.act, a.port, st)
	if c.sessionStats != nil {
		reportSessionStats(c, st)
	}
}

// reportSessionStats hands the stats to the callback; a panic there is
// logged.
func reportSessionStats(c *config, st *SessionStats) {
	defer func() {
		if v := recover(); v != nil {
			c.logger.Error("SessionStatsFunc panic", "session", st.SessionID, "panic", v)
		}
	}()
	c.sessionStats(*st)
}

// logSession writes a session's one line, with the session's context
// (a slog.Handler may add what it carries: package tracing adds the
// trace's ids).
func logSession(ctx context.Context, l *slog.Logger, st *SessionStats) {
	if !l.Enabled(ctx, slog.LevelInfo) {
		return // the line is not built for nothing
	}
	writeSessionLine(ctx, l, st)
}

// writeSessionLine builds and writes the line. Apart from logSession, so
// that its frame (the attributes) is taken only when the line is written.
func writeSessionLine(ctx context.Context, l *slog.Logger, st *SessionStats) {
	attrs := []slog.Attr{
		slog.String("session", st.SessionID),
		slog.String("client", st.RemoteAddr.String()),
		slog.String("local", st.LocalAddr.String()),
		slog.String("path", st.Path),
	}
	if st.RewrittenPath != "" {
		attrs = append(attrs, slog.String("rewritten", st.RewrittenPath))
	}
	if st.Protocol == ProtocolHTTP {
		attrs = append(attrs, slog.String("outcome", st.Outcome.String()))
		attrs = logAttrsHTTP(attrs, st)
		attrs = append(attrs, slog.Duration("duration", st.Duration))
		logEnd(ctx, l, st, attrs)
		return
	}
	attrs = append(attrs,
		slog.String("mode", st.Mode),
		slog.String("outcome", st.Outcome.String()),
	)
	if st.Write {
		attrs = append(attrs, slog.Bool("upload", true), slog.Int64("bytes", st.BytesReceived))
	} else {
		attrs = append(attrs, slog.Int64("bytes", st.BytesAcked))
	}
	attrs = append(attrs,
		slog.Int("blksize", st.BlockSize),
		slog.Int("windowsize", st.WindowSize),
		slog.Int64("retransmits", st.Retransmits),
		slog.Duration("duration", st.Duration),
	)
	logEnd(ctx, l, st, attrs)
}

// logEnd adds the errors and the cause to a session's attributes and
// writes its line.
func logEnd(ctx context.Context, l *slog.Logger, st *SessionStats, attrs []slog.Attr) {
	if e := st.ErrorSent; e != nil {
		attrs = append(attrs, slog.Int("error_code", int(e.Code)), slog.String("error", e.Message))
	}
	if e := st.ErrorReceived; e != nil {
		attrs = append(attrs, slog.Int("client_error_code", int(e.Code)), slog.String("client_error", e.Message))
	}
	if st.cause != nil {
		attrs = append(attrs, slog.String("cause", st.cause.Error()))
	}
	l.LogAttrs(ctx, slog.LevelInfo, "session end", attrs...)
}

// sessionHost is what a session's engine asks of the server (see
// session.Host).
type sessionHost struct {
	st     *serverState
	c      *config
	client netip.Prefix // the client, for its share of window memory
	act    *activeSession
	cfg    session.Config // the session's own, when its admission changed the server's
}

func (h *sessionHost) FitWindow(want, slotSize int) int {
	return h.st.windows.Fit(h.client, want, slotSize)
}

func (h *sessionHost) GetWindow(n int) *[]byte { return h.st.windows.Get(h.client, n, time.Now()) }

func (h *sessionHost) PutWindow(b *[]byte) { h.st.windows.Put(h.client, b, time.Now()) }

func (h *sessionHost) Busy() {
	h.st.refusedBusy(h.c, netip.AddrPortFrom(h.client.Addr(), 0), time.Now(), busyWindowMemory)
}

func (h *sessionHost) Answered(unanswered int) {
	if unanswered > 0 {
		h.st.unanswered.Add(-int64(unanswered))
		return
	}
	h.act.progressed.Store(true)
}

// Unanswered holds n bytes against the budget of unanswered uploads: an
// eighth of the window memory (none without a limit), so that write
// requests from spoofed sources, which never answer, cannot take the
// window memory reads need.
func (h *sessionHost) Unanswered(n int) bool {
	limit := h.c.maxWindowMemory / 8
	if h.c.maxWindowMemory <= 0 {
		return true
	}
	if h.st.unanswered.Add(int64(n)) > limit {
		h.st.unanswered.Add(-int64(n))
		return false
	}
	return true
}

func (h *sessionHost) StrayPacket(answered bool) {
	h.st.unknownTID.Add(1)
	if answered {
		h.st.errCounts[ErrUnknownTID].Add(1)
	}
}

func (h *sessionHost) Stopping() bool { return h.st.ctx != nil && h.st.ctx.Err() != nil }

func (h *sessionHost) Draining() bool { return h.st.draining.Load() }

func (h *sessionHost) ErrorFor(err error) session.Error {
	e := ErrorFor(err)
	return session.Error{Code: uint16(e.Code), Message: e.Message}
}
