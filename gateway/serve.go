package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tftpgw/tftpgw/internal/wire"
)

// serverState is what a Server holds while it serves.
type serverState struct {
	mu        sync.Mutex
	conf      *config
	ctx       context.Context // cancelled to end the sessions still running
	cancel    context.CancelFunc
	listeners map[*listener]struct{}
	active    map[sessionKey]*activeSession
	closed    bool
	sessions  sync.WaitGroup
	loops     sync.WaitGroup // stats loop
	statsStop chan struct{}
	idPrefix  string
	nextID    atomic.Uint64
	errCounts [9]atomic.Int64 // ERRORs sent, by code (0..8)

	running   int         // sessions admitted and not yet done; guarded by mu
	clients   clientTable // guarded by mu
	lastSweep time.Time   // guarded by mu
	windows   windowPool  // window buffers within the budget
	busy      atomic.Int64
	busyLog   atomic.Int64 // unix nanoseconds of the last "refusing" log line
	busyNoted atomic.Int64 // busy at that line

	broadcasts        broadcasts
	ignoredBroadcasts atomic.Int64
	integrityFailures atomic.Int64

	activeN, bytesSent, packetsSent, retransmits              atomic.Int64
	outcomes                                                  [numOutcomes]atomic.Int64
	malformed, unknownTID, writeRequests, duplicates, dupAcks atomic.Int64
}

// sessionKey identifies a running session, to ignore duplicate RRQs.
type sessionKey struct {
	client netip.AddrPort
	file   string
}

// activeSession is what the listener knows of a running session.
type activeSession struct {
	// progressed is set when the client first acknowledges something
	// (see supersede).
	progressed progressMark
	cancel     context.CancelCauseFunc
}

// progressMark records when a session's client first acknowledged
// something. Its Store and Load are those of the atomic.Bool it replaces,
// which the session sets.
type progressMark struct {
	at atomic.Int64 // unix nanoseconds (wall clock) of the first Store(true); 0: none
}

// Store(true) records the first acknowledgement; later calls and
// Store(false) change nothing (a session never goes back).
func (p *progressMark) Store(v bool) {
	if v {
		p.at.CompareAndSwap(0, max(time.Now().UnixNano(), 1))
	}
}

// Load reports whether the client has acknowledged something.
func (p *progressMark) Load() bool { return p.at.Load() != 0 }

// before reports whether t is before the client's first acknowledgement
// (always, if there is none yet).
func (p *progressMark) before(t time.Time) bool {
	at := p.at.Load()
	return at == 0 || t.UnixNano() <= at
}

// errSuperseded ends a session whose client port sent a new request after
// the session had progressed: the client restarted the transfer from the
// same port, or it finished, its final ACK was lost and the port was
// reused. The session ends silently, since the port is not its client's
// any more.
var errSuperseded = errors.New("gateway: superseded by a new request from the client's port")

// supersede decides about a request that arrived at at (the kernel's
// receive time, on Linux) from a client that has a running session. A
// request that reached the server before the client's first
// acknowledgement was sent before the client saw the session's first
// packet: a retransmission of the request, however late the listener
// reads it (a boot storm's backlog), so it returns false and the request
// is ignored. One that came after is a new transfer from the same port:
// it ends the old session and returns true.
func supersede(old *activeSession, at time.Time) bool {
	if old == nil || old.progressed.before(at) {
		return false
	}
	old.cancel(errSuperseded)
	return true
}

func notFound(context.Context, *Request) (Content, error) {
	return nil, &Error{Code: ErrFileNotFound, Message: "file not found"}
}

// init resolves the configuration on first use and starts the stats loop.
// It returns nil once the server is closed.
func (s *Server) init() *config {
	st := &s.state
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return nil
	}
	if st.conf == nil {
		st.conf = s.resolve()
		st.ctx, st.cancel = context.WithCancel(context.Background())
		st.listeners = make(map[*listener]struct{})
		st.active = make(map[sessionKey]*activeSession)
		st.clients.init()
		st.windows.limit, st.windows.perClient = st.conf.maxWindowMemory, st.conf.maxWindowMemoryPerClient
		var id [4]byte
		rand.Read(id[:])
		st.idPrefix = hex.EncodeToString(id[:])
		if st.conf.serverStats != nil {
			st.statsStop = make(chan struct{})
			st.loops.Add(1)
			go s.statsLoop(st.conf, st.statsStop)
		}
	}
	return st.conf
}

// ListenAndServe listens on the UDP address s.Addr (":69" if empty) and
// calls [Server.Serve]. It always returns a non-nil error.
func (s *Server) ListenAndServe() error {
	addr := s.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		if errors.Is(err, syscall.EACCES) {
			return fmt.Errorf("gateway: listen %s: %w (ports below 1024 need root or CAP_NET_BIND_SERVICE)", addr, err)
		}
		return fmt.Errorf("gateway: listen %s: %w", addr, err)
	}
	return s.Serve(pc)
}

// Serve answers read requests arriving on pc, each in a session of its
// own, until [Server.Shutdown] or [Server.Close]; it closes pc when it
// returns. pc is normally a *net.UDPConn: then replies come from the
// address each request was sent to. Serve may be called for several
// sockets (say one per address family). It always returns a non-nil error,
// [ErrServerClosed] after Shutdown or Close.
func (s *Server) Serve(pc net.PacketConn) error {
	c := s.init()
	if c == nil {
		pc.Close()
		return ErrServerClosed
	}
	l := newListener(pc)
	l.single = c.singlePort
	st := &s.state
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		pc.Close()
		return ErrServerClosed
	}
	st.listeners[l] = struct{}{}
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		delete(st.listeners, l)
		st.mu.Unlock()
		pc.Close()
	}()

	buf := make([]byte, 4096)
	var backoff time.Duration
	for {
		d, err := l.read(buf)
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				c.logger.Warn("read error; retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("gateway: read: %w", err)
		}
		backoff = 0
		s.handlePacket(c, l, buf[:d.n], d.src, d.dst, d.at)
	}
}

// replyError answers a request on the listening socket with an ERROR and
// counts it.
func (s *Server) replyError(l *listener, to netip.AddrPort, from netip.Addr, code ErrorCode, msg string, reqLen int) {
	if int(code) < len(s.state.errCounts) {
		s.state.errCounts[code].Add(1)
	}
	l.replyError(to, from, code, msg, reqLen)
}

func (s *Server) isClosed() bool {
	s.state.mu.Lock()
	defer s.state.mu.Unlock()
	return s.state.closed
}

// handlePacket deals with one datagram on the listening socket. Nothing
// but a request is answered there: junk is counted, never echoed.
func (s *Server) handlePacket(c *config, l *listener, b []byte, src netip.AddrPort, dst netip.Addr, at time.Time) {
	st := &s.state
	op, err := wire.PacketOpcode(b)
	isRequest := err == nil && (op == wire.OpRRQ || op == wire.OpWRQ)
	var running *muxConn // single-port: the session of src, if any
	if c.singlePort {
		running = l.deliver(src, b, isRequest)
		if running != nil && !isRequest {
			return // delivered
		}
	}
	if !isRequest {
		st.malformed.Add(1)
		return
	}
	if st.broadcasts.is(dst, time.Now()) {
		st.ignoredBroadcasts.Add(1)
		return // RFC 1123 4.2.3.5: a broadcast request is ignored
	}
	req, err := wire.ParseRequest(b)
	if err != nil {
		st.malformed.Add(1)
		return
	}
	if op == wire.OpWRQ {
		st.writeRequests.Add(1)
		s.replyError(l, src, dst, ErrAccessViolation, "read-only server", len(b))
		return
	}
	if req.Mode != "octet" && req.Mode != "netascii" {
		st.malformed.Add(1)
		s.replyError(l, src, dst, ErrIllegalOperation, "unknown transfer mode", len(b))
		return
	}
	// Only a valid read request may end the session running for src, as
	// in the default mode (below, by key): junk and refused requests
	// leave it alone.
	if running != nil {
		if s.isClosed() {
			return // draining: no new session replaces a running one
		}
		if !supersede(running.act, at) { // a duplicate RRQ
			st.duplicates.Add(1)
			return
		}
		l.unregister(running) // the new request starts a session of its own
	}
	key := sessionKey{client: src, file: req.Filename}
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return
	}
	if old, dup := st.active[key]; dup && !supersede(old, at) {
		st.mu.Unlock()
		st.duplicates.Add(1)
		return
	}
	if now := time.Now(); !st.admit(c, src.Addr(), now) {
		st.mu.Unlock()
		st.refusedBusy(c, src, now)
		s.replyError(l, src, dst, errBusy.Code, errBusy.Message, len(b))
		return
	}
	ctx, cancel := context.WithCancelCause(st.ctx)
	act := &activeSession{cancel: cancel}
	var mux *muxConn
	if c.singlePort {
		mux = l.register(src, dst, act) // not nil: deliver found no session
	}
	st.active[key] = act
	st.sessions.Add(1)
	st.mu.Unlock()
	st.activeN.Add(1)

	go s.startSession(ctx, c, admitted{
		key: key, act: act, req: req, src: src,
		local: netip.AddrPortFrom(dst, l.port), mux: mux, at: at,
	})
}

// busyLogEvery is how often, at most, refusals are logged.
const busyLogEvery = 10 * time.Second

// refusedBusy counts a request refused with "server busy" and logs that
// requests are being refused: one line at most every busyLogEvery, with
// the count since the last one, so that a boot storm shows in the log
// without flooding it.
func (st *serverState) refusedBusy(c *config, client netip.AddrPort, now time.Time) {
	st.busy.Add(1)
	last := st.busyLog.Load()
	if now.UnixNano()-last < int64(busyLogEvery) || !st.busyLog.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	total := st.busy.Load()
	c.logger.Warn("refusing read requests with \"server busy\": over a session, client or window-memory limit",
		"client", client, "refused", total-st.busyNoted.Swap(total), "refused_total", total, "active_sessions", st.activeN.Load())
}

// admitted is a request the listener accepted, handed to its session.
type admitted struct {
	key   sessionKey
	act   *activeSession
	req   wire.Request
	src   netip.AddrPort // the client
	local netip.AddrPort // where the request was sent
	mux   *muxConn       // single-port mode: the connection through the listening socket
	at    time.Time      // when the request arrived
}

// startSession runs on the session's goroutine: it opens the session's
// socket, normalises the path and runs the transfer.
func (s *Server) startSession(ctx context.Context, c *config, a admitted) {
	key, act, wr, src, local, mux := a.key, a.act, a.req, a.src, a.local, a.mux
	st := &s.state
	defer act.cancel(nil)
	id := st.idPrefix + "-" + strconv.FormatUint(st.nextID.Add(1), 10)
	opts := make([]Option, len(wr.Options))
	for i, o := range wr.Options {
		opts[i] = Option(o)
	}
	sess := &session{
		srv:    s,
		c:      c,
		ctx:    ctx,
		cancel: act.cancel,
		key:    key,
		act:    act,
		req: Request{
			SessionID:  id,
			RawPath:    wr.Filename,
			Mode:       wr.Mode,
			Options:    opts,
			RemoteAddr: src,
			LocalAddr:  local,
		},
	}
	sess.st = SessionStats{
		SessionID:        id,
		RemoteAddr:       src,
		LocalAddr:        local,
		RawPath:          wr.Filename,
		Mode:             wr.Mode,
		RequestedOptions: opts,
		BlockSize:        wire.DefaultBlockSize,
		WindowSize:       1,
		TransferSize:     -1,
		Start:            a.at,
	}
	var (
		conn   sessionConn
		client = src
		err    error
	)
	if mux != nil {
		conn = mux
	} else {
		var uc *net.UDPConn
		if uc, client, err = listenSession(local.Addr(), src); err == nil {
			conn = newFastConn(uc, client)
		}
	}
	if err != nil {
		c.logger.Error("cannot open session socket", "session", id, "client", src, "err", err)
		sess.conn = closedConn{}
		sess.st.Outcome = OutcomeError
		sess.err = err
		sess.finish()
		return
	}
	sess.conn, sess.client = conn, client
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	p, err := CleanPath(wr.Filename)
	if err != nil {
		// The log line's path is the normalised one, empty here: the
		// cause names what was asked for, quoted (%q escapes controls,
		// bidi overrides and bytes that are not UTF-8).
		sess.err = fmt.Errorf("%w: %q", err, wr.Filename)
		e := &Error{Code: ErrFileNotFound, Message: "file not found"}
		if errors.Is(err, errPathEscapes) || errors.Is(err, errPathNUL) {
			e = &Error{Code: ErrAccessViolation, Message: "access violation"}
		}
		sess.fail(e)
		sess.finish()
		return
	}
	sess.req.Path, sess.st.Path = p, p
	sess.run()
}

// sessionDone is called by a session's finish.
func (st *serverState) sessionDone(s *session) {
	st.activeN.Add(-1)
	st.bytesSent.Add(s.st.BytesSent)
	st.packetsSent.Add(s.st.PacketsSent)
	st.retransmits.Add(s.st.Retransmits)
	st.dupAcks.Add(s.st.DuplicateAcks)
	if o := s.st.Outcome; o >= 0 && int(o) < len(st.outcomes) {
		st.outcomes[o].Add(1)
	}
	if e := s.st.ErrorSent; e != nil && int(e.Code) < len(st.errCounts) {
		st.errCounts[e.Code].Add(1)
	}
	st.mu.Lock()
	if st.active[s.key] == s.act { // else a new session for the key replaced it
		delete(st.active, s.key)
	}
	st.release(s.key.client.Addr(), time.Now())
	st.mu.Unlock()
	st.sessions.Done()
}

// Shutdown stops the server gracefully: it closes the listening sockets,
// so no new session starts, and waits for the running sessions to end. If
// ctx ends first, the remaining sessions are sent ERROR 0 "server shutting
// down" and ended, and Shutdown returns ctx's error once they are gone.
//
// In single-port mode the sessions send and receive through the listening
// sockets: those stay open, taking no new request, until the sessions have
// ended.
func (s *Server) Shutdown(ctx context.Context) error {
	st := s.closeListeners()
	done := st.sessionsDone()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		st.cancelSessions()
		s.waitCancelled(done)
	}
	st.closeAllListeners()
	s.stopStats()
	return err
}

// cancelGrace is how long Shutdown and Close wait for cancelled sessions.
// A session outlives it only while its Content's Read ignores the
// cancelled context; it is then left to finish on its own.
const cancelGrace = 5 * time.Second

func (s *Server) waitCancelled(done <-chan struct{}) {
	t := time.NewTimer(cancelGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.state.mu.Lock()
		c := s.state.conf
		s.state.mu.Unlock()
		if c != nil {
			c.logger.Error("sessions still running after shutdown: their content ignores cancellation",
				"sessions", s.state.activeN.Load())
		}
	}
}

// Close stops the server at once: listening sockets are closed and every
// running session is sent ERROR 0 "server shutting down". It returns when
// the sessions have ended.
func (s *Server) Close() error {
	st := s.closeListeners()
	st.cancelSessions()
	s.waitCancelled(st.sessionsDone())
	st.closeAllListeners()
	s.stopStats()
	return nil
}

// sessionsDone returns a channel closed when every session has ended. Its
// goroutine lives until then (past Shutdown only for sessions whose
// content ignores cancellation).
func (st *serverState) sessionsDone() <-chan struct{} {
	done := make(chan struct{})
	go func() {
		st.sessions.Wait()
		close(done)
	}()
	return done
}

// closeListeners stops new sessions: it marks the server closed and closes
// the listening sockets, except single-port ones, which their sessions
// still use (closeAllListeners closes them).
func (s *Server) closeListeners() *serverState {
	st := &s.state
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	for l := range st.listeners {
		if !l.single {
			l.close()
		}
	}
	return st
}

func (st *serverState) closeAllListeners() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for l := range st.listeners {
		l.close()
	}
}

func (st *serverState) cancelSessions() {
	st.mu.Lock()
	cancel := st.cancel
	st.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// closedConn stands in for a session socket that could not be opened.
type closedConn struct{}

func (closedConn) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed
}
func (closedConn) WriteToUDPAddrPort([]byte, netip.AddrPort) (int, error) { return 0, net.ErrClosed }
func (closedConn) SetReadDeadline(time.Time) error                        { return nil }
func (closedConn) Close() error                                           { return nil }
