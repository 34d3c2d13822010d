package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// slowContent delivers its bytes chunk by chunk, one chunk every gap: a
// backend or HTTP upstream that is slow but steady.
type slowContent struct {
	data  []byte
	chunk int
	gap   time.Duration
	ctx   context.Context
	sized bool
}

func (c *slowContent) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	select {
	case <-time.After(c.gap):
	case <-c.ctx.Done():
		return 0, c.ctx.Err()
	}
	n := copy(p, c.data[:min(len(c.data), c.chunk)])
	c.data = c.data[n:]
	return n, nil
}

func (c *slowContent) Close() error { return nil }

func (c *slowContent) Size() int64 {
	if c.sized {
		return int64(len(c.data))
	}
	return -1
}

// TestSlowSteadyContentInAWindow (issue 13 point 3): a content that
// delivers a block every gap, longer than the session would wait for the
// whole window but well within what it waits for one block, is sent as it
// comes whatever the window size, as it is in lock-step. It timed out
// before: the session read a whole window before sending any of it and
// timed that read against the retransmission budget.
func TestSlowSteadyContentInAWindow(t *testing.T) {
	const (
		blksize = 1468
		blocks  = 4
	)
	// The server waits (5+1) x 150 ms = 900 ms for a silent client, or
	// for one block: less than the whole file takes.
	payload := gatewaytest.Pattern(blocks*blksize - 100)
	for _, tc := range []struct {
		window int
		sized  bool
		gap    time.Duration
	}{
		{1, true, 300 * time.Millisecond},
		{4, true, 300 * time.Millisecond},
		{8, true, 300 * time.Millisecond},
		{4, false, 300 * time.Millisecond},
		{8, false, 300 * time.Millisecond},
		// Two blocks take longer than the wait: each block is timed from
		// its own start.
		{4, true, 600 * time.Millisecond},
	} {
		t.Run(fmt.Sprintf("windowsize_%d_sized_%v_gap_%v", tc.window, tc.sized, tc.gap), func(t *testing.T) {
			h := gateway.HandlerFunc(func(ctx context.Context, _ *gateway.Request) (gateway.Content, error) {
				return &slowContent{data: bytes.Clone(payload), chunk: blksize, gap: tc.gap, ctx: ctx, sized: tc.sized}, nil
			})
			ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout, s.Retries = 150*time.Millisecond, 5 })
			var got bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := tftpclient.Get(ctx, ts.Addr().String(), "f", &got, tftpclient.Options{
				BlockSize: blksize, WindowSize: tc.window, RetransmitTimeout: time.Second, Retries: 10,
			})
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if !bytes.Equal(got.Bytes(), payload) {
				t.Fatalf("got %d bytes, want the %d of the content", got.Len(), len(payload))
			}
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
				t.Errorf("outcome %v (%v), want ok", st.Outcome, st.ErrorSent)
			}
		})
	}
}

// TestSlowContentBlocksLeaveAsTheyArrive: in a window, a block the
// content has delivered goes out without waiting for the rest of the
// window, so the client sees DATA 1 about one gap after its ACK 0, not a
// window of gaps later.
func TestSlowContentBlocksLeaveAsTheyArrive(t *testing.T) {
	const gap = 400 * time.Millisecond
	payload := gatewaytest.Pattern(8*512 - 1)
	h := gateway.HandlerFunc(func(ctx context.Context, _ *gateway.Request) (gateway.Content, error) {
		return &slowContent{data: bytes.Clone(payload), chunk: 512, gap: gap, ctx: ctx, sized: true}, nil
	})
	ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout, s.Retries = time.Second, 5 })
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet", "windowsize", "8")
	c.Expect(gatewaytest.OACK("windowsize", "8"))
	c.Ack(0)
	for b := range 3 {
		start := time.Now()
		c.Expect(gatewaytest.Data(uint16(b+1), payload[b*512:(b+1)*512]))
		// The whole window takes 8 gaps (3.2 s); one block, one gap.
		if d := time.Since(start); d > 4*gap {
			t.Fatalf("DATA %d came %v after the previous packet; a block must leave when the content delivers it", b+1, d)
		}
	}
	c.SendError(0, "enough")
	ts.NextStats(t)
}

// TestUnansweredFirstPacketBacksOff (issue 14 point 4): a request whose
// first packet nothing answers (a spoofed source) got DATA 1 six times at
// fixed intervals, 309 times the request's size in payload (in.tftpd
// backs off 1, 2, 4 s: 206 times). The first packet's timer now doubles,
// so with the defaults (Retries 5) it goes out 3 times, at 0, T and 3T,
// and the session gives up at 6T as before. A timeout the client
// negotiated is used as it is: the client asked for it, and its first
// packet is an OACK no longer than its request.
func TestUnansweredFirstPacketBacksOff(t *testing.T) {
	const T = 200 * time.Millisecond
	content := gatewaytest.Pattern(2000)
	t.Run("no_options", func(t *testing.T) {
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout, s.Retries = T, 5 })
		c := gatewaytest.NewClient(t, ts.Addr())
		start := time.Now()
		c.RRQ("f", "octet")
		var at []time.Duration
		for range 3 {
			c.Expect(gatewaytest.Data(1, content[:512]))
			at = append(at, time.Since(start))
		}
		c.ExpectNothing(7*T - time.Since(start))
		if gap1, gap2 := at[1]-at[0], at[2]-at[1]; gap1 < T*3/4 || gap2 < 2*T*3/4 {
			t.Errorf("DATA 1 at %v: gaps %v and %v, want about T and 2T (T = %v)", at, gap1, gap2, T)
		}
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeTimeout || st.Retransmits != 2 || st.PacketsSent != 3 {
			t.Errorf("outcome %v, retransmits %d, packets %d; want timeout, 2, 3", st.Outcome, st.Retransmits, st.PacketsSent)
		}
	})
	t.Run("answered_first_packet_keeps_the_fixed_timer", func(t *testing.T) {
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout, s.Retries = T, 5 })
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		c.Expect(gatewaytest.Data(1, content[:512]))
		c.Ack(1)
		for range 6 {
			c.Expect(gatewaytest.Data(2, content[512:1024]))
		}
		c.ExpectNothing(2 * T)
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeTimeout || st.Retransmits != 5 {
			t.Errorf("outcome %v, retransmits %d; want timeout, 5", st.Outcome, st.Retransmits)
		}
	})
}
