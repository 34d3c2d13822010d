package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// handContent is an AtHandContent over b whose first hand bytes are at
// hand: ReadAtHand serves only those, Read serves all. It counts both.
type handContent struct {
	b           []byte
	off, hand   int
	atHand, rds *atomic.Int64
}

func (c *handContent) Read(p []byte) (int, error) {
	c.rds.Add(1)
	n := copy(p, c.b[c.off:])
	c.off += n
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (c *handContent) ReadAtHand(p []byte) bool {
	if c.off+len(p) > c.hand {
		return false
	}
	c.off += copy(p, c.b[c.off:])
	c.atHand.Add(1)
	return true
}

func (c *handContent) Size() int64  { return int64(len(c.b)) }
func (c *handContent) Close() error { return nil }

var _ gateway.AtHandContent = (*handContent)(nil)

// panicAtHand panics in ReadAtHand.
type panicAtHand struct{ handContent }

func (*panicAtHand) ReadAtHand([]byte) bool { panic("boom") }

// handServer serves content as a handContent with hand bytes at hand, in
// single-port mode; atHand counts the blocks read at hand, reads the
// reads.
func handServer(t *testing.T, content []byte, hand int, cfg ...func(*gateway.Server)) (ts *gatewaytest.Server, atHand, reads *atomic.Int64) {
	atHand, reads = new(atomic.Int64), new(atomic.Int64)
	h := gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
		return &handContent{b: content, hand: hand, atHand: atHand, rds: reads}, nil
	})
	cfg = append([]func(*gateway.Server){gatewaytest.FixedTimer, func(s *gateway.Server) { s.SinglePort = true }}, cfg...)
	return gatewaytest.NewServer(t, h, cfg...), atHand, reads
}

// TestSinglePortOffload: in single-port mode the listener's read loop
// answers a lock-step client's ACKs itself with blocks of a content that
// has them at hand (gateway.AtHandContent), and leaves the rest to the
// session: the first block, the last, a block not at hand, a duplicate
// ACK, an ERROR, a timeout, a shutdown. On the wire and in the stats
// nothing differs from a session that answers every ACK itself.
func TestSinglePortOffload(t *testing.T) {
	content := gatewaytest.Pattern(10*512 + 100) // 11 blocks, the last of 100 bytes
	block := func(n int) []byte { return gatewaytest.Data(uint16(n), content[(n-1)*512:min(n*512, len(content))]) }
	// upTo asks for file lock-step and acknowledges blocks up to n-1:
	// block n is the one just received, unacknowledged.
	upTo := func(c *gatewaytest.Client, file string, n int) {
		t.Helper()
		c.RRQ(file, "octet")
		for k := 1; k < n; k++ {
			c.Expect(block(k))
			c.Ack(uint16(k))
		}
		c.Expect(block(n))
	}

	t.Run("lock_step_blocks_answered_by_the_read_loop", func(t *testing.T) {
		ts, atHand, _ := handServer(t, content, len(content))
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		for n := 1; n <= 11; n++ {
			c.Expect(block(n))
			if n == 2 {
				time.Sleep(100 * time.Millisecond) // the session offloads before ACK 2 comes
			}
			c.Ack(uint16(n))
		}
		c.ExpectNothing(100 * time.Millisecond)
		st := ts.NextStats(t)
		if st.Outcome != gateway.OutcomeOK || st.BytesSent != int64(len(content)) || st.BytesAcked != int64(len(content)) ||
			st.PacketsSent != 11 || st.Retransmits != 0 || st.DuplicateAcks != 0 {
			t.Errorf("stats: outcome %v sent %d acked %d packets %d retransmits %d duplicates %d",
				st.Outcome, st.BytesSent, st.BytesAcked, st.PacketsSent, st.Retransmits, st.DuplicateAcks)
		}
		// Blocks 3 to 10: 1 goes before the client answers, 2 answers
		// its first ACK (the session records the client's answer itself),
		// and 11 is the final block, whose end the session checks.
		if n := atHand.Load(); n != 8 {
			t.Errorf("%d blocks read at hand, want 8", n)
		}
	})

	t.Run("block_not_at_hand_read_by_the_session", func(t *testing.T) {
		ts, atHand, reads := handServer(t, content, 4*512)
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet", "blksize", "512", "tsize", "0")
		c.Expect(gatewaytest.OACK("blksize", "512", "tsize", "5220"))
		c.Ack(0)
		for n := 1; n <= 11; n++ {
			c.Expect(block(n))
			c.Ack(uint16(n))
		}
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK || st.BytesAcked != int64(len(content)) || st.PacketsSent != 12 {
			t.Errorf("stats: outcome %v acked %d packets %d", st.Outcome, st.BytesAcked, st.PacketsSent)
		}
		if atHand.Load() > 3 || reads.Load() < 8 {
			t.Errorf("%d blocks read at hand and %d reads; only blocks 2 to 4 were at hand", atHand.Load(), reads.Load())
		}
	})

	t.Run("duplicate_ACK_then_timeout_resend", func(t *testing.T) {
		ts, _, _ := handServer(t, content, len(content), func(s *gateway.Server) { s.Timeout = 300 * time.Millisecond })
		c := gatewaytest.NewClient(t, ts.Addr())
		upTo(c, "f", 5)
		sent := time.Now()
		c.Ack(4) // a duplicate: lock-step never answers it (RFC 1123 4.2.3.1)
		c.ExpectNothing(150 * time.Millisecond)
		c.Expect(block(5)) // the session's timer, moved by the read loop's last answer
		if d := time.Since(sent); d < 150*time.Millisecond || d > 2*time.Second {
			t.Errorf("DATA 5 resent %v after it was sent, want the 300 ms timeout", d)
		}
		for n := 5; n <= 11; n++ {
			if n > 5 {
				c.Expect(block(n))
			}
			c.Ack(uint16(n))
		}
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK || st.Retransmits != 1 || st.DuplicateAcks != 1 || st.PacketsSent != 12 {
			t.Errorf("stats: outcome %v retransmits %d duplicates %d packets %d", st.Outcome, st.Retransmits, st.DuplicateAcks, st.PacketsSent)
		}
	})

	t.Run("client_ERROR_mid_transfer", func(t *testing.T) {
		ts, _, _ := handServer(t, content, len(content))
		c := gatewaytest.NewClient(t, ts.Addr())
		upTo(c, "f", 6)
		c.SendError(3, "disk full")
		c.ExpectNothing(100 * time.Millisecond)
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeAborted || st.ErrorReceived == nil || st.ErrorReceived.Message != "disk full" {
			t.Errorf("stats: outcome %v error received %v", st.Outcome, st.ErrorReceived)
		}
	})

	t.Run("silent_client_times_out", func(t *testing.T) {
		ts, _, _ := handServer(t, content, len(content), func(s *gateway.Server) { s.Timeout, s.Retries = 300*time.Millisecond, 2 })
		c := gatewaytest.NewClient(t, ts.Addr())
		upTo(c, "f", 4)
		c.Expect(block(4))
		c.Expect(block(4))
		c.ExpectNothing(500 * time.Millisecond)
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeTimeout || st.Retransmits != 2 {
			t.Errorf("stats: outcome %v retransmits %d", st.Outcome, st.Retransmits)
		}
	})

	t.Run("forced_shutdown_sends_ERROR_0", func(t *testing.T) {
		ts, _, _ := handServer(t, content, len(content), func(s *gateway.Server) { s.Timeout = 10 * time.Second })
		c := gatewaytest.NewClient(t, ts.Addr())
		upTo(c, "f", 4)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- ts.Config.Shutdown(ctx) }()
		c.ExpectWithin(5*time.Second, gatewaytest.ErrorPacket(0, "server shutting down"))
		if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v", err)
		}
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeError {
			t.Errorf("outcome %v", st.Outcome)
		}
	})

	t.Run("panic_in_ReadAtHand_ends_the_session_not_the_server", func(t *testing.T) {
		h := gateway.HandlerFunc(func(_ context.Context, r *gateway.Request) (gateway.Content, error) {
			if r.Path == "boom" {
				return &panicAtHand{handContent{b: content, hand: len(content), atHand: new(atomic.Int64), rds: new(atomic.Int64)}}, nil
			}
			return gateway.BytesContent(content), nil
		})
		ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer, func(s *gateway.Server) { s.SinglePort = true })
		c := gatewaytest.NewClient(t, ts.Addr())
		upTo(c, "boom", 2)
		time.Sleep(100 * time.Millisecond) // offloaded
		c.Ack(2)
		c.Expect(gatewaytest.ErrorPacket(0, "internal error"))
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeError {
			t.Errorf("outcome %v", st.Outcome)
		}
		c2 := gatewaytest.NewClient(t, ts.Addr())
		c2.RRQ("ok", "octet")
		c2.Expect(block(1))
		ts.Config.Close()
	})

	t.Run("concurrent_clients_byte_identical", func(t *testing.T) {
		big := gatewaytest.Pattern(200 << 10)
		ts, atHand, _ := handServer(t, big, len(big))
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := bytes.NewBuffer(make([]byte, 0, len(big)))
				o := tftpclient.Options{BlockSize: 512 + 100*i, TSize: i%2 == 0, RetransmitTimeout: time.Second}
				if _, err := tftpclient.Get(context.Background(), ts.Addr().String(), "f", buf, o); err != nil {
					t.Errorf("client %d: %v", i, err)
				} else if !bytes.Equal(buf.Bytes(), big) {
					t.Errorf("client %d: content differs", i)
				}
			}()
		}
		wg.Wait()
		for range 16 {
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK || st.BytesAcked != int64(len(big)) {
				t.Errorf("outcome %v acked %d", st.Outcome, st.BytesAcked)
			}
		}
		if atHand.Load() == 0 {
			t.Error("no block read at hand")
		}
	})
}
