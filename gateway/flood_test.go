package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// Floods and spoofed sources: what a hostile source can make the server
// do. Junk, read requests and write requests at full speed, and requests
// whose source never answers, are bounded in sessions, replies and bytes
// reflected. Every flood is bounded in packets and in time.

// legitAddr is the legitimate client's source address, distinct from the
// abuser's 127.0.0.1 so that per-client limits tell them apart.
var legitAddr = netip.MustParseAddr("127.0.0.9")

// anyFile serves content for every path, so that each request of a flood
// can name a file of its own (a new session key) and still hold a session.
func anyFile(content []byte) gateway.Handler {
	return gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
		return gateway.BytesContent(content), nil
	})
}

// udpDrops returns the kernel's drop counter of the IPv4 UDP socket bound
// to port (/proc/net/udp, last column): datagrams lost because its receive
// buffer was full. ok is false where it cannot be read.
func udpDrops(port uint16) (drops int64, ok bool) {
	f, err := os.Open("/proc/net/udp")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	suffix := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 13 || !strings.HasSuffix(fields[1], suffix) {
			continue
		}
		n, err := strconv.ParseInt(fields[len(fields)-1], 10, 64)
		return n, err == nil
	}
	return 0, false
}

// junk returns the i-th packet of a garbage flood: none of them is a
// parseable request, so each must be counted as malformed and none may be
// answered.
func junk(r *rand.Rand, i int) []byte {
	switch i % 8 {
	case 0: // random bytes, any opcode but RRQ and WRQ
		b := make([]byte, 4+r.IntN(600))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		if op := binary.BigEndian.Uint16(b); op == 1 || op == 2 {
			b[0], b[1] = 0xff, 0xff
		}
		return b
	case 1: // short packets, 0..3 bytes (an empty datagram included)
		b := make([]byte, r.IntN(4))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		return b
	case 2: // DATA to the listening port
		return wire.AppendData(nil, uint16(r.Uint32()), make([]byte, r.IntN(513)))
	case 3: // ACK to the listening port
		return wire.AppendAck(nil, uint16(r.Uint32()))
	case 4: // ERROR to the listening port
		return wire.AppendError(nil, uint16(r.IntN(9)), "go away")
	case 5: // OACK to the listening port
		return []byte("\x00\x06blksize\x001468\x00")
	case 6: // RRQs that do not parse: unterminated, empty file name, empty mode, too long
		switch r.IntN(4) {
		case 0:
			return []byte("\x00\x01pxelinux.0")
		case 1:
			return []byte("\x00\x01\x00octet\x00")
		case 2:
			return []byte("\x00\x01f\x00\x00")
		default:
			return append(append([]byte("\x00\x01"), bytes.Repeat([]byte("a"), 600)...), "\x00octet\x00"...)
		}
	default: // WRQ that does not parse
		return []byte("\x00\x02f\x00octet")
	}
}

// TestGarbageFlood: a flood of junk at the listening port, from one
// source, neither disturbs a concurrent windowed download from another
// address nor draws a single reply, and every junk datagram that reached
// the socket is counted in MalformedPackets.
func TestGarbageFlood(t *testing.T) {
	const (
		maxPackets = 100_000
		maxTime    = 3 * time.Second
	)
	content := gatewaytest.Pattern(2 << 20)
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"big": content}, gatewaytest.FixedTimer, func(s *gateway.Server) {
		s.Timeout, s.MinTimeout = time.Second, 0 // adaptive: a lost block costs little
	})
	flooder := gatewaytest.NewClient(t, ts.Addr())

	var sent atomic.Int64
	stop := make(chan struct{})
	floodDone := make(chan error, 1)
	floodStart := time.Now()
	go func() {
		r := rand.New(rand.NewPCG(1, 2))
		deadline := floodStart.Add(maxTime)
		for i := 0; i < maxPackets; i++ {
			select {
			case <-stop:
				floodDone <- nil
				return
			default:
			}
			if i%256 == 0 && time.Now().After(deadline) {
				break
			}
			if _, err := flooder.Conn().WriteToUDPAddrPort(junk(r, i), ts.Addr()); err != nil {
				floodDone <- err
				return
			}
			sent.Add(1)
		}
		floodDone <- nil
	}()

	// The legitimate download starts once the flood runs.
	for sent.Load() < 1000 {
		time.Sleep(time.Millisecond)
	}
	// Downloads repeat while the flood runs (at least one, at most 20).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		downloads int
		packets   int64
		took      time.Duration
	)
	for downloads == 0 || downloads < 20 && sent.Load() < maxPackets && time.Since(floodStart) < maxTime {
		var got bytes.Buffer
		res, err := tftpclient.Get(ctx, ts.Addr().String(), "big", &got, tftpclient.Options{
			WindowSize: 8, LocalAddr: legitAddr, RetransmitTimeout: 200 * time.Millisecond, Retries: 20,
		})
		if err != nil {
			close(stop)
			<-floodDone
			t.Fatalf("legitimate Get %d during the flood: %v (%d bytes)", downloads+1, err, res.Size)
		}
		if !bytes.Equal(got.Bytes(), content) {
			close(stop)
			<-floodDone
			t.Fatalf("legitimate Get %d: %d bytes, not the %d bytes served", downloads+1, got.Len(), len(content))
		}
		downloads++
		packets += res.Packets
		took += res.Duration
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK || st.RemoteAddr.Addr() != legitAddr {
			t.Errorf("legitimate session: outcome %v from %v", st.Outcome, st.RemoteAddr)
		}
	}
	floodRunning := sent.Load() < maxPackets && time.Since(floodStart) < maxTime
	close(stop)
	if ferr := <-floodDone; ferr != nil {
		t.Fatalf("flood: %v", ferr)
	}

	// Junk is never answered.
	flooder.ExpectNothing(200 * time.Millisecond)

	// Every junk datagram was either counted or dropped by the kernel
	// before the server could read it (its receive buffer was full). The
	// drop counter may also hold the legitimate client's lost RRQs.
	n := sent.Load()
	drops, haveDrops := udpDrops(ts.Addr().Port())
	var malformed int64
	for range 300 {
		malformed = ts.Config.Stats().MalformedPackets
		drops, haveDrops = udpDrops(ts.Addr().Port())
		if malformed+drops >= n {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("flood: %d junk datagrams sent (still running after the last download: %v); %d counted malformed, %d dropped by the kernel; %d downloads of 2 MiB in %v",
		n, floodRunning, malformed, drops, downloads, took.Round(time.Millisecond))
	if malformed <= 0 || malformed > n {
		t.Errorf("MalformedPackets = %d, want 1..%d", malformed, n)
	}
	if haveDrops {
		if malformed+drops < n || malformed+drops > n+packets {
			t.Errorf("malformed %d + kernel drops %d = %d, want the %d datagrams sent", malformed, drops, malformed+drops, n)
		}
	} else if malformed < n/10 {
		t.Errorf("MalformedPackets = %d of %d sent", malformed, n)
	}
	if st := ts.WaitIdle(t); st.WriteRequests != 0 || st.BusyRefusals != 0 || len(st.ErrorsSent) != 0 {
		t.Errorf("junk drew replies: %+v", st)
	}
}

// floodSocket is one source port of a request flood; it counts what comes
// back.
type floodSocket struct {
	conn              *net.UDPConn
	data, busy, other atomic.Int64
	bytesIn           atomic.Int64
	dataFrom          sync.Map     // session TIDs that sent DATA
	firstOther        atomic.Value // []byte: the first packet counted in other
	readerDone        chan struct{}
	busyPkt           []byte
}

func newFloodSocket(t *testing.T, laddr string) *floodSocket {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(laddr)))
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadBuffer(1 << 20)
	fs := &floodSocket{conn: c, readerDone: make(chan struct{}), busyPkt: gatewaytest.ErrorPacket(0, "server busy")}
	go fs.read()
	t.Cleanup(func() {
		c.Close()
		<-fs.readerDone
	})
	return fs
}

func (fs *floodSocket) read() {
	defer close(fs.readerDone)
	buf := make([]byte, 70000)
	for {
		n, from, err := fs.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		b := buf[:n]
		fs.bytesIn.Add(int64(n))
		switch {
		case isCutError(b, fs.busyPkt):
			fs.busy.Add(1)
		case n >= 4 && binary.BigEndian.Uint16(b) == 3 && binary.BigEndian.Uint16(b[2:]) == 1:
			fs.data.Add(1)
			fs.dataFrom.Store(from, true)
		default:
			fs.firstOther.CompareAndSwap(nil, append([]byte(nil), b...))
			fs.other.Add(1)
		}
	}
}

func (fs *floodSocket) sessions() int {
	n := 0
	fs.dataFrom.Range(func(any, any) bool { n++; return true })
	return n
}

// TestRRQFlood: read requests from one address at full speed, from many
// ports and for ever new file names (each a new session key), are bounded
// by the per-client rate limit and by MaxSessionsPerClient; every refusal
// is an ERROR 0 "server busy", counted in BusyRefusals; and a client at
// another address is served meanwhile.
func TestRRQFlood(t *testing.T) {
	const (
		ports      = 16
		maxPackets = 20_000
		maxTime    = time.Second
	)
	content := gatewaytest.Pattern(4096)
	for _, tc := range []struct {
		name      string
		rate      float64
		perClient int
		bound     func(elapsed time.Duration) int // most sessions the flood may get
	}{
		// The burst, plus what refills while the flood and its queue last.
		{"rate_limit", 20, -1, func(d time.Duration) int { return 2*20 + int(20*(d.Seconds()+0.5)) }},
		{"max_sessions_per_client", -1, 8, func(time.Duration) int { return 8 }},
		{"both", 100, 8, func(time.Duration) int { return 8 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := gatewaytest.NewServer(t, anyFile(content), gatewaytest.FixedTimer, func(s *gateway.Server) {
				s.ClientRequestRate, s.MaxSessionsPerClient = tc.rate, tc.perClient
				s.Timeout, s.Retries = 30*time.Second, 1 // flood sessions hold until Close
			})
			socks := make([]*floodSocket, ports)
			for i := range socks {
				socks[i] = newFloodSocket(t, "127.0.0.1:0")
			}
			legit := make(chan error, 1)
			var sent int
			start := time.Now()
			for i := 0; i < maxPackets && time.Since(start) < maxTime; i++ {
				if i == 500 {
					go func() {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						var got bytes.Buffer
						_, err := tftpclient.Get(ctx, ts.Addr().String(), "legit", &got, tftpclient.Options{
							BlockSize: 1468, LocalAddr: legitAddr, RetransmitTimeout: 200 * time.Millisecond, Retries: 20,
						})
						if err == nil && !bytes.Equal(got.Bytes(), content) {
							err = fmt.Errorf("got %d bytes, want %d", got.Len(), len(content))
						}
						legit <- err
					}()
				}
				fs := socks[i%ports]
				if _, err := fs.conn.WriteToUDPAddrPort(gatewaytest.ReadRequest("f"+strconv.Itoa(i), "octet"), ts.Addr()); err != nil {
					t.Fatalf("send: %v", err)
				}
				sent++
			}
			elapsed := time.Since(start)
			if err := <-legit; err != nil {
				t.Errorf("client at %v during the flood: %v", legitAddr, err)
			}

			// Wait until every reply the server sent has been read.
			var sessions, busy, other int64
			var st gateway.ServerStats
			for range 300 {
				sessions, busy, other = 0, 0, 0
				for _, fs := range socks {
					sessions += int64(fs.sessions())
					busy += fs.busy.Load()
					other += fs.other.Load()
				}
				st = ts.Config.Stats()
				if busy == st.BusyRefusals && sessions == st.ActiveSessions {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Logf("%d RRQs in %v: %d sessions, %d busy refusals (server: %d active, %d busy, %d ok)",
				sent, elapsed.Round(time.Millisecond), sessions, busy, st.ActiveSessions, st.BusyRefusals, st.Sessions[gateway.OutcomeOK])
			if bound := tc.bound(elapsed); sessions > int64(bound) || sessions == 0 {
				t.Errorf("the flood got %d sessions, want 1..%d", sessions, bound)
			}
			if busy == 0 || busy != st.BusyRefusals {
				t.Errorf("%d \"server busy\" received, BusyRefusals %d", busy, st.BusyRefusals)
			}
			if sessions != st.ActiveSessions {
				t.Errorf("%d sessions seen by the flood, %d active on the server", sessions, st.ActiveSessions)
			}
			if sessions+busy > int64(sent) {
				t.Errorf("%d sessions + %d refusals for %d requests", sessions, busy, sent)
			}
			if other != 0 {
				for _, fs := range socks {
					if p, ok := fs.firstOther.Load().([]byte); ok {
						t.Errorf("%d unexpected packets, one is %q", other, gatewaytest.Abbrev(p))
						break
					}
				}
			}
			if st.Sessions[gateway.OutcomeOK] != 1 {
				t.Errorf("%d sessions ok, want the legitimate one", st.Sessions[gateway.OutcomeOK])
			}
		})
	}
}

// TestReflectionBound: a request with a spoofed source (that never
// acknowledges anything) draws at most Retries+1 copies of the first
// packet: the OACK if options were asked for, never DATA beyond it, and
// with windowsize 64 never a window; and per-client limits cap how many
// sessions one spoofed address can open.
func TestReflectionBound(t *testing.T) {
	const retries = 3
	content := gatewaytest.Pattern(1 << 20)
	cfg := func(perClient int) func(*gateway.Server) {
		return func(s *gateway.Server) {
			s.Timeout, s.Retries = 50*time.Millisecond, retries // fixed timer (MinTimeout is an hour)
			s.MaxSessionsPerClient = perClient
		}
	}
	// collect reads what a spoofed socket receives until the server is
	// idle and nothing more comes.
	collect := func(t *testing.T, ts *gatewaytest.Server, c *gatewaytest.Client) (pkts [][]byte) {
		t.Helper()
		ts.WaitIdle(t)
		for {
			b, _, ok := c.TryRecv(100 * time.Millisecond)
			if !ok {
				return pkts
			}
			pkts = append(pkts, append([]byte(nil), b...))
		}
	}
	total := func(pkts [][]byte) (n int) {
		for _, p := range pkts {
			n += len(p)
		}
		return n
	}

	oackPkt := gatewaytest.OACK("blksize", "1468", "windowsize", "64")
	dataPkt := gatewaytest.Data(1, content[:512])
	budget := (retries + 1) * max(len(oackPkt), len(dataPkt))

	t.Run("options_draw_only_OACKs", func(t *testing.T) {
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, cfg(0))
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet", "blksize", "1468", "windowsize", "64")
		pkts := collect(t, ts, c)
		for _, p := range pkts {
			if !bytes.Equal(p, oackPkt) {
				t.Fatalf("got %q, want only the OACK %q", gatewaytest.Abbrev(p), oackPkt)
			}
		}
		if len(pkts) == 0 || len(pkts) > retries+1 {
			t.Errorf("%d OACKs, want 1..%d", len(pkts), retries+1)
		}
		if n := total(pkts); n > budget {
			t.Errorf("%d bytes reflected, budget %d", n, budget)
		}
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeTimeout || st.BytesSent != 0 {
			t.Errorf("session: outcome %v, %d bytes of DATA sent", st.Outcome, st.BytesSent)
		}
	})
	t.Run("no_options_draw_only_DATA_1", func(t *testing.T) {
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, cfg(0))
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		pkts := collect(t, ts, c)
		for _, p := range pkts {
			if !bytes.Equal(p, dataPkt) {
				t.Fatalf("got %q, want only DATA 1 (516 bytes)", gatewaytest.Abbrev(p))
			}
		}
		if len(pkts) == 0 || len(pkts) > retries+1 {
			t.Errorf("%d DATA 1, want 1..%d", len(pkts), retries+1)
		}
		if n := total(pkts); n > budget {
			t.Errorf("%d bytes reflected, budget %d", n, budget)
		}
		ts.NextStats(t)
	})
	t.Run("per_client_cap", func(t *testing.T) {
		const perClient, requests = 4, 10
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, cfg(perClient))
		busy := gatewaytest.ErrorPacket(0, "server busy")
		var sessions, refusals, bytesOut int
		var clients []*gatewaytest.Client
		for range requests {
			c := gatewaytest.NewClient(t, ts.Addr()) // 127.0.0.1, a new port each
			c.RRQ("f", "octet", "blksize", "1468", "windowsize", "64")
			clients = append(clients, c)
		}
		ts.WaitIdle(t)
		for _, c := range clients {
			pkts := collect(t, ts, c)
			bytesOut += total(pkts)
			switch {
			case len(pkts) == 1 && bytes.Equal(pkts[0], busy):
				refusals++
			case len(pkts) >= 1 && len(pkts) <= retries+1 && bytes.Equal(pkts[0], oackPkt):
				sessions++
				for _, p := range pkts {
					if !bytes.Equal(p, oackPkt) {
						t.Errorf("session sent %q, want only OACKs", gatewaytest.Abbrev(p))
					}
				}
			default:
				t.Errorf("a spoofed port got %d packets, the first %q", len(pkts), gatewaytest.Abbrev(pkts[0]))
			}
		}
		if sessions > perClient || sessions+refusals != requests {
			t.Errorf("%d sessions and %d refusals for %d requests, want at most %d sessions", sessions, refusals, requests, perClient)
		}
		if st := ts.Config.Stats(); st.BusyRefusals != int64(refusals) {
			t.Errorf("BusyRefusals %d, want %d", st.BusyRefusals, refusals)
		}
		if limit := perClient*budget + (requests-perClient)*len(busy); bytesOut > limit {
			t.Errorf("%d bytes reflected to one address, budget %d", bytesOut, limit)
		}
		for range sessions {
			ts.NextStats(t)
		}
	})
}

// isCutError reports whether b is the ERROR want, its message possibly cut
// (the listening port never answers with more bytes than it received).
func isCutError(b, want []byte) bool {
	return len(b) >= 5 && len(b) <= len(want) && b[len(b)-1] == 0 &&
		bytes.Equal(b[:len(b)-1], want[:len(b)-1])
}

// TestWRQFloodNoAmplification: write requests are refused on the
// listening port with one small ERROR each, never more datagrams than
// came in nor more bytes.
func TestWRQFloodNoAmplification(t *testing.T) {
	const requests = 2000
	reply := gatewaytest.ErrorPacket(2, "read-only server")
	for _, tc := range []struct {
		name string
		wrq  func(i int) []byte
	}{
		// What PXE clients and tftp(1) send: a path and a mode.
		{"typical", func(i int) []byte {
			return gatewaytest.WriteRequest(fmt.Sprintf("pxelinux.cfg/01-52-54-00-%02x-%02x-%02x", i>>16&0xff, i>>8&0xff, i&0xff), "octet")
		}},
		// The shortest WRQ that parses: a one-byte name and a one-byte mode.
		{"shortest", func(i int) []byte { return gatewaytest.WriteRequest(string(rune('a'+i%26)), "o") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := gatewaytest.NewServer(t, gatewaytest.Files{}, gatewaytest.FixedTimer)
			fs := newFloodSocket(t, "127.0.0.1:0")
			var in int
			for i := range requests {
				b := tc.wrq(i)
				if _, err := fs.conn.WriteToUDPAddrPort(b, ts.Addr()); err != nil {
					t.Fatalf("send: %v", err)
				}
				in += len(b)
				if i%64 == 63 {
					time.Sleep(time.Millisecond) // let the server keep up: count, not loss, is measured
				}
			}
			// Wait until every WRQ was read by the server (or dropped by the
			// kernel) and every reply was read.
			var st gateway.ServerStats
			for range 300 {
				st = ts.Config.Stats()
				drops, _ := udpDrops(ts.Addr().Port())
				if st.WriteRequests+drops >= requests && fs.other.Load() >= st.WriteRequests {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			replies, out := fs.other.Load(), fs.bytesIn.Load()
			t.Logf("%d WRQs, %d bytes in; %d replies, %d bytes out (%.2fx); server counted %d",
				requests, in, replies, out, float64(out)/float64(in), st.WriteRequests)
			if replies > requests || replies != st.WriteRequests {
				t.Errorf("%d replies to %d WRQs (server counted %d)", replies, requests, st.WriteRequests)
			}
			if p, ok := fs.firstOther.Load().([]byte); ok && !isCutError(p, reply) {
				t.Errorf("reply %q, want %q", p, reply)
			}
			if st.ActiveSessions != 0 || len(st.Sessions) != 0 {
				t.Errorf("WRQs started sessions: %+v", st)
			}
			if out > int64(in) {
				t.Errorf("amplification: %d bytes out for %d bytes in; each %d-byte reply (%q) answers a WRQ of %d bytes",
					out, in, len(reply), reply, len(tc.wrq(0)))
			}
		})
	}
}
