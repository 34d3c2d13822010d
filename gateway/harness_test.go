package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testServer is a gateway.Server on a loopback socket, with its session
// stats collected.
type testServer struct {
	srv   *gateway.Server
	addr  netip.AddrPort
	stats chan gateway.SessionStats
}

// startServer serves h on network/addr (udp4 127.0.0.1:0 when empty);
// cfg, if not nil, adjusts the server before it starts.
func startServer(t *testing.T, h gateway.Handler, cfg func(*gateway.Server)) *testServer {
	t.Helper()
	return startServerOn(t, "udp4", "127.0.0.1:0", h, cfg)
}

func startServerOn(t *testing.T, network, addr string, h gateway.Handler, cfg func(*gateway.Server)) *testServer {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ts := &testServer{stats: make(chan gateway.SessionStats, 1024), addr: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	ts.srv = &gateway.Server{
		Handler:          h,
		Timeout:          2 * time.Second,
		MinTimeout:       time.Hour, // a fixed timer: tests assert exact packet sequences
		Logger:           discardLogger(),
		SessionStatsFunc: func(s gateway.SessionStats) { ts.stats <- s },
	}
	if cfg != nil {
		cfg(ts.srv)
	}
	done := make(chan error, 1)
	go func() { done <- ts.srv.Serve(pc) }()
	t.Cleanup(func() {
		ts.srv.Close()
		if err := <-done; !errors.Is(err, gateway.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ts
}

// nextStats waits for the next finished session's stats.
func (ts *testServer) nextStats(t *testing.T) gateway.SessionStats {
	t.Helper()
	select {
	case s := <-ts.stats:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no session stats within 10s")
		return gateway.SessionStats{}
	}
}

// waitIdle waits until no session runs (clients finish before the server
// has seen their last ACK) and returns the server's stats.
func waitIdle(t *testing.T, srv *gateway.Server) gateway.ServerStats {
	t.Helper()
	for range 500 {
		if st := srv.Stats(); st.ActiveSessions == 0 {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("sessions still running after 5s")
	return gateway.ServerStats{}
}

// files serves a fixed set of files from memory.
type files map[string][]byte

func (f files) ServeTFTP(_ context.Context, r *gateway.Request) (gateway.Content, error) {
	b, ok := f[r.Path]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return gateway.BytesContent(b), nil
}

// rawClient speaks TFTP by hand so tests can assert exact bytes.
type rawClient struct {
	t      *testing.T
	conn   *net.UDPConn
	server netip.AddrPort // the listening address
	tid    netip.AddrPort // the session's address, learnt from the first reply
	buf    []byte
}

func newClient(t *testing.T, server netip.AddrPort) *rawClient {
	t.Helper()
	network, laddr := "udp4", "127.0.0.1:0"
	if server.Addr().Is6() {
		network, laddr = "udp6", "[::1]:0"
	}
	return newClientOn(t, network, laddr, server)
}

func newClientOn(t *testing.T, network, laddr string, server netip.AddrPort) *rawClient {
	t.Helper()
	a, err := net.ResolveUDPAddr(network, laddr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP(network, a)
	if err != nil {
		t.Fatalf("client socket: %v", err)
	}
	c.SetReadBuffer(8 << 20)
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, conn: c, server: server, buf: make([]byte, 70000)}
}

func (c *rawClient) sendTo(to netip.AddrPort, b []byte) {
	c.t.Helper()
	if _, err := c.conn.WriteToUDPAddrPort(b, to); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// rrq sends a read request; opts are name, value pairs.
func (c *rawClient) rrq(file, mode string, opts ...string) {
	c.t.Helper()
	c.sendTo(c.server, request(wire.OpRRQ, file, mode, opts...))
}

func request(op wire.Opcode, file, mode string, opts ...string) []byte {
	var o []wire.Option
	for i := 0; i+1 < len(opts); i += 2 {
		o = append(o, wire.Option{Name: opts[i], Value: opts[i+1]})
	}
	return wire.AppendRequest(nil, op, file, mode, o)
}

func (c *rawClient) ack(block uint16) {
	c.t.Helper()
	c.sendTo(c.tid, wire.AppendAck(nil, block))
}

func (c *rawClient) sendError(code uint16, msg string) {
	c.t.Helper()
	c.sendTo(c.tid, wire.AppendError(nil, code, msg))
}

// recv returns the next packet and its source, failing after d.
func (c *rawClient) recv(d time.Duration) ([]byte, netip.AddrPort) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.conn.ReadFromUDPAddrPort(c.buf)
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	if !c.tid.IsValid() {
		c.tid = from
	}
	return c.buf[:n], from
}

// expect reads the next packet and checks that it is exactly want and
// comes from the session's transfer ID.
func (c *rawClient) expect(want []byte) {
	c.t.Helper()
	got, from := c.recv(5 * time.Second)
	if from != c.tid {
		c.t.Fatalf("packet from %v, want the session's TID %v", from, c.tid)
	}
	if !bytes.Equal(got, want) {
		c.t.Fatalf("got packet\n%q\nwant\n%q", trim(got), trim(want))
	}
}

// expectNothing checks that no packet arrives within d.
func (c *rawClient) expectNothing(d time.Duration) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.conn.ReadFromUDPAddrPort(c.buf)
	if err == nil {
		c.t.Fatalf("unexpected packet from %v: %q", from, trim(c.buf[:n]))
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatalf("recv: %v", err)
	}
}

func trim(b []byte) []byte {
	if len(b) > 64 {
		return append(append([]byte{}, b[:64]...), "..."...)
	}
	return b
}

func data(block uint16, payload []byte) []byte { return wire.AppendData(nil, block, payload) }

func oack(opts ...string) []byte {
	var o []wire.Option
	for i := 0; i+1 < len(opts); i += 2 {
		o = append(o, wire.Option{Name: opts[i], Value: opts[i+1]})
	}
	return wire.AppendOACK(nil, o)
}

func errPkt(code uint16, msg string) []byte { return wire.AppendError(nil, code, msg) }

// pattern returns n bytes that differ from block to block.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/512)
	}
	return b
}

var (
	fsErrNotExist   = fs.ErrNotExist
	fsErrPermission = fs.ErrPermission
)
