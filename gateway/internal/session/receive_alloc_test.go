package session

import (
	"context"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway/internal/udp"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// sendingConn is a session socket whose client uploads blocks blocks of
// blksize bytes (then a short one), a window at a time, sending the next
// window as soon as the server acknowledges the last one, so that a whole
// upload runs without the network.
type sendingConn struct {
	blocks, blksize, window int
	next                    int // the next block to deliver, 1-based
	winEnd                  int // the last block of the window being delivered
	pkt                     []byte
}

func newSendingConn(blocks, blksize, window int) *sendingConn {
	return &sendingConn{blocks: blocks, blksize: blksize, window: window, pkt: make([]byte, wire.HeaderSize+blksize)}
}

func (c *sendingConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	if op, _ := wire.PacketOpcode(b); op == wire.OpOACK {
		c.next, c.winEnd = 1, c.window
		return len(b), nil
	}
	blk, err := wire.ParseAck(b)
	if err == nil && int(blk) == (c.winEnd)&0xffff {
		c.winEnd += c.window
	}
	return len(b), nil
}

func (c *sendingConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	if c.next == 0 || c.next > c.winEnd || c.next > c.blocks+1 {
		return 0, netip.AddrPort{}, os.ErrDeadlineExceeded
	}
	n := c.blksize
	if c.next == c.blocks+1 {
		n = 7 // the short last block
	}
	p := wire.AppendDataHeader(c.pkt[:0], uint16(c.next))
	p = p[:wire.HeaderSize+n]
	c.next++
	return copy(b, p), testClient, nil
}

func (c *sendingConn) SetReadDeadline(time.Time) error { return nil }
func (c *sendingConn) Close() error                    { return nil }
func (c *sendingConn) SendBeforeRead([]byte) bool      { return false }
func (c *sendingConn) TakeSendErr() error              { return nil }
func (c *sendingConn) ReadQueued([]byte) (int, netip.AddrPort, bool) {
	return 0, netip.AddrPort{}, false
}
func (c *sendingConn) EnableGSO(int) int { return 0 }
func (c *sendingConn) DisableGSO()       {}
func (c *sendingConn) FileSender(*os.File, int64, int, func() error, error) udp.FileSender {
	return nil
}
func (c *sendingConn) Offload(udp.Responder) bool { return false }

// discardSink counts what it is given.
type discardSink struct{ n int64 }

func (d *discardSink) Write(p []byte) (int, error) { d.n += int64(len(p)); return len(p), nil }
func (d *discardSink) Commit() error               { return nil }

func newReceiveSession(blocks, blksize, window int) (*Session, *discardSink) {
	s := &Session{Config: testConfig(), Host: testHost{}, Conn: newSendingConn(blocks, blksize, window), Ctx: context.Background(), Cancel: func(error) {}, Client: testClient, Mode: "octet",
		Options: []wire.Option{{Name: "blksize", Value: strconv.Itoa(blksize)}, {Name: "windowsize", Value: strconv.Itoa(window)}}}
	return s, &discardSink{}
}

// runReceive runs an upload to its end, without the final ACK's dally.
func runReceive(t testing.TB, s *Session, sink *discardSink, blocks, blksize int) {
	ctx, cancel := context.WithCancel(context.Background())
	s.Ctx = ctx
	s.Receive(&cancelOnCommit{discardSink: sink, cancel: cancel})
	if s.st.Outcome != OutcomeOK || sink.n != int64(blocks*blksize+7) {
		t.Fatalf("outcome %v, %d bytes received", s.st.Outcome, sink.n)
	}
}

// cancelOnCommit ends the session's context at the commit, so that the
// dally returns at once.
type cancelOnCommit struct {
	*discardSink
	cancel context.CancelFunc
}

func (c *cancelOnCommit) Commit() error { c.cancel(); return nil }

// TestReceiveAllocsPerPacket proves the receiving DATA/ACK path allocates
// nothing per packet: an upload of many blocks allocates no more than one
// of few.
func TestReceiveAllocsPerPacket(t *testing.T) {
	for _, tc := range []struct{ blksize, window int }{{512, 1}, {1468, 8}, {8192, 64}} {
		allocs := func(blocks int) float64 {
			return testing.AllocsPerRun(3, func() {
				s, sink := newReceiveSession(blocks, tc.blksize, tc.window)
				runReceive(t, s, sink, blocks, tc.blksize)
			})
		}
		// A session's own allocations may differ by one or two between
		// runs (a GC empties the pool of small buffers); a per-packet
		// allocation would add thousands. (Regression: a CI run under
		// -race counted 24 against 23.)
		few, many := allocs(10), allocs(20000)
		if many > few+2 {
			t.Errorf("blksize %d window %d: %v allocations for 20000 blocks, %v for 10: the packet path allocates", tc.blksize, tc.window, many, few)
		}
	}
}

// BenchmarkReceiveDATA measures the per-packet cost of an upload:
// receiving a block, batching it, acknowledging windows.
func BenchmarkReceiveDATA(b *testing.B) {
	for _, tc := range []struct {
		name            string
		blksize, window int
	}{{"lockstep_512", 512, 1}, {"window8_1468", 1468, 8}, {"window64_8192", 8192, 64}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(tc.blksize))
			s, sink := newReceiveSession(b.N, tc.blksize, tc.window)
			b.ResetTimer()
			runReceive(b, s, sink, b.N, tc.blksize)
		})
	}
}
