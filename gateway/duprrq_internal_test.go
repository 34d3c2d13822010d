package gateway

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway/internal/udp"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// TestDelayedDuplicateRRQIgnored is a regression test (issue 14): in a boot
// storm the listener reads a request long after it arrived, and a client
// that retransmitted its RRQ while the first waited in the queue has
// already acknowledged DATA 1 when the listener reads the retransmission.
// That RRQ was sent before the client saw the session's first packet: it
// is a duplicate, ignored, and the transfer goes on. (It ended the running
// session as aborted and started the transfer again at DATA 1, from a
// new transfer ID that the client, past block 1, could only refuse.)
//
// The backlog is reproduced by handing the listener's request handling
// the retransmission, with the time it reached the socket, once the
// session has taken the ACK.
func TestDelayedDuplicateRRQIgnored(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789abcdef"), 70) // 1120 bytes: 3 blocks
	for _, single := range []bool{false, true} {
		t.Run(map[bool]string{false: "TID_per_session", true: "single_port"}[single], func(t *testing.T) {
			outcomes := make(chan SessionStats, 4)
			srv, addr := serveInternal(t, HandlerFunc(func(context.Context, *Request) (Content, error) {
				return BytesContent(content), nil
			}), func(s *Server) {
				s.SinglePort = single
				s.SessionStatsFunc = func(st SessionStats) { outcomes <- st }
			})
			cl := newInternalClient(t)
			rrq := wire.AppendRequest(nil, wire.OpRRQ, "f", "octet", nil)
			cl.send(addr, rrq)
			got, tid := cl.recv(t)
			if !bytes.Equal(got, wire.AppendData(nil, 1, content[:512])) {
				t.Fatalf("got %q, want DATA 1", got)
			}
			arrived := time.Now() // the retransmitted RRQ reached the socket before the ACK was sent
			cl.send(tid, wire.AppendAck(nil, 1))
			got, _ = cl.recv(t)
			if !bytes.Equal(got, wire.AppendData(nil, 2, content[512:1024])) {
				t.Fatalf("got %q, want DATA 2", got)
			}

			srv.state.mu.Lock()
			act := srv.state.active[sessionKey{client: cl.addr(), file: "f"}]
			var l *udp.Listener
			for l = range srv.state.listeners {
			}
			c := srv.state.conf
			srv.state.mu.Unlock()
			if act == nil || !act.progressed.Load() {
				t.Fatal("the session has not recorded the ACK")
			}
			srv.handlePacket(c, l, rrq, cl.addr(), netip.MustParseAddr("127.0.0.1"), arrived)

			if b, from, ok := cl.recvWithin(200 * time.Millisecond); ok {
				t.Fatalf("the duplicate drew %q from %v", b, from)
			}
			cl.send(tid, wire.AppendAck(nil, 2))
			got, _ = cl.recv(t)
			if !bytes.Equal(got, wire.AppendData(nil, 3, content[1024:])) {
				t.Fatalf("got %q, want DATA 3", got)
			}
			cl.send(tid, wire.AppendAck(nil, 3))
			select {
			case st := <-outcomes:
				if st.Outcome != OutcomeOK || st.BytesAcked != int64(len(content)) {
					t.Errorf("session: %v, %d bytes acknowledged; want ok, %d", st.Outcome, st.BytesAcked, len(content))
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no session end")
			}
			if n := srv.Stats().DuplicateRequests; n != 1 {
				t.Errorf("DuplicateRequests %d, want 1", n)
			}
			select {
			case st := <-outcomes:
				t.Errorf("a second session ran: %v", st.Outcome)
			default:
			}
		})
	}
}

// serveInternal serves h on a loopback socket until the test ends.
func serveInternal(t *testing.T, h Handler, cfg func(*Server)) (*Server, netip.AddrPort) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Handler: h, Timeout: 2 * time.Second, MinTimeout: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	if cfg != nil {
		cfg(srv)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(pc) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	for range 500 { // Serve registers its listener
		srv.state.mu.Lock()
		n := len(srv.state.listeners)
		srv.state.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return srv, pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

type internalClient struct {
	conn *net.UDPConn
	buf  []byte
}

func newInternalClient(t *testing.T) *internalClient {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &internalClient{conn: c, buf: make([]byte, 2048)}
}

func (c *internalClient) addr() netip.AddrPort { return c.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (c *internalClient) send(to netip.AddrPort, b []byte) { c.conn.WriteToUDPAddrPort(b, to) }

func (c *internalClient) recvWithin(d time.Duration) ([]byte, netip.AddrPort, bool) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.conn.ReadFromUDPAddrPort(c.buf)
	if err != nil {
		return nil, from, false
	}
	return append([]byte(nil), c.buf[:n]...), from, true
}

func (c *internalClient) recv(t *testing.T) ([]byte, netip.AddrPort) {
	t.Helper()
	b, from, ok := c.recvWithin(5 * time.Second)
	if !ok {
		t.Fatal("no packet within 5 s")
	}
	return b, from
}
