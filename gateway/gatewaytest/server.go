// Package gatewaytest provides helpers for testing code that uses package
// gateway, in the manner of net/http/httptest:
//
//   - [NewServer] runs a [gateway.Server] on a loopback port and collects
//     the stats of its sessions; [FixedTimer] makes its retransmissions
//     predictable, for tests of exact packet sequences.
//   - [NewClient] is a scripted client that sends and expects packets one
//     by one, built with [ReadRequest], [Data], [OACK], [ErrorPacket] and
//     the like.
//   - [NewProxy] puts a lossy, duplicating, reordering and delaying UDP
//     relay between a client and a server.
//   - [Files] serves files from memory and [Pattern] makes their content.
//   - [FreePortRange] picks free ports for a server's PortRange.
//
// Everything listens on 127.0.0.1 with an ephemeral port, unless a test
// asks for another address with [NewServerOn] or [NewClientOn] (another
// loopback address, ::1, or a wildcard for tests of address handling).
// Every helper calls t.Helper, fails the test on an error rather than
// panicking, waits a bounded time, and stops what it started with
// t.Cleanup (or Close, which may be called earlier and more than once),
// leaving no goroutine behind.
package gatewaytest

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
)

// DefaultStatsWait is how long [Server.NextStats] waits for a session to
// end.
const DefaultStatsWait = 10 * time.Second

// Server is a [gateway.Server] serving on 127.0.0.1 (or the address given
// to [NewServerOn]) with an ephemeral port, whose finished sessions are
// queued for [Server.NextStats].
type Server struct {
	// Config is the server. Its fields must not be changed: it is already
	// serving. Tests call its methods (Stats, Shutdown, Close, or Serve on
	// another socket).
	Config *gateway.Server

	addr netip.AddrPort
	done chan error // Serve's result

	mu     sync.Mutex
	queue  []gateway.SessionStats
	notify chan struct{} // signalled (capacity 1) when queue grows

	closeOnce sync.Once
	serveErr  error
}

// NewServer starts a server for h on 127.0.0.1:0. The server discards its
// log and keeps the gateway defaults otherwise; the cfg functions (nil
// ones are skipped) adjust it, in order, before it starts. If they set
// SessionStatsFunc, that function is still called, before the stats are
// queued. The server is closed by t.Cleanup; Serve returning anything but
// [gateway.ErrServerClosed] fails t.
func NewServer(t testing.TB, h gateway.Handler, cfg ...func(*gateway.Server)) *Server {
	t.Helper()
	pc, err := listenLoopback()
	if err != nil {
		t.Fatalf("gatewaytest: listen: %v", err)
	}
	return serve(t, pc, h, cfg)
}

// NewServerOn is like [NewServer] with the server listening on network
// ("udp", "udp4" or "udp6") and addr, for tests of address handling: IPv6
// ("[::1]:0"), a wildcard ("0.0.0.0:0", "[::]:0") or IPv4-mapped
// addresses. The port should be 0.
func NewServerOn(t testing.TB, network, addr string, h gateway.Handler, cfg ...func(*gateway.Server)) *Server {
	t.Helper()
	a, err := net.ResolveUDPAddr(network, addr)
	if err != nil {
		t.Fatalf("gatewaytest: listen address: %v", err)
	}
	pc, err := net.ListenUDP(network, a)
	if err != nil {
		t.Fatalf("gatewaytest: listen: %v", err)
	}
	_ = pc.SetReadBuffer(4 << 20) // best effort, as for NewServer
	return serve(t, pc, h, cfg)
}

// FixedTimer is a cfg function for [NewServer] that fixes the server's
// retransmission timeout at 2 seconds (Timeout 2 s, and MinTimeout an hour
// so that the adaptive timer never goes below Timeout): a test that
// asserts an exact packet sequence sees no retransmission unless it waits
// for one. A later cfg function may set another Timeout; it stays fixed.
func FixedTimer(s *gateway.Server) {
	s.Timeout = 2 * time.Second
	s.MinTimeout = time.Hour
}

func serve(t testing.TB, pc *net.UDPConn, h gateway.Handler, cfg []func(*gateway.Server)) *Server {
	t.Helper()
	s := &Server{
		addr:   pc.LocalAddr().(*net.UDPAddr).AddrPort(),
		done:   make(chan error, 1),
		notify: make(chan struct{}, 1),
	}
	srv := &gateway.Server{
		Handler: h,
		Logger:  slog.New(slog.DiscardHandler),
	}
	for _, f := range cfg {
		if f != nil {
			f(srv)
		}
	}
	user := srv.SessionStatsFunc
	srv.SessionStatsFunc = func(st gateway.SessionStats) {
		if user != nil {
			user(st)
		}
		s.push(st)
	}
	s.Config = srv
	go func() { s.done <- srv.Serve(pc) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("gatewaytest: %v", err)
		}
	})
	return s
}

// Addr returns the address the server listens on: 127.0.0.1 and its port
// for [NewServer]; for [NewServerOn], the address asked for (a wildcard
// stays a wildcard) and the port.
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Close closes the server at once (see [gateway.Server.Close]) and waits for
// Serve to return. It returns an error if Serve ended with anything but
// [gateway.ErrServerClosed]. Calling it again returns the same result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.Config.Close()
		if err := <-s.done; !errors.Is(err, gateway.ErrServerClosed) {
			s.serveErr = errors.New("Serve returned " + errString(err) + ", want ErrServerClosed")
		}
	})
	return s.serveErr
}

// loopback is 127.0.0.1, the only address this package listens on.
var loopback = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// listenLoopback opens a UDP socket on 127.0.0.1 with an ephemeral port
// and a large receive buffer (best effort: the kernel may cap it), so that
// bursts of windows are not lost on the loopback.
func listenLoopback() (*net.UDPConn, error) {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		return nil, err
	}
	_ = c.SetReadBuffer(4 << 20)
	return c, nil
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

func (s *Server) push(st gateway.SessionStats) {
	s.mu.Lock()
	s.queue = append(s.queue, st)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// NextStats returns the stats of the next session to finish (in the order
// they finished), waiting up to [DefaultStatsWait]; it fails t if none
// comes.
func (s *Server) NextStats(t testing.TB) gateway.SessionStats {
	t.Helper()
	st, ok := s.WaitStats(DefaultStatsWait)
	if !ok {
		t.Fatalf("gatewaytest: no session ended within %v", DefaultStatsWait)
	}
	return st
}

// WaitStats is like NextStats but waits at most d and reports whether a
// session ended in time; d <= 0 only takes what is already queued.
func (s *Server) WaitStats(d time.Duration) (gateway.SessionStats, bool) {
	var timer <-chan time.Time
	if d > 0 {
		tm := time.NewTimer(d)
		defer tm.Stop()
		timer = tm.C
	}
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			st := s.queue[0]
			s.queue[0] = gateway.SessionStats{}
			s.queue = s.queue[1:]
			s.mu.Unlock()
			return st, true
		}
		s.mu.Unlock()
		if timer == nil {
			return gateway.SessionStats{}, false
		}
		select {
		case <-s.notify:
		case <-timer:
			timer = nil // one last look at the queue
		}
	}
}

// DefaultIdleWait is how long [Server.WaitIdle] waits for sessions to end.
const DefaultIdleWait = 5 * time.Second

// WaitIdle waits up to [DefaultIdleWait] until no session runs and returns
// the server's stats; it fails t if sessions still run. A client may be
// done before the server has seen its last ACK: tests that read server
// counters after a transfer wait for this.
func (s *Server) WaitIdle(t testing.TB) gateway.ServerStats {
	t.Helper()
	const poll = 10 * time.Millisecond
	for range int(DefaultIdleWait / poll) {
		if st := s.Config.Stats(); st.ActiveSessions == 0 {
			return st
		}
		time.Sleep(poll)
	}
	t.Fatalf("gatewaytest: sessions still running after %v", DefaultIdleWait)
	return gateway.ServerStats{}
}

// PendingStats returns how many finished sessions' stats are queued.
func (s *Server) PendingStats() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}
