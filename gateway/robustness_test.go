package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// Regression tests for bugs found in review.

// TestDuplicateACKAfterTimeoutSendsNothing: after a retransmission, a
// duplicate ACK must neither resend at once nor use up a retry (it did:
// the read deadline was not moved for good by the resend).
func TestDuplicateACKAfterTimeoutSendsNothing(t *testing.T) {
	content := gatewaytest.Pattern(3 * 512)
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout, s.Retries = 300*time.Millisecond, 5 })
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet")
	c.Expect(gatewaytest.Data(1, content[:512]))
	c.Expect(gatewaytest.Data(1, content[:512])) // the timeout's resend
	for range 6 {
		c.Ack(0) // junk: nothing new
	}
	c.ExpectNothing(150 * time.Millisecond)
	c.Ack(1)
	c.Expect(gatewaytest.Data(2, content[512:1024]))
	c.SendError(0, "bye")
	if st := ts.NextStats(t); st.Retransmits != 1 || st.Outcome != gateway.OutcomeProbe {
		t.Errorf("retransmits %d outcome %v; want 1, probe (ERROR after DATA 1 was acknowledged)", st.Retransmits, st.Outcome)
	}
}

// funcContent is a Content made of functions.
type funcContent struct {
	read  func([]byte) (int, error)
	close func() error
	size  int64
}

func (c *funcContent) Read(p []byte) (int, error) { return c.read(p) }
func (c *funcContent) Close() error               { return c.close() }
func (c *funcContent) Size() int64                { return c.size }

func TestMisbehavingContent(t *testing.T) {
	t.Run("endless_zero_reads_end_the_session", func(t *testing.T) {
		h := gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
			return &funcContent{read: func([]byte) (int, error) { return 0, nil }, close: func() error { return nil }, size: -1}, nil
		})
		ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer)
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		c.Expect(gatewaytest.ErrorPacket(0, "internal error"))
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeError {
			t.Errorf("outcome %v", st.Outcome)
		}
	})
	t.Run("panic_in_Close_is_not_fatal", func(t *testing.T) {
		h := gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
			return &funcContent{read: func([]byte) (int, error) { return 0, io.EOF }, close: func() error { panic("close boom") }, size: 0}, nil
		})
		ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer)
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		c.Expect(gatewaytest.Data(1, nil))
		c.Ack(1)
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
			t.Errorf("outcome %v", st.Outcome)
		}
	})
	t.Run("content_returned_with_an_error_is_closed", func(t *testing.T) {
		var closed atomic.Int32
		h := gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
			return &funcContent{close: func() error { closed.Add(1); return nil }}, errors.New("half open")
		})
		ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer)
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		c.Expect(gatewaytest.ErrorPacket(0, "internal error"))
		ts.NextStats(t)
		if closed.Load() != 1 {
			t.Errorf("closed %d times, want 1", closed.Load())
		}
	})
	t.Run("stalled_read_is_cancelled_like_a_silent_client", func(t *testing.T) {
		// A content honouring its context is cancelled when one block takes
		// longer than (retries+1) x timeout.
		h := stallAfter([]byte("x"))
		ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout, s.Retries = 100*time.Millisecond, 1 })
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		c.Expect(gatewaytest.ErrorPacket(0, "timeout"))
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeError {
			t.Errorf("outcome %v", st.Outcome)
		}
	})
	t.Run("stall_in_a_later_fill_gets_the_whole_limit", func(t *testing.T) {
		// The watchdog's timer is armed once, by the first fill, and rearms
		// itself: a stall in a later fill is caught (Timeout 100 ms,
		// Retries 1: a 200 ms limit), and only once the limit has passed
		// since that fill began, not since the timer was armed.
		h := stallAfter(make([]byte, 512))
		ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout, s.Retries = 100*time.Millisecond, 1 })
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		c.Expect(gatewaytest.Data(1, make([]byte, 512)))
		time.Sleep(150 * time.Millisecond) // DATA 1 may be resent meanwhile
		c.Ack(1)
		acked := time.Now()
		for {
			b, _ := c.Recv(2 * time.Second)
			if op, _ := wire.PacketOpcode(b); op == wire.OpDATA {
				continue // a resend of DATA 1
			}
			if !bytes.Equal(b, gatewaytest.ErrorPacket(0, "timeout")) {
				t.Fatalf("got %q, want ERROR 0 timeout", b)
			}
			break
		}
		if d := time.Since(acked); d < 190*time.Millisecond {
			t.Errorf("the stalled fill was given up after %v, before its 200 ms", d)
		}
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeError {
			t.Errorf("outcome %v", st.Outcome)
		}
	})
	t.Run("stalled_read_ignoring_its_context_is_a_timeout_not_a_shutdown", func(t *testing.T) {
		// Regression: a read that ignored the watchdog's cancellation and
		// came back late had its block sent, then ERROR 0 "server shutting
		// down", though the server was not stopping.
		content := gatewaytest.Pattern(1500)
		h := gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
			off := 0
			return &funcContent{size: int64(len(content)), close: func() error { return nil },
				read: func(p []byte) (int, error) {
					if off == 512 {
						time.Sleep(600 * time.Millisecond) // longer than (Retries+1) x Timeout
					}
					if off >= len(content) {
						return 0, io.EOF
					}
					n := copy(p, content[off:min(off+512, len(content))])
					off += n
					return n, nil
				}}, nil
		})
		ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout, s.Retries = 100*time.Millisecond, 1 })
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		c.Expect(gatewaytest.Data(1, content[:512]))
		c.Ack(1)
		c.Expect(gatewaytest.ErrorPacket(0, "timeout")) // and no DATA 2 before it
		st := ts.NextStats(t)
		if st.Outcome != gateway.OutcomeError || st.ErrorSent == nil || st.ErrorSent.Message != "timeout" {
			t.Errorf("outcome %v, error sent %v; want error, 0 timeout", st.Outcome, st.ErrorSent)
		}
	})
}

// stallAfter serves contents of unknown size whose first read returns
// first and whose next one waits for the session's context to end.
func stallAfter(first []byte) gateway.Handler {
	return gateway.HandlerFunc(func(ctx context.Context, _ *gateway.Request) (gateway.Content, error) {
		n := 0
		return &funcContent{read: func(p []byte) (int, error) {
			if n++; n == 1 {
				return copy(p, first), nil
			}
			<-ctx.Done()
			return 0, ctx.Err()
		}, close: func() error { return nil }, size: -1}, nil
	})
}

// TestNewRequestFromReusedPort is a regression test: 2 of 10,000 transfers
// failed in the 10k-session benchmark when a client's ephemeral port was
// reused while the previous transfer's session still waited for its lost
// final ACK. The new RRQ was taken for a duplicate and ignored, and the new
// client got the old session's final DATA. A request from a client that
// has acknowledged something is a new transfer: the old session ends
// (silently, ok if its final block was sent) and a new one starts. A
// retransmitted RRQ before any ACK is still a duplicate
// (TestDuplicateRRQIgnored).
func TestNewRequestFromReusedPort(t *testing.T) {
	content := gatewaytest.Pattern(700)
	for _, single := range []bool{false, true} {
		t.Run(map[bool]string{false: "TID_per_session", true: "single_port"}[single], func(t *testing.T) {
			ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.SinglePort = single })
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", "octet")
			c.Expect(gatewaytest.Data(1, content[:512]))
			c.Ack(1)
			c.Expect(gatewaytest.Data(2, content[512:])) // the final block; its ACK is "lost"
			old := c.TID()
			c.SetTID(netip.AddrPort{})
			c.RRQ("f", "octet") // the port, reused: a new transfer
			c.Expect(gatewaytest.Data(1, content[:512]))
			if !single && c.TID() == old {
				t.Fatalf("new transfer answered from the old session's TID %v", old)
			}
			c.Ack(1)
			c.Expect(gatewaytest.Data(2, content[512:]))
			c.Ack(2)
			first, second := ts.NextStats(t), ts.NextStats(t)
			if first.Outcome != gateway.OutcomeOK || second.Outcome != gateway.OutcomeOK || first.SessionID == second.SessionID {
				t.Errorf("outcomes %v (%s), %v (%s); want two ok sessions", first.Outcome, first.SessionID, second.Outcome, second.SessionID)
			}
			if n := ts.Config.Stats().DuplicateRequests; n != 0 {
				t.Errorf("DuplicateRequests %d, want 0", n)
			}
		})
	}
}
