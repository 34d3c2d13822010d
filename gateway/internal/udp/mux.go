package udp

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tftpgw/tftpgw/internal/wire"
)

// MuxConn is a session's connection in single-port mode: it sends from
// the listening socket and receives what the listener hands it for its
// client's address and port. Neither direction allocates per packet. It
// has one reader, the session's goroutine: a poke wakes one read.
//
// The listener hands a datagram over by copying its bytes into the
// session's queue, under the queue's mutex, and wakes the session's read
// only when one waits: one channel, which a datagram, a moved deadline,
// Close and the deadline's timer all poke. A channel of packets and a
// select over it, a wake channel and a timer channel cost a copy of a
// whole packet's room twice and the locks of three channels per ACK (the
// select and its timer were about a tenth of the server's time in
// single-port lock-step: BENCHMARKS.md, "Lock-step, single-port mode and
// the 1,000-machine storm").
type MuxConn struct {
	l      *Listener
	owner  any // the caller's handle of the session (see Register)
	client netip.AddrPort
	oob    []byte // makes replies leave from the request's address

	mu      sync.Mutex
	queue   [muxQueue]muxPacket // a ring: n datagrams from head on
	head, n int
	waiting bool          // a read waits on notify (set under mu)
	notify  chan struct{} // (cap 1) wakes a waiting read: see poke

	// resp answers the client's datagrams while the session's read waits
	// (see Offload), on the listener's goroutine, under mu; respDL is
	// the read deadline it last set (or found), which it moves only if
	// nobody else moved it meanwhile.
	resp   Responder
	respDL int64

	deadline atomic.Int64 // monoNanos of the read deadline; 0: none
	closed   atomic.Bool
	// timer stays armed across reads for the deadline armedAt (under mu),
	// and is reset only when the deadline moves: a session moves it
	// seldom (see session.armed), and a reset per block was a runtime
	// timer operation per packet. It pokes the read when it fires, and
	// fired tells the read that it did (the deadline it was armed for may
	// then have moved, and the timer needs arming again).
	timer   *time.Timer
	armedAt int64
	fired   atomic.Bool

	send muxSender // sends to client through the listening socket's descriptor

	// gone is set once m is unregistered: replies of its responder still
	// in the listener's batch are not sent (a new session of the client's
	// port may have sent its first block already).
	gone atomic.Bool
}

// MaxPacket is the longest datagram a session reads: an ACK or an ERROR
// with a message of up to a request's length. Longer ones are cut.
const MaxPacket = wire.MaxRequestSize + wire.HeaderSize

// muxPacket is one datagram from the client: ACKs, ERRORs and an
// upload's 512-byte DATA; longer ones are cut like the session socket's
// receive buffer cuts them, to one byte more than MaxPacket, which shows
// a DATA longer than its blksize.
type muxPacket struct {
	n int
	b [MaxPacket + 1]byte
}

// muxQueue is how many datagrams may wait for a session; more are dropped,
// as a full socket buffer would drop them. An upload's window must fit
// (see MuxWindow).
const muxQueue = 8

// MuxWindow is the largest window an upload in single-port mode may be
// granted: its DATA wait in the session's queue.
const MuxWindow = muxQueue

// newMuxConn returns a MuxConn that has no listener yet.
func newMuxConn() *MuxConn {
	m := &MuxConn{notify: make(chan struct{}, 1)}
	m.timer = time.AfterFunc(time.Hour, func() {
		m.fired.Store(true)
		m.poke()
	})
	m.timer.Stop()
	return m
}

// Register adds a single-port session for client, whose request was sent
// to from, or returns nil if one runs already. owner is the caller's
// handle of the session, which Deliver's result gives back.
func (l *Listener) Register(client netip.AddrPort, from netip.Addr, owner any) *MuxConn {
	l.muxMu.Lock()
	defer l.muxMu.Unlock()
	if _, ok := l.mux[client]; ok {
		return nil
	}
	m := newMuxConn()
	m.l, m.owner, m.client, m.oob = l, owner, client, l.sourceOOB(from)
	m.send.init(l, client, m.oob)
	l.mux[client] = m
	return m
}

// Deliver hands a datagram to the single-port session of src and returns
// that session, or nil if there is none. Requests are not delivered: the
// caller decides between a duplicate and a new transfer.
func (l *Listener) Deliver(src netip.AddrPort, b []byte, isRequest bool) *MuxConn {
	l.muxMu.RLock()
	m := l.mux[src]
	l.muxMu.RUnlock()
	if m == nil || isRequest {
		return m
	}
	m.deliver(b)
	if l.replies.full() {
		l.flushReplies() // here, not under the session's mutex: a flush may wait for room
	}
	return m
}

// deliver queues a copy of b for the session's reads, or drops it when
// the queue is full (the session is behind), as a full socket buffer
// would.
func (m *MuxConn) deliver(b []byte) {
	m.mu.Lock()
	if r := m.resp; r != nil {
		reply, dl, ok := r.Respond(b)
		if ok {
			m.l.queueReply(m, reply)
			if v := monoNanos(dl); m.deadline.CompareAndSwap(m.respDL, v) {
				m.respDL = v
				if m.armedAt != 0 && v < m.armedAt {
					// Earlier than the timer is armed for (a backed-off
					// timeout collapsing on a new round-trip sample): the
					// read must wake then, as the session's own read would.
					m.timer.Reset(time.Duration(v - monoNanos(time.Now())))
					m.armedAt = v
				}
				m.mu.Unlock()
				return
			}
			// The deadline moved under the responder (a shutdown moves it
			// to the past): the session takes over, and its read, woken
			// below, sees why.
		}
		m.resp = nil
		if ok {
			b = nil // answered: nothing for the read
		}
	}
	if b != nil && m.n < muxQueue {
		p := &m.queue[(m.head+m.n)%muxQueue]
		p.n = copy(p.b[:], b)
		m.n++
	}
	wake := m.waiting
	m.waiting = false
	m.mu.Unlock()
	if wake {
		m.poke()
	}
}

// Offload lets r answer the client's datagrams on the listener's
// goroutine while the session's read waits; the read takes the session
// back when it returns (see Conn.Offload). It reports false when a
// datagram waits already, m is closed, or the listener cannot batch its
// replies (not Linux, or no raw access to its socket).
func (m *MuxConn) Offload(r Responder) bool {
	if !m.send.batchable() {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n > 0 || m.closed.Load() {
		return false
	}
	m.resp, m.respDL = r, m.deadline.Load()
	return true
}

// poke wakes the read that waits, if any (a token left for a read that
// no longer waits costs that read one more look at the queue).
func (m *MuxConn) poke() {
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// Unregister stops delivering to m, whose client started a new session.
func (l *Listener) Unregister(m *MuxConn) {
	m.gone.Store(true)
	l.muxMu.Lock()
	if l.mux[m.client] == m {
		delete(l.mux, m.client)
	}
	l.muxMu.Unlock()
}

// Owner returns the handle given to Register.
func (m *MuxConn) Owner() any { return m.owner }

// pop copies the first datagram queued into b, under m.mu.
func (m *MuxConn) pop(b []byte) int {
	p := &m.queue[m.head]
	n := copy(b, p.b[:p.n])
	m.head = (m.head + 1) % muxQueue
	m.n--
	return n
}

// ReadQueued returns a datagram the listener has handed over, without
// waiting.
func (m *MuxConn) ReadQueued(b []byte) (int, netip.AddrPort, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == 0 {
		return 0, netip.AddrPort{}, false
	}
	return m.pop(b), m.client, true
}

// ReadFromUDPAddrPort returns the next datagram from the client, within the
// read deadline.
func (m *MuxConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		// closed and the deadline are read under mu, and waiting is set
		// before mu is let go: Close and SetReadDeadline change them
		// before they take mu to look at waiting, so either this read
		// sees the change or they see it waiting and poke it.
		m.mu.Lock()
		m.waiting = false // (the timer's poke leaves it set)
		if m.closed.Load() {
			m.resp = nil
			m.mu.Unlock()
			m.timer.Stop() // a Reset below may have raced with Close's Stop
			return 0, netip.AddrPort{}, net.ErrClosed
		}
		if m.n > 0 { // a waiting datagram wins over an expired deadline
			n := m.pop(b)
			m.resp = nil
			m.mu.Unlock()
			return n, m.client, nil
		}
		if m.fired.Swap(false) {
			m.armedAt = 0 // the deadline it fired for may have moved: arm again
		}
		if dl := m.deadline.Load(); dl != 0 {
			d := time.Duration(dl - monoNanos(time.Now()))
			if d <= 0 {
				m.resp = nil
				m.mu.Unlock()
				return 0, netip.AddrPort{}, os.ErrDeadlineExceeded
			}
			if dl != m.armedAt {
				m.timer.Reset(d)
				m.armedAt = dl
			}
		}
		m.waiting = true
		m.mu.Unlock()
		<-m.notify
	}
}

// WriteToUDPAddrPort sends b to to from the listening socket, from the
// address the client's request was sent to.
func (m *MuxConn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if to == m.client {
		if sent, err := m.send.to(b); sent {
			if err != nil {
				return 0, err
			}
			return len(b), nil
		}
	}
	if err := m.l.writeTo(b, m.oob, to); err != nil {
		return 0, err
	}
	return len(b), nil
}

// SetReadDeadline sets the read deadline, as net.UDPConn's does (on the
// monotonic clock, see monoNanos).
func (m *MuxConn) SetReadDeadline(t time.Time) error {
	var v int64
	if !t.IsZero() {
		v = monoNanos(t)
		if v == 0 {
			v = -1 // still a deadline, and already past
		}
	}
	m.deadline.Store(v)
	m.wake() // another goroutine (a shutdown) moves a blocked read's deadline
	return nil
}

// wake pokes a waiting read to look again at the deadline and the
// closed flag.
func (m *MuxConn) wake() {
	m.mu.Lock()
	w := m.waiting
	m.waiting = false
	m.mu.Unlock()
	if w {
		m.poke()
	}
}

// Close removes the session from the listener; later datagrams from its
// client may start a new session.
func (m *MuxConn) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	m.l.Unregister(m)
	m.timer.Stop()
	m.wake()
	return nil
}

// monoBase is what MuxConn deadlines are measured from.
var monoBase = time.Now()

// monoNanos is t as nanoseconds after monoBase, on the monotonic clock
// when t has a reading of it (time.Now and times derived from it do), as
// the deadlines of net's sockets are: a step of the wall clock (an NTP
// correction, an operator's date) moves no deadline. A session leaves an
// earlier read deadline in place until it expires, so a deadline kept on
// the wall clock could fire hours late after a step back, or be found
// already past, again and again, after a step forward. A time without a
// monotonic reading (time.Unix(1, 0), to wake a read) compares by the
// wall clock.
func monoNanos(t time.Time) int64 { return int64(t.Sub(monoBase)) }

// The capabilities of a session's own socket that a shared one lacks.

// SendBeforeRead reports false: a single-port session sends at once.
func (m *MuxConn) SendBeforeRead([]byte) bool { return false }

// TakeSendErr returns nil (sends are never held).
func (m *MuxConn) TakeSendErr() error { return nil }

// EnableGSO returns 0: segmentation would apply to every session of the
// listening socket.
func (m *MuxConn) EnableGSO(int) int { return 0 }

// DisableGSO does nothing.
func (m *MuxConn) DisableGSO() {}

// FileSender returns nil: blocks are sent from the session's window.
func (m *MuxConn) FileSender(*os.File, int64, int, func() error, error) FileSender { return nil }
