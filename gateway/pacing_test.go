package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
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
		gap     = 300 * time.Millisecond
	)
	// The server waits (5+1) x 150 ms = 900 ms for a silent client, or
	// for one block: 3 gaps, not the 4 of the whole file.
	payload := pattern(blocks*blksize - 100)
	for _, tc := range []struct {
		window int
		sized  bool
	}{{1, true}, {4, true}, {8, true}, {4, false}, {8, false}} {
		t.Run(fmt.Sprintf("windowsize_%d_sized_%v", tc.window, tc.sized), func(t *testing.T) {
			h := gateway.HandlerFunc(func(ctx context.Context, _ *gateway.Request) (gateway.Content, error) {
				return &slowContent{data: bytes.Clone(payload), chunk: blksize, gap: gap, ctx: ctx, sized: tc.sized}, nil
			})
			ts := startServer(t, h, func(s *gateway.Server) { s.Timeout, s.Retries = 150*time.Millisecond, 5 })
			var got bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := tftpclient.Get(ctx, ts.addr.String(), "f", &got, tftpclient.Options{
				BlockSize: blksize, WindowSize: tc.window, RetransmitTimeout: time.Second, Retries: 10,
			})
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if !bytes.Equal(got.Bytes(), payload) {
				t.Fatalf("got %d bytes, want the %d of the content", got.Len(), len(payload))
			}
			if st := ts.nextStats(t); st.Outcome != gateway.OutcomeOK {
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
	payload := pattern(8*512 - 1)
	h := gateway.HandlerFunc(func(ctx context.Context, _ *gateway.Request) (gateway.Content, error) {
		return &slowContent{data: bytes.Clone(payload), chunk: 512, gap: gap, ctx: ctx, sized: true}, nil
	})
	ts := startServer(t, h, func(s *gateway.Server) { s.Timeout, s.Retries = time.Second, 5 })
	c := newClient(t, ts.addr)
	c.rrq("f", "octet", "windowsize", "8")
	c.expect(oack("windowsize", "8"))
	c.ack(0)
	for b := range 3 {
		start := time.Now()
		c.expect(data(uint16(b+1), payload[b*512:(b+1)*512]))
		// The whole window takes 8 gaps (3.2 s); one block, one gap.
		if d := time.Since(start); d > 4*gap {
			t.Fatalf("DATA %d came %v after the previous packet; a block must leave when the content delivers it", b+1, d)
		}
	}
	c.sendError(0, "enough")
	ts.nextStats(t)
}
