package gateway

import (
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"
)

// muxConn is a session's connection in single-port mode: it sends from
// the listening socket and receives what the listener hands it for its
// client's address and port. Neither direction allocates per packet.
type muxConn struct {
	l      *listener
	act    *activeSession
	client netip.AddrPort
	oob    []byte // makes replies leave from the request's address

	in       chan muxPacket
	wake     chan struct{} // a new deadline, or Close, while a read waits
	waiting  atomic.Bool   // a read is (about to be) blocked
	deadline atomic.Int64  // monoNanos of the read deadline; 0: none
	closed   atomic.Bool
	// timer stays armed across reads for the deadline armedAt (read loop
	// only), and is reset only when the deadline moves: a session moves it
	// seldom (see session.armed), and a reset per block was a runtime
	// timer operation per packet.
	timer   *time.Timer
	armedAt int64

	send muxSender // sends to client through the listening socket's descriptor
}

// muxPacket is one datagram from the client: ACKs and ERRORs, so longer
// ones are cut like the session socket's receive buffer cuts them.
type muxPacket struct {
	n int
	b [recvBufSize]byte
}

// muxQueue is how many datagrams may wait for a session; more are dropped,
// as a full socket buffer would drop them.
const muxQueue = 8

// register adds a single-port session for client, or returns nil if one
// runs already.
func (l *listener) register(client netip.AddrPort, from netip.Addr, act *activeSession) *muxConn {
	l.muxMu.Lock()
	defer l.muxMu.Unlock()
	if _, ok := l.mux[client]; ok {
		return nil
	}
	m := &muxConn{
		l:      l,
		act:    act,
		client: client,
		oob:    l.sourceOOB(from),
		in:     make(chan muxPacket, muxQueue),
		wake:   make(chan struct{}, 1),
		timer:  time.NewTimer(time.Hour),
	}
	m.timer.Stop()
	m.send.init(l, client, m.oob)
	l.mux[client] = m
	return m
}

// deliver hands a datagram to the single-port session of src and returns
// that session, or nil if there is none. Requests are not delivered: the
// caller decides between a duplicate and a new transfer.
func (l *listener) deliver(src netip.AddrPort, b []byte, isRequest bool) *muxConn {
	l.muxMu.RLock()
	m := l.mux[src]
	l.muxMu.RUnlock()
	if m == nil || isRequest {
		return m
	}
	var p muxPacket
	p.n = copy(p.b[:], b)
	select {
	case m.in <- p:
	default: // the session is behind: drop, as a full socket buffer would
	}
	return m
}

// unregister stops delivering to m, whose client started a new session.
func (l *listener) unregister(m *muxConn) {
	l.muxMu.Lock()
	if l.mux[m.client] == m {
		delete(l.mux, m.client)
	}
	l.muxMu.Unlock()
}

// readQueued returns a datagram the listener has handed over, without
// waiting.
func (m *muxConn) readQueued(b []byte) (int, netip.AddrPort, bool) {
	select {
	case p := <-m.in:
		return copy(b, p.b[:p.n]), m.client, true
	default:
		return 0, netip.AddrPort{}, false
	}
}

func (m *muxConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		if m.closed.Load() {
			return 0, netip.AddrPort{}, net.ErrClosed
		}
		select { // a waiting datagram wins over an expired deadline check
		case p := <-m.in:
			return copy(b, p.b[:p.n]), m.client, nil
		default:
		}
		// waiting is set before the deadline is read: a SetReadDeadline
		// after that read finds it set and wakes this one.
		m.waiting.Store(true)
		var wait <-chan time.Time
		if dl := m.deadline.Load(); dl != 0 {
			d := time.Duration(dl - monoNanos(time.Now()))
			if d <= 0 {
				m.waiting.Store(false)
				return 0, netip.AddrPort{}, os.ErrDeadlineExceeded
			}
			if dl != m.armedAt {
				m.timer.Reset(d) // also drops a fire for an earlier deadline
				m.armedAt = dl
			}
			wait = m.timer.C
		}
		select {
		case p := <-m.in:
			m.waiting.Store(false)
			return copy(b, p.b[:p.n]), m.client, nil
		case <-m.wake:
		case <-wait:
			m.armedAt = 0 // fired: the loop compares the deadline with the time
		}
		m.waiting.Store(false)
	}
}

func (m *muxConn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
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

func (m *muxConn) SetReadDeadline(t time.Time) error {
	var v int64
	if !t.IsZero() {
		v = monoNanos(t)
		if v == 0 {
			v = -1 // still a deadline, and already past
		}
	}
	m.deadline.Store(v)
	if m.waiting.Load() { // another goroutine (a shutdown) moves a blocked read's deadline
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// Close removes the session from the listener; later datagrams from its
// client may start a new session.
func (m *muxConn) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	m.l.unregister(m)
	m.timer.Stop()
	select {
	case m.wake <- struct{}{}:
	default:
	}
	return nil
}

// monoBase is what muxConn deadlines are measured from.
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
