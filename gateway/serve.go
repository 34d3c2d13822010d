package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tftpgw/tftpgw/gateway/internal/session"
	"github.com/tftpgw/tftpgw/gateway/internal/udp"
	"github.com/tftpgw/tftpgw/gateway/internal/winmem"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// serverState is what a Server holds while it serves.
type serverState struct {
	mu        sync.Mutex
	conf      *config
	ctx       context.Context // cancelled to end the sessions still running
	cancel    context.CancelFunc
	listeners map[*udp.Listener]struct{}
	active    map[sessionKey]*activeSession
	closed    bool
	draining  atomic.Bool // closed, readable without the lock
	sessions  sync.WaitGroup
	workers   *workers       // the goroutines sessions run on
	loops     sync.WaitGroup // stats loop
	statsStop chan struct{}
	idPrefix  string
	nextID    atomic.Uint64
	errCounts [9]atomic.Int64 // ERRORs sent, by code (0..8)

	running   int         // sessions admitted and not yet done; guarded by mu
	clients   clientTable // guarded by mu
	lastSweep time.Time   // guarded by mu
	windows   winmem.Pool // window buffers within the budget
	busy      atomic.Int64
	busyLog   atomic.Int64 // unix nanoseconds of the last "refusing" log line
	busyNoted atomic.Int64 // busy at that line
	seed      maphash.Seed // requestSum's; set by init
	// busyWhy counts the refusals by the limit that refused them, and
	// busyWhyNoted is each at the last "refusing" line.
	busyWhy, busyWhyNoted [busyPortRange + 1]atomic.Int64

	// ports are the free ports of the port range, one taken at admission
	// and put back when the session's socket is closed; nil without a
	// range. Guarded by mu.
	ports *udp.PortPool

	broadcasts        udp.Broadcasts
	ignoredBroadcasts atomic.Int64
	integrityFailures atomic.Int64
	policyRefusals    atomic.Int64
	policyDrops       atomic.Int64
	portsExhausted    atomic.Int64

	activeN, bytesSent, packetsSent, retransmits              atomic.Int64
	outcomes                                                  [numOutcomes]atomic.Int64
	malformed, unknownTID, writeRequests, duplicates, dupAcks atomic.Int64

	uploads       [numOutcomes]atomic.Int64 // also in outcomes
	bytesReceived atomic.Int64
	unanswered    atomic.Int64 // window memory held by uploads whose client has not answered (see sessionHost.Unanswered)

	// HTTP requests (http.go).
	httpActive, httpBytesSent atomic.Int64
	httpMu                    sync.Mutex
	httpStatus                map[int]int64 // finished requests by status; guarded by httpMu
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
	perClient  bool // counted in its client's entry (see serverState.admit)
	// req identifies the request that started the session (requestSum):
	// only the same request again can be its retransmission.
	req uint64

	// conn is the session's connection while it may wait for its client
	// (see attach): wake moves its read deadline to the past, so that a
	// session ended from outside stops waiting at once.
	mu   sync.Mutex
	conn udp.Conn
}

// end cancels the session with cause and wakes a read of its that waits
// for the client. The session checks its context after it sets a read
// deadline and before it reads: either it sees the cancellation, or its
// read sees the deadline wake set.
func (a *activeSession) end(cause error) {
	a.cancel(cause)
	a.wake()
}

// wake moves the read deadline of the session's connection, if attached,
// to the past.
func (a *activeSession) wake() {
	a.mu.Lock()
	c := a.conn
	a.mu.Unlock()
	if c != nil {
		c.SetReadDeadline(time.Unix(1, 0))
	}
}

// attach makes wake move c's read deadline; nil detaches it.
func (a *activeSession) attach(c udp.Conn) {
	a.mu.Lock()
	a.conn = c
	a.mu.Unlock()
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

// supersede decides about a request that arrived at at (the kernel's
// receive time, on Linux) from a client that has a running session; sum is
// its requestSum. A request other than the session's (another file in
// single-port mode, other options or mode, a read after a write) is a new
// transfer. The same request that reached the server before the client's
// first acknowledgement was sent before the client saw the session's first
// packet: a retransmission, however late the listener reads it (a boot
// storm's backlog), so it returns false and the request is ignored. One
// that came after is a new transfer from the same port. A new transfer
// ends the old session, and supersede returns true.
func supersede(old *activeSession, at time.Time, sum uint64) bool {
	if old == nil || (sum == old.req && old.progressed.before(at)) {
		return false
	}
	old.end(session.ErrSuperseded)
	return true
}

// requestSum identifies a request (its opcode, file name, mode and
// options, as parsed): a client's retransmission of a request is the same
// request. The parsed request, not the datagram, so that bytes after the
// last option (padding some firmware sends) do not make a retransmission
// look new. A hash with the server's seed; a collision (one in 2^64)
// would take a changed request for a retransmission, as every request was
// taken before requests were compared.
func (st *serverState) requestSum(req *wire.Request) uint64 {
	var h maphash.Hash
	h.SetSeed(st.seed)
	h.WriteByte(byte(req.Op))
	h.WriteString(req.Filename)
	h.WriteByte(0)
	h.WriteString(req.Mode)
	for _, o := range req.Options {
		h.WriteByte(0)
		h.WriteString(o.Name)
		h.WriteByte(0)
		h.WriteString(o.Value)
	}
	return h.Sum64()
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
		st.listeners = make(map[*udp.Listener]struct{})
		st.active = make(map[sessionKey]*activeSession)
		st.seed = maphash.MakeSeed()
		st.workers = newWorkers()
		st.clients.init()
		st.windows.Limit, st.windows.PerClient = st.conf.maxWindowMemory, st.conf.maxWindowMemoryPerClient
		if r := st.conf.portRange; !r.IsZero() {
			st.ports = udp.NewPortPool(r.First, r.Last)
		}
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
	l := udp.NewListener(pc, c.singlePort)
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
		d, err := l.Read(buf)
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
		if !c.singlePort && st.draining.Load() {
			// Closed: what the listener read before (a batch, see
			// udp.Listener.Read) is not served; the next read ends.
			continue
		}
		s.handlePacket(c, l, buf[:d.N], d.Src, d.Dst, d.At)
	}
}

// replyError answers a request on the listening socket with an ERROR and
// counts it.
func (s *Server) replyError(l *udp.Listener, to netip.AddrPort, from netip.Addr, code ErrorCode, msg string, reqLen int) {
	if int(code) < len(s.state.errCounts) {
		s.state.errCounts[code].Add(1)
	}
	l.ReplyError(to, from, uint16(code), msg, reqLen)
}

func (s *Server) isClosed() bool {
	s.state.mu.Lock()
	defer s.state.mu.Unlock()
	return s.state.closed
}

// handlePacket deals with one datagram on the listening socket. Nothing
// but a request is answered there: junk is counted, never echoed.
func (s *Server) handlePacket(c *config, l *udp.Listener, b []byte, src netip.AddrPort, dst netip.Addr, at time.Time) {
	st := &s.state
	op, err := wire.PacketOpcode(b)
	isRequest := err == nil && (op == wire.OpRRQ || op == wire.OpWRQ)
	var running *udp.MuxConn // single-port: the session of src, if any
	if c.singlePort {
		running = l.Deliver(src, b, isRequest)
		if running != nil && !isRequest {
			return // delivered
		}
	}
	if !isRequest {
		st.malformed.Add(1)
		return
	}
	if st.broadcasts.Is(dst, time.Now()) {
		st.ignoredBroadcasts.Add(1)
		return // RFC 1123 4.2.3.5: a broadcast request is ignored
	}
	req, err := wire.ParseRequest(b)
	if err != nil {
		st.malformed.Add(1)
		return
	}
	arrival := Arrival{Client: src, Local: netip.AddrPortFrom(dst, l.Port()), Write: op == wire.OpWRQ, RawPath: req.Filename, Mode: req.Mode, At: at}
	limits, ok := s.admit(c, arrival, func(e *Error) { s.replyError(l, src, dst, e.Code, e.Message, len(b)) })
	if !ok {
		return
	}
	write := op == wire.OpWRQ
	if write && c.writeHandler == nil {
		st.writeRequests.Add(1)
		s.replyError(l, src, dst, errUploadsOff.Code, errUploadsOff.Message, len(b))
		return
	}
	if req.Mode != "octet" && req.Mode != "netascii" {
		st.malformed.Add(1)
		s.replyError(l, src, dst, ErrIllegalOperation, "unknown transfer mode", len(b))
		return
	}
	sum := st.requestSum(&req)
	// Only a valid read request may end the session running for src, as
	// in the default mode (below, by key): junk and refused requests
	// leave it alone.
	if running != nil {
		if s.isClosed() {
			return // draining: no new session replaces a running one
		}
		if !supersede(running.Owner().(*activeSession), at, sum) { // a duplicate request
			st.duplicates.Add(1)
			return
		}
		l.Unregister(running) // the new request starts a session of its own
	}
	key := sessionKey{client: src, file: req.Filename}
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return
	}
	if old, dup := st.active[key]; dup && !supersede(old, at, sum) {
		st.mu.Unlock()
		st.duplicates.Add(1)
		return
	}
	now := time.Now()
	// A full port range refuses before the other limits, which count
	// what they admit (a rate limiter's token) and would have to be
	// undone.
	full := st.ports != nil && st.ports.Free() == 0
	accepted, perClient, why := false, false, busyPortRange
	if !full {
		accepted, perClient, why = st.admit(c, c.limitsFor(limits), src.Addr(), now)
	}
	if !accepted {
		st.mu.Unlock()
		if full {
			st.portsExhausted.Add(1)
		}
		st.refusedBusy(c, src, now, why)
		s.replyError(l, src, dst, errBusy.Code, errBusy.Message, len(b))
		return
	}
	var port uint16 // 0: any
	if st.ports != nil {
		port, _ = st.ports.Take() // one is free (above)
	}
	// Not a child of st.ctx: a child registers with its parent, under the
	// parent's lock, at every session's start and end. cancelSessions
	// ends each active session itself; st.closed, set before it runs and
	// checked above under st.mu, keeps sessions from starting after it.
	ctx, cancel := context.WithCancelCause(context.Background())
	act := &activeSession{cancel: cancel, perClient: perClient, req: sum}
	var mux *udp.MuxConn
	if c.singlePort {
		mux = l.Register(src, dst, act) // not nil: Deliver found no session
	}
	st.active[key] = act
	st.sessions.Add(1)
	st.mu.Unlock()
	st.activeN.Add(1)

	a := admitted{
		key: key, act: act, req: req, src: src,
		local: netip.AddrPortFrom(dst, l.Port()), mux: mux, at: at,
		limits: limits, port: port, l: l, reqLen: len(b), write: write,
	}
	st.workers.run(func() { s.runSession(ctx, c, &a) })
}

// busyLogEvery is how often, at most, refusals are logged.
const busyLogEvery = 10 * time.Second

// refusedBusy counts a request refused with "server busy" (over the limit
// why) and logs that
// requests are being refused: one line at most every busyLogEvery, with
// the count since the last one, so that a boot storm shows in the log
// without flooding it.
func (st *serverState) refusedBusy(c *config, client netip.AddrPort, now time.Time, why busyReason) {
	st.busy.Add(1)
	st.busyWhy[why].Add(1)
	last := st.busyLog.Load()
	if now.UnixNano()-last < int64(busyLogEvery) || !st.busyLog.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	total := st.busy.Load()
	// The limit of this refusal, and how many each limit refused since
	// the last line: the limits to look at (docs/operations.md).
	var since [len(st.busyWhy)]slog.Attr
	for r := range st.busyWhy {
		n := st.busyWhy[r].Load()
		since[r] = slog.Int64(busyReason(r).String(), n-st.busyWhyNoted[r].Swap(n))
	}
	c.logger.Warn("refusing requests with \"server busy\"",
		"client", client, "reason", why.String(), "refused", total-st.busyNoted.Swap(total),
		slog.GroupAttrs("by_reason", since[:]...), "refused_total", total, "active_sessions", st.activeN.Load())
}

// sessionDone counts a finished session and forgets it; port, the port of
// its socket (closed by now) from the port range, if not 0, is free again.
func (st *serverState) sessionDone(key sessionKey, act *activeSession, port uint16, s *SessionStats) {
	st.activeN.Add(-1)
	if s.Write {
		st.bytesReceived.Add(s.BytesReceived)
		if o := s.Outcome; o >= 0 && int(o) < len(st.uploads) {
			st.uploads[o].Add(1)
		}
	}
	st.bytesSent.Add(s.BytesSent)
	st.packetsSent.Add(s.PacketsSent)
	st.retransmits.Add(s.Retransmits)
	st.dupAcks.Add(s.DuplicateAcks)
	if o := s.Outcome; o >= 0 && int(o) < len(st.outcomes) {
		st.outcomes[o].Add(1)
	}
	if e := s.ErrorSent; e != nil && int(e.Code) < len(st.errCounts) {
		st.errCounts[e.Code].Add(1)
	}
	if errors.Is(s.cause, ErrIntegrity) {
		st.integrityFailures.Add(1)
	}
	st.mu.Lock()
	if st.active[key] == act { // else a new session for the key replaced it
		delete(st.active, key)
	}
	st.release(key.client.Addr(), act.perClient, time.Now())
	if port != 0 {
		st.ports.Put(port)
	}
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
	st.draining.Store(true)
	if st.workers != nil {
		st.workers.stop()
	}
	for l := range st.listeners {
		if !l.Single() {
			l.Close()
		}
	}
	return st
}

func (st *serverState) closeAllListeners() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for l := range st.listeners {
		l.Close()
	}
}

// cancelSessions cancels the server's context and that of every session
// (sessions' contexts are not its children: see handlePacket), and wakes
// the reads of those that wait for their client.
func (st *serverState) cancelSessions() {
	st.mu.Lock()
	cancel := st.cancel
	st.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	st.mu.Lock()
	acts := make([]*activeSession, 0, len(st.active))
	for _, a := range st.active {
		acts = append(acts, a)
	}
	st.mu.Unlock()
	for _, a := range acts {
		a.end(context.Canceled)
	}
}
