package gateway_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// How a session reads its Content: the ready-made contents, contents
// that misbehave (never progress, panic, stall, ignore their context),
// that return their last bytes with io.EOF, that turn out shorter or
// longer than their declared size, and that deliver slowly.

// TestContent covers the ready-made contents.
func TestContent(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "c")
	must(t, err)
	f.WriteString("0123456789")
	f.Seek(4, io.SeekStart)
	rs, err := gateway.ReadSeekerContent(f)
	must(t, err)
	if b, _ := io.ReadAll(rs); string(b) != "456789" || rs.Size() != 6 {
		t.Errorf("ReadSeekerContent: %q size %d", b, rs.Size())
	}
	f.Seek(0, io.SeekStart)
	fc, err := gateway.FileContent(f)
	must(t, err)
	if b, _ := io.ReadAll(fc); string(b) != "0123456789" || fc.Size() != 10 {
		t.Errorf("FileContent: %q size %d", b, fc.Size())
	}
	must(t, fc.Close())
	d, err := os.Open(t.TempDir())
	must(t, err)
	defer d.Close()
	if _, err := gateway.FileContent(d); !errors.Is(err, gateway.ErrNotRegular) {
		t.Errorf("FileContent(dir) = %v, want ErrNotRegular", err)
	}
	if c := gateway.NewContent(bytesReader([]byte("ab")), -1); c.Size() != -1 || c.Close() != nil {
		t.Errorf("NewContent")
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

// TestRFC1350_Section6_EmptyFinalBlockAfterDataWithEOF: io.Reader allows the last bytes to
// come with io.EOF (gzip.Reader, http bodies, iotest.DataErrReader do).
// When such a read completes a full block the session must still send the
// terminating empty DATA (RFC 1350 section 6): a full-size block tells the
// client that more is to come, so without it the client waits in vain
// while the server logs the session as ok.
func TestRFC1350_Section6_EmptyFinalBlockAfterDataWithEOF(t *testing.T) {
	gz := func(b []byte) io.Reader {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		r, err := gzip.NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	dataErr := func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) }
	tests := []struct {
		name string
		mode string
		size int
		wrap func([]byte) io.Reader
	}{
		{"DataErrReader_octet_two_blocks", "octet", 1024, dataErr},
		{"DataErrReader_octet_one_block", "octet", 512, dataErr},
		{"DataErrReader_netascii_two_blocks", "netascii", 1024, dataErr},
		{"gzip_reader_octet_one_block", "octet", 512, gz},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := bytes.Repeat([]byte("x"), tt.size)
			h := gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
				return gateway.NewContent(tt.wrap(content), int64(len(content))), nil
			})
			ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer)
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", tt.mode)
			n := tt.size / 512
			for i := 1; i <= n; i++ {
				c.Expect(gatewaytest.Data(uint16(i), content[(i-1)*512:i*512]))
				c.Ack(uint16(i))
			}
			// The final, empty block must follow.
			b, _, ok := c.TryRecv(time.Second)
			if !ok {
				st := ts.NextStats(t)
				t.Fatalf("no DATA %d (empty final block) after the ACK of full block %d; server ended the session with outcome %v, BytesAcked %d",
					n+1, n, st.Outcome, st.BytesAcked)
			}
			if want := gatewaytest.Data(uint16(n+1), nil); !bytes.Equal(b, want) {
				t.Fatalf("got %q, want %q", gatewaytest.Abbrev(b), want)
			}
			c.Ack(uint16(n + 1))
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
				t.Errorf("outcome %v, want ok", st.Outcome)
			}
		})
	}
}

// TestRFC2349_ContentKeepsItsSize: a content that turns out shorter or
// longer than the size it declared (the tsize the client was told) ends
// the session with ERROR 0 where it differs, instead of a short block the
// client would take for a complete file, or bytes past the size. A file
// truncated or rewritten under a transfer, or a backend's mistake.
func TestRFC2349_ContentKeepsItsSize(t *testing.T) {
	tests := []struct {
		name     string
		mode     string
		declared int64
		actual   int
		wantFull int // full blocks the client gets before the ERROR
	}{
		{"shorter_inside_a_block", "octet", 1000, 700, 1},
		{"shorter_at_a_block_boundary", "octet", 1024, 512, 1},
		{"shorter_empty", "octet", 100, 0, 0},
		{"longer_inside_a_block", "octet", 600, 700, 1},
		// The end is checked before the last full block goes out, so the
		// client never holds every byte of the wrong file.
		{"longer_after_a_multiple_of_the_block_size", "octet", 1024, 1100, 1},
		// netascii sends no tsize (the converted length is not known), but
		// the content's own bytes are still counted against its size: a
		// regression test, a truncated file went out as complete.
		{"netascii_shorter", "netascii", 1000, 10, 0},
		{"netascii_longer", "netascii", 5, 10, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := bytes.Repeat([]byte("0123456789"), 1+tt.actual/10)[:tt.actual] // no netascii conversion
			h := gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
				return gateway.NewContent(io.NopCloser(bytes.NewReader(content)), tt.declared), nil
			})
			ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer)
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", tt.mode)
			for i := 1; i <= tt.wantFull; i++ {
				c.Expect(gatewaytest.Data(uint16(i), content[(i-1)*512:i*512]))
				c.Ack(uint16(i))
			}
			c.Expect(gatewaytest.ErrorPacket(0, "file changed while being sent"))
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeError {
				t.Errorf("outcome %v, want error", st.Outcome)
			}
		})
	}
}

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
