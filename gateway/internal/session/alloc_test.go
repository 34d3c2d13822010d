package session

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway/internal/udp"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// ackingConn is a session socket whose client acknowledges every window
// at once, so a whole transfer runs without the network.
type ackingConn struct {
	window  int
	blksize int
	inWin   int
	pending []byte // the ACK to deliver next, nil if none
	ackBuf  [4]byte
}

func (c *ackingConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	blk, payload, err := wire.ParseData(b)
	if err != nil {
		return len(b), nil
	}
	c.inWin++
	if c.inWin == c.window || len(payload) < c.blksize {
		c.pending = wire.AppendAck(c.ackBuf[:0], blk)
		c.inWin = 0
	}
	return len(b), nil
}

func (c *ackingConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	if c.pending == nil {
		return 0, netip.AddrPort{}, os.ErrDeadlineExceeded
	}
	n := copy(b, c.pending)
	c.pending = nil
	return n, testClient, nil
}

func (c *ackingConn) SetReadDeadline(time.Time) error { return nil }
func (c *ackingConn) Close() error                    { return nil }

// The capabilities of udp.Conn, absent.
func (c *ackingConn) SendBeforeRead([]byte) bool { return false }
func (c *ackingConn) TakeSendErr() error         { return nil }
func (c *ackingConn) ReadQueued([]byte) (int, netip.AddrPort, bool) {
	return 0, netip.AddrPort{}, false
}
func (c *ackingConn) EnableGSO(int) int { return 0 }
func (c *ackingConn) DisableGSO()       {}
func (c *ackingConn) FileSender(*os.File, int64, int, func() error, error) udp.FileSender {
	return nil
}
func (c *ackingConn) Offload(udp.Responder) bool { return false }

var testClient = netip.MustParseAddrPort("127.0.0.1:1234")

// zeros is endless content.
type zeros struct{ left int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.left == 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), z.left))
	clear(p[:n])
	z.left -= int64(n)
	return n, nil
}

// testHost is a Host without limits.
type testHost struct{}

func (testHost) FitWindow(want, _ int) int { return want }
func (testHost) GetWindow(n int) *[]byte   { b := make([]byte, n); return &b }
func (testHost) PutWindow(*[]byte)         {}
func (testHost) Busy()                     {}
func (testHost) Answered(int)              {}
func (testHost) Unanswered(int) bool       { return true }
func (testHost) StrayPacket(bool)          {}
func (testHost) Stopping() bool            { return false }
func (testHost) Draining() bool            { return false }
func (testHost) ErrorFor(error) Error      { return Error{Code: 0, Message: "internal error"} }

// testConfig is the server's defaults.
func testConfig() *Config {
	return &Config{Timeout: time.Second, MinTimeout: 20 * time.Millisecond, Retries: 5,
		MaxBlockSize: 65464, MaxWindowSize: 64, Logger: slog.New(slog.DiscardHandler)}
}

func newTestSession(blocks, blksize, window int, conn udp.Conn) *Session {
	s := &Session{Config: testConfig(), Host: testHost{}, Conn: conn, Ctx: context.Background(), Cancel: func(error) {}, Client: testClient}
	s.p = params{blksize: blksize, windowsize: window, timeout: time.Second}
	s.st.TransferSize = -1
	s.r = &zeros{left: int64(blocks*blksize + 1)}
	s.allocSmall()
	s.sizeWindow()
	s.allocWindow()
	return s
}

// TestTransferAllocsPerPacket proves the DATA/ACK path allocates nothing
// per packet: a transfer of many blocks allocates no more than one of few.
func TestTransferAllocsPerPacket(t *testing.T) {
	for _, tc := range []struct{ blksize, window int }{{512, 1}, {1468, 8}, {8192, 64}} {
		allocs := func(blocks int) float64 {
			const runs = 3
			// Sessions are built beforehand: only the transfer is measured.
			var sessions []*Session
			for range runs + 1 { // AllocsPerRun adds a warm-up run
				sessions = append(sessions, newTestSession(blocks, tc.blksize, tc.window, &ackingConn{window: tc.window, blksize: tc.blksize}))
			}
			n := testing.AllocsPerRun(runs, func() {
				s := sessions[0]
				sessions = sessions[1:]
				s.transfer()
				if s.st.Outcome != OutcomeOK || s.acked != uint64(blocks+1) {
					t.Fatalf("outcome %v acked %d", s.st.Outcome, s.acked)
				}
			})
			return n
		}
		few, many := allocs(10), allocs(20000)
		if many > few { // the session allocates its watchdog timer once
			t.Errorf("blksize %d window %d: %v allocations for 20000 blocks, %v for 10: the packet path allocates", tc.blksize, tc.window, many, few)
		}
	}
}

// BenchmarkDATA measures the per-packet cost of a transfer: reading a
// block from the content, sending it, and handling the ACK.
func BenchmarkDATA(b *testing.B) {
	for _, tc := range []struct {
		name            string
		blksize, window int
	}{{"lockstep_512", 512, 1}, {"window8_1468", 1468, 8}, {"window64_8192", 8192, 64}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(tc.blksize))
			s := newTestSession(b.N, tc.blksize, tc.window, &ackingConn{window: tc.window, blksize: tc.blksize})
			b.ResetTimer()
			s.transfer()
			b.StopTimer()
		})
	}
}

// BenchmarkDATASend measures sending a window of DATA on a real loopback
// socket (the receiver does not read: the kernel drops what overflows).
func BenchmarkDATASend(b *testing.B) {
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	conn, client, err := udp.ListenSession(netip.MustParseAddr("127.0.0.1"), sink.LocalAddr().(*net.UDPAddr).AddrPort())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	s := newTestSession(64, 1468, 8, conn)
	s.Client = client
	if err := s.fill(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(8 * 1468)
	for b.Loop() {
		s.sendFrom(s.acked+1, false)
	}
}

// brokenConn fails every read as a closed socket does.
type brokenConn struct{ ackingConn }

func (*brokenConn) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed
}

// TestReadErrorEndsSession is a regression test: a read error other than
// a timeout ended in a busy loop instead of ending the session.
func TestReadErrorEndsSession(t *testing.T) {
	s := newTestSession(10, 512, 1, &brokenConn{ackingConn{window: 1, blksize: 512}})
	done := make(chan struct{})
	go func() { s.transfer(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("transfer still running after a read error")
	}
	if s.st.Outcome != OutcomeError || s.st.Cause == nil {
		t.Errorf("outcome %v err %v; want error", s.st.Outcome, s.st.Cause)
	}
}

// TestWatchdogStopsForGood: the watchdog's timer rearms itself while the
// session lives; once the session has ended it must not, or it would fire
// every readLimit for as long as the process runs.
func TestWatchdogStopsForGood(t *testing.T) {
	s := newTestSession(1, 512, 1, &ackingConn{window: 1, blksize: 512})
	s.beginRead()
	s.readStart.Store(0)
	s.checkStall() // while the session lives: rearms
	if !s.watchdog.Stop() {
		t.Fatal("the watchdog did not rearm while the session lived")
	}
	s.stopWatchdog()
	s.checkStall() // a firing that raced the session's end
	if s.watchdog.Stop() {
		t.Fatal("the watchdog rearmed after the session ended")
	}
}

// lateConn is a session socket whose reads always find the deadline
// expired, as when the session's goroutine runs only after its timer
// fired, while the client's ACK waits in the queue (ReadQueued).
type lateConn struct{ ackingConn }

func (c *lateConn) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, os.ErrDeadlineExceeded
}

func (c *lateConn) ReadQueued(b []byte) (int, netip.AddrPort, bool) {
	n, from, err := c.ackingConn.ReadFromUDPAddrPort(b)
	return n, from, err == nil
}

// TestAnswerQueuedAtTimeoutIsNotResent is a regression test: under load
// (bursts of 10,000 sessions) a session's read deadline could fire before
// its goroutine read an ACK that had arrived in time, and the block was
// retransmitted (about 1 % of a burst's packets); a final block resent
// that way could reach a new transfer that reused the client's port. At
// a timeout the session now takes what waits in the queue first.
func TestAnswerQueuedAtTimeoutIsNotResent(t *testing.T) {
	for _, tc := range []struct{ blksize, window int }{{512, 1}, {1468, 4}} {
		s := newTestSession(5, tc.blksize, tc.window, &lateConn{ackingConn{window: tc.window, blksize: tc.blksize}})
		s.p.timeout = 2 * time.Millisecond
		s.transfer()
		if s.st.Outcome != OutcomeOK || s.st.Retransmits != 0 || s.acked != 6 {
			t.Errorf("blksize %d window %d: outcome %v, %d retransmits, acked %d; want OK, 0, 6",
				tc.blksize, tc.window, s.st.Outcome, s.st.Retransmits, s.acked)
		}
	}
}

// lastChanceConn is a lateConn whose client answers a block only after
// its last retransmission: each ACK waits in the queue when the retries
// are spent.
type lastChanceConn struct {
	lateConn
	retries int
	sends   map[uint16]int
}

func (c *lastChanceConn) WriteToUDPAddrPort(b []byte, a netip.AddrPort) (int, error) {
	if blk, _, err := wire.ParseData(b); err == nil {
		if c.sends[blk]++; c.sends[blk] <= c.retries {
			return len(b), nil // lost
		}
	}
	return c.lateConn.WriteToUDPAddrPort(b, a)
}

// TestAnswerQueuedAtLastTimeoutIsTaken is a regression test (found by a
// review helper): an ACK that waited in the queue when the last
// retransmission's timer fired was ignored, and the session timed out.
// It is taken like one at an earlier timeout.
func TestAnswerQueuedAtLastTimeoutIsTaken(t *testing.T) {
	conn := &lastChanceConn{lateConn: lateConn{ackingConn{window: 1, blksize: 512}}, sends: map[uint16]int{}}
	s := newTestSession(2, 512, 1, conn)
	s.p.timeout = 2 * time.Millisecond
	conn.retries = s.Config.Retries
	s.transfer()
	if want := int64(3 * s.Config.Retries); s.st.Outcome != OutcomeOK || s.acked != 3 || s.st.Retransmits != want {
		t.Errorf("outcome %v, acked %d, %d retransmits; want OK, 3, %d", s.st.Outcome, s.acked, s.st.Retransmits, want)
	}
}

// handBytes is content whose bytes are all at hand.
type handBytes struct {
	b   []byte
	off int
}

func (h *handBytes) ReadAtHand(p []byte) bool {
	if h.off+len(p) > len(h.b) {
		return false
	}
	h.off += copy(p, h.b[h.off:])
	return true
}

// TestRespondAllocsPerPacket: the transport's answer to a lock-step ACK
// (Respond) allocates nothing, and moves the transfer as the session's
// loop would: one block acknowledged, the next read and sent.
func TestRespondAllocsPerPacket(t *testing.T) {
	const blocks, bs = 1000, 1468
	s := newTestSession(blocks, bs, 1, &ackingConn{window: 1, blksize: bs})
	s.st.TransferSize = blocks*bs + 1
	s.atHand = &handBytes{b: make([]byte, blocks*bs+1), off: bs}
	s.answered = true
	s.read, s.sentTo, s.got = 1, 1, bs // block 1 sent by the session
	s.slotLen[s.slotIndex(1)] = wire.HeaderSize + bs
	if !s.offloadable() {
		t.Fatal("not offloadable")
	}
	ack := make([]byte, 0, 4)
	n := testing.AllocsPerRun(500, func() {
		pkt, _, ok := s.Respond(wire.AppendAck(ack, uint16(s.sentTo)))
		if !ok || len(pkt) != wire.HeaderSize+bs {
			t.Fatalf("declined at block %d", s.sentTo)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per ACK, want 0", n)
	}
	if s.acked != 501 || s.sentTo != 502 || s.read != 502 || s.got != 502*bs || s.st.BytesAcked != 501*bs ||
		s.st.PacketsSent != 501 || s.st.BytesSent != 501*bs || s.retries != 0 || !s.offloadable() {
		t.Errorf("acked %d sent %d read %d got %d bytes acked %d packets %d bytes sent %d retries %d",
			s.acked, s.sentTo, s.read, s.got, s.st.BytesAcked, s.st.PacketsSent, s.st.BytesSent, s.retries)
	}
	// The timers as the transfer loop sets them after a send.
	if s.lastAck != s.lastSend || s.deadline != s.lastSend.Add(s.rto.current()) || s.armed != s.deadline ||
		s.giveUpAt != s.lastSend.Add(s.readLimit()) || !s.rto.sampling || s.rto.block != s.read {
		t.Errorf("timers: last ACK %v last send %v deadline %v armed %v give up %v; sampling %v block %d",
			s.lastAck, s.lastSend, s.deadline, s.armed, s.giveUpAt, s.rto.sampling, s.rto.block)
	}
	if s.rto.srtt == 0 {
		t.Error("no round-trip sample taken")
	}
	if _, _, ok := s.Respond(wire.AppendAck(ack, uint16(s.sentTo-1))); ok {
		t.Error("a duplicate ACK answered")
	}
}
