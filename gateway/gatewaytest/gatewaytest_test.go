package gatewaytest_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
	"github.com/tftpgw/tftpgw/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// one serves the same bytes for every path.
func one(b []byte) gateway.Handler {
	return gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
		return gateway.BytesContent(b), nil
	})
}

func get(t *testing.T, addr netip.AddrPort, o tftpclient.Options) []byte {
	t.Helper()
	if o.RetransmitTimeout == 0 {
		o.RetransmitTimeout = 100 * time.Millisecond
	}
	var buf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := tftpclient.Get(ctx, addr.String(), "f", &buf, o); err != nil {
		t.Fatalf("Get through %v: %v", addr, err)
	}
	return buf.Bytes()
}

func TestNewServer(t *testing.T) {
	content := gatewaytest.Pattern(3000)
	var userCalls atomic.Int64
	ts := gatewaytest.NewServer(t, one(content), func(s *gateway.Server) {
		s.Timeout = 100 * time.Millisecond
		s.SessionStatsFunc = func(gateway.SessionStats) { userCalls.Add(1) }
	})
	if a := ts.Addr(); a.Addr() != netip.MustParseAddr("127.0.0.1") || a.Port() == 0 {
		t.Fatalf("Addr() = %v, want 127.0.0.1 and a port", a)
	}
	if _, ok := ts.WaitStats(0); ok {
		t.Fatal("WaitStats(0) found stats before any session")
	}
	if got := get(t, ts.Addr(), tftpclient.Options{BlockSize: 1024, TSize: true}); !bytes.Equal(got, content) {
		t.Fatal("content differs")
	}
	st := ts.NextStats(t)
	if st.Outcome != gateway.OutcomeOK || st.BytesAcked != int64(len(content)) || st.BlockSize != 1024 {
		t.Errorf("stats: outcome %v, bytes %d, blksize %d", st.Outcome, st.BytesAcked, st.BlockSize)
	}
	if n := userCalls.Load(); n != 1 {
		t.Errorf("cfg's SessionStatsFunc called %d times, want 1", n)
	}
	if n := ts.PendingStats(); n != 0 {
		t.Errorf("PendingStats = %d after NextStats, want 0", n)
	}
	if err := ts.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := ts.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestWaitStatsTimesOut(t *testing.T) {
	ts := gatewaytest.NewServer(t, one(nil), nil)
	start := time.Now()
	if _, ok := ts.WaitStats(50 * time.Millisecond); ok {
		t.Fatal("WaitStats found stats, want none")
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 2*time.Second {
		t.Errorf("WaitStats(50ms) returned after %v", d)
	}
}

// TestProxyTransparent: with the zero config every datagram is relayed
// once, and DATA from the server is counted.
func TestProxyTransparent(t *testing.T) {
	content := gatewaytest.Pattern(10*512 + 100)
	ts := gatewaytest.NewServer(t, one(content), nil)
	p := gatewaytest.NewProxy(t, ts.Addr(), gatewaytest.ProxyConfig{})
	if a := p.Addr(); a.Addr() != netip.MustParseAddr("127.0.0.1") || a == ts.Addr() {
		t.Fatalf("proxy Addr() = %v", a)
	}
	if got := get(t, p.Addr(), tftpclient.Options{WindowSize: 4}); !bytes.Equal(got, content) {
		t.Fatal("content differs")
	}
	ts.NextStats(t)
	s := p.Stats()
	const blocks = 11
	if s.ServerData() != blocks || s.FromServer[wire.OpOACK] != 1 {
		t.Errorf("server sent %d DATA and %d OACK, want %d and 1", s.ServerData(), s.FromServer[wire.OpOACK], blocks)
	}
	for d := range 2 {
		if s.Dropped[d] != 0 || s.Duplicated[d] != 0 || s.Reordered[d] != 0 || s.Relayed[d] != s.Received[d] {
			t.Errorf("%v: %+v", gatewaytest.Direction(d), s)
		}
	}
	// RRQ, ACK 0, one ACK per window of 4 (4, 8) and the final ACK 11.
	if s.Received[gatewaytest.ClientToServer] != 5 {
		t.Errorf("client sent %d datagrams, want 5", s.Received[gatewaytest.ClientToServer])
	}
}

// TestProxyTIDs: each server transfer ID is seen behind a distinct proxy
// port, and a datagram from the wrong client port reaches the server as
// one from a wrong TID, whose ERROR 5 comes back to the stranger.
func TestProxyTIDs(t *testing.T) {
	ts := gatewaytest.NewServer(t, one(gatewaytest.Pattern(600)), nil)
	p := gatewaytest.NewProxy(t, ts.Addr(), gatewaytest.ProxyConfig{})
	a, b, stranger := udp(t), udp(t), udp(t)
	rrq := wire.AppendRequest(nil, wire.OpRRQ, "f", "octet", nil)
	a.send(p.Addr(), rrq)
	b.send(p.Addr(), rrq)
	pa, fromA := a.recv()
	pb, fromB := b.recv()
	if !isData(pa, 1) || !isData(pb, 1) {
		t.Fatalf("want DATA 1 for both, got %q and %q", pa[:4], pb[:4])
	}
	if fromA == fromB || fromA == p.Addr() || fromB == p.Addr() || fromA == ts.Addr() {
		t.Fatalf("replies from %v and %v (proxy %v, server %v): want two new proxy ports", fromA, fromB, p.Addr(), ts.Addr())
	}
	stranger.send(fromA, wire.AppendAck(nil, 1))
	e, fromE := stranger.recv()
	if code, _, err := wire.ParseError(e); fromE != fromA || err != nil || code != wire.CodeUnknownTID {
		t.Fatalf("stranger got %q from %v, want ERROR 5 from %v", e, fromE, fromA)
	}
	for _, c := range []struct {
		u    *udpClient
		from netip.AddrPort
	}{{a, fromA}, {b, fromB}} {
		c.u.send(c.from, wire.AppendAck(nil, 1))
		if d, _ := c.u.recv(); !isData(d, 2) {
			t.Fatalf("want DATA 2, got %q", d[:4])
		}
		c.u.send(c.from, wire.AppendAck(nil, 2))
	}
	for range 2 {
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
			t.Errorf("outcome %v", st.Outcome)
		}
	}
	// A reply from the listening port itself comes back from Addr().
	a.send(p.Addr(), wire.AppendRequest(nil, wire.OpWRQ, "f", "octet", nil)) // ERROR 2
	if e, from := a.recv(); from != p.Addr() || !isError(e) {
		t.Fatalf("WRQ answered with %q from %v, want ERROR from %v", e, from, p.Addr())
	}
}

// TestProxyDropCallback drops DATA 3 once: lock-step recovers with exactly
// one retransmission.
func TestProxyDropCallback(t *testing.T) {
	content := gatewaytest.Pattern(5 * 512)
	ts := gatewaytest.NewServer(t, one(content), func(s *gateway.Server) { s.Timeout = 50 * time.Millisecond })
	var dropped atomic.Bool
	p := gatewaytest.NewProxy(t, ts.Addr(), gatewaytest.ProxyConfig{
		Drop: func(dir gatewaytest.Direction, pkt []byte) bool {
			return dir == gatewaytest.ServerToClient && isData(pkt, 3) && dropped.CompareAndSwap(false, true)
		},
	})
	if got := get(t, p.Addr(), tftpclient.Options{RetransmitTimeout: time.Second}); !bytes.Equal(got, content) {
		t.Fatal("content differs")
	}
	st := ts.NextStats(t)
	s := p.Stats()
	if s.ServerData() != 7 || s.Dropped[gatewaytest.ServerToClient] != 1 || st.Retransmits != 1 {
		t.Errorf("DATA sent %d, dropped %d, retransmits %d; want 7, 1, 1", s.ServerData(), s.Dropped[gatewaytest.ServerToClient], st.Retransmits)
	}
}

// runEcho relays through a proxy to a UDP echo server: it sends n numbered
// datagrams (paced so that no socket buffer overflows) and returns the
// numbers the echo server received, in order, and those that came back.
func runEcho(t *testing.T, cfg gatewaytest.ProxyConfig, n int) (atServer, back []uint32, p *gatewaytest.Proxy) {
	t.Helper()
	echo := udp(t)
	var seen []uint32
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		for {
			echo.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			m, from, err := echo.c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // quiet for 500 ms, or closed: the run is over
			}
			seen = append(seen, binary.BigEndian.Uint32(buf[:m]))
			echo.c.WriteToUDPAddrPort(buf[:m], from)
		}
	}()
	p = gatewaytest.NewProxy(t, echo.addr(), cfg)
	c := udp(t)
	for i := range uint32(n) {
		c.send(p.Addr(), binary.BigEndian.AppendUint32(nil, i))
		if i%20 == 19 {
			time.Sleep(time.Millisecond)
		}
	}
	buf := make([]byte, 64)
	for {
		c.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		m, _, err := c.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			break
		}
		back = append(back, binary.BigEndian.Uint32(buf[:m]))
	}
	<-done
	return seen, back, p
}

func TestProxyDropRateIsDeterministic(t *testing.T) {
	const n = 1000
	cfg := gatewaytest.ProxyConfig{DropRate: 0.2, Seed: 42}
	s1, b1, p1 := runEcho(t, cfg, n)
	s2, _, _ := runEcho(t, cfg, n)
	cfg.Seed = 43
	s3, _, _ := runEcho(t, cfg, n)
	if !slices.Equal(s1, s2) {
		t.Error("same seed, different datagrams dropped")
	}
	if slices.Equal(s1, s3) {
		t.Error("different seeds, same datagrams dropped")
	}
	st := p1.Stats()
	if got := st.Dropped[gatewaytest.ClientToServer]; got < 150 || got > 250 || got != int64(n-len(s1)) {
		t.Errorf("dropped %d of %d client datagrams (echo saw %d), want about 20%%", got, n, len(s1))
	}
	if got := st.Dropped[gatewaytest.ServerToClient]; got != int64(len(s1)-len(b1)) || got == 0 {
		t.Errorf("dropped %d server datagrams, %d sent and %d back", got, len(s1), len(b1))
	}
	if !slices.IsSorted(s1) {
		t.Error("datagrams reordered without ReorderRate or Jitter")
	}
}

func TestProxyDuplicate(t *testing.T) {
	seen, back, p := runEcho(t, gatewaytest.ProxyConfig{DuplicateRate: 1}, 100)
	if len(seen) != 200 || len(back) != 400 {
		t.Errorf("echo saw %d, client got %d; want 200 and 400", len(seen), len(back))
	}
	if st := p.Stats(); st.Duplicated != [2]int64{100, 200} || st.Relayed != [2]int64{200, 400} {
		t.Errorf("stats %+v", st)
	}
}

func TestProxyReorder(t *testing.T) {
	const n = 200
	seen, _, p := runEcho(t, gatewaytest.ProxyConfig{ReorderRate: 0.2, Seed: 7}, n)
	if len(seen) != n {
		t.Fatalf("echo saw %d datagrams, want all %d", len(seen), n)
	}
	if sorted := slices.Sorted(slices.Values(seen)); slices.Equal(sorted, seen) || sorted[0] != 0 || sorted[n-1] != n-1 {
		t.Error("no datagram reordered, or some lost")
	}
	swaps := 0
	for i := 1; i < n; i++ {
		if seen[i] < seen[i-1] {
			swaps++
		}
	}
	if r := p.Stats().Reordered[gatewaytest.ClientToServer]; int64(swaps) > r || r < 20 || r > 60 {
		t.Errorf("%d inversions seen, %d datagrams reordered; want about 40", swaps, r)
	}
}

func TestProxyReorderHoldReleases(t *testing.T) {
	// A single held datagram is released after ReorderHold.
	seen, back, _ := runEcho(t, gatewaytest.ProxyConfig{ReorderRate: 1, ReorderHold: 10 * time.Millisecond}, 1)
	if len(seen) != 1 || len(back) != 1 {
		t.Errorf("echo saw %d, client got %d; want 1 and 1", len(seen), len(back))
	}
}

func TestProxyExempt(t *testing.T) {
	even := func(_ gatewaytest.Direction, b []byte) bool { return b[3]%2 == 0 }
	seen, back, p := runEcho(t, gatewaytest.ProxyConfig{DropRate: 1, Exempt: even}, 20)
	if len(seen) != 10 || len(back) != 10 {
		t.Errorf("echo saw %d, client got %d; want the 10 even datagrams both ways", len(seen), len(back))
	}
	if st := p.Stats(); st.Exempted != [2]int64{10, 10} || st.Dropped != [2]int64{10, 0} {
		t.Errorf("stats %+v", st)
	}
}

func TestProxyDelay(t *testing.T) {
	echo := udp(t)
	go func() {
		buf := make([]byte, 64)
		echo.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		m, from, err := echo.c.ReadFromUDPAddrPort(buf)
		if err == nil {
			echo.c.WriteToUDPAddrPort(buf[:m], from)
		}
	}()
	p := gatewaytest.NewProxy(t, echo.addr(), gatewaytest.ProxyConfig{Delay: 30 * time.Millisecond, Jitter: 10 * time.Millisecond})
	c := udp(t)
	start := time.Now()
	c.send(p.Addr(), []byte("ping"))
	if b, _ := c.recv(); string(b) != "ping" {
		t.Fatalf("got %q", b)
	}
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Errorf("round trip %v, want at least 2 x 30ms", d)
	}
}

// TestProxyCloseDiscardsDelayed: Close with datagrams still scheduled
// returns and leaves no goroutine (checked by TestMain).
func TestProxyCloseDiscardsDelayed(t *testing.T) {
	echo := udp(t)
	p := gatewaytest.NewProxy(t, echo.addr(), gatewaytest.ProxyConfig{Delay: time.Hour, ReorderRate: 0.5})
	c := udp(t)
	for range 10 {
		c.send(p.Addr(), []byte("x"))
	}
	time.Sleep(20 * time.Millisecond)
	p.Close()
	p.Close()
	if st := p.Stats(); st.Received[gatewaytest.ClientToServer] != 10 || st.Relayed[gatewaytest.ClientToServer] != 0 {
		t.Errorf("stats %+v", st)
	}
}

func isData(b []byte, block uint16) bool {
	n, _, err := wire.ParseData(b)
	return err == nil && n == block
}

func isError(b []byte) bool {
	_, _, err := wire.ParseError(b)
	return err == nil
}

type udpClient struct {
	t   *testing.T
	c   *net.UDPConn
	buf []byte
}

func udp(t *testing.T) *udpClient {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadBuffer(1 << 20)
	t.Cleanup(func() { c.Close() })
	return &udpClient{t: t, c: c, buf: make([]byte, 70000)}
}

func (u *udpClient) addr() netip.AddrPort { return u.c.LocalAddr().(*net.UDPAddr).AddrPort() }

func (u *udpClient) send(to netip.AddrPort, b []byte) {
	u.t.Helper()
	if _, err := u.c.WriteToUDPAddrPort(b, to); err != nil {
		u.t.Fatal(err)
	}
}

func (u *udpClient) recv() ([]byte, netip.AddrPort) {
	u.t.Helper()
	u.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := u.c.ReadFromUDPAddrPort(u.buf)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			u.t.Fatal("nothing received within 5s")
		}
		u.t.Fatal(err)
	}
	return u.buf[:n], from
}
