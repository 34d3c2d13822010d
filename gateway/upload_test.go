package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
)

// memUploads is a WriteHandler that keeps uploads in memory, and records
// what happened to each.
type memUploads struct {
	mu        sync.Mutex
	stored    map[string][]byte
	aborted   []string
	requests  []*gateway.Request
	refuse    error             // ReceiveTFTP's error, if set
	commitErr error             // Commit's, if set
	writeErr  func(n int) error // Write's, given the bytes so far, if set
	writes    []int             // the length of each Write
	commitDly time.Duration
}

type memUpload struct {
	h    *memUploads
	path string
	buf  bytes.Buffer
	done bool
}

func (h *memUploads) ReceiveTFTP(_ context.Context, req *gateway.Request) (gateway.Upload, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests = append(h.requests, req)
	if h.refuse != nil {
		return nil, h.refuse
	}
	return &memUpload{h: h, path: req.Path}, nil
}

func (u *memUpload) Write(p []byte) (int, error) {
	u.h.mu.Lock()
	defer u.h.mu.Unlock()
	u.h.writes = append(u.h.writes, len(p))
	if u.h.writeErr != nil {
		if err := u.h.writeErr(u.buf.Len() + len(p)); err != nil {
			return 0, err
		}
	}
	return u.buf.Write(p)
}

func (u *memUpload) Commit() error {
	time.Sleep(u.h.commitDly)
	u.h.mu.Lock()
	defer u.h.mu.Unlock()
	if u.h.commitErr != nil {
		return u.h.commitErr
	}
	if u.h.stored == nil {
		u.h.stored = map[string][]byte{}
	}
	u.h.stored[u.path] = bytes.Clone(u.buf.Bytes())
	u.done = true
	return nil
}

func (u *memUpload) Abort() {
	u.h.mu.Lock()
	defer u.h.mu.Unlock()
	if u.done {
		panic("Abort after a successful Commit")
	}
	u.h.aborted = append(u.h.aborted, u.path)
}

func (h *memUploads) file(name string) ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.stored[name]
	return b, ok
}

func (h *memUploads) abortedPaths() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.aborted...)
}

func uploadServer(t *testing.T, h *memUploads, cfg ...func(*gateway.Server)) *gatewaytest.Server {
	t.Helper()
	cfg = append([]func(*gateway.Server){gatewaytest.FixedTimer, func(s *gateway.Server) {
		s.WriteHandler = h
		s.Timeout = 300 * time.Millisecond // the final ACK's dally
	}}, cfg...)
	return gatewaytest.NewServer(t, gatewaytest.Files{}, cfg...)
}

// TestUploadRFC1350 checks the receiving side of the base protocol: ACK 0
// answers a WRQ without options, each DATA is acknowledged in lock-step,
// the short block ends the transfer, an exact multiple ends with an empty
// block, and netascii is converted back to local line ends.
func TestUploadRFC1350(t *testing.T) {
	tests := []struct {
		name   string
		mode   string
		blocks [][]byte
		want   []byte
	}{
		{"section6_short_final_block", "octet", [][]byte{gatewaytest.Pattern(512), gatewaytest.Pattern(100)}, append(gatewaytest.Pattern(512), gatewaytest.Pattern(100)...)},
		{"section6_exact_multiple_ends_with_empty_block", "octet", [][]byte{gatewaytest.Pattern(512), {}}, gatewaytest.Pattern(512)},
		{"section6_empty_file_is_one_empty_block", "octet", [][]byte{{}}, []byte{}},
		{"netascii_CRLF_becomes_LF_CRNUL_becomes_CR", "netascii", [][]byte{[]byte("a\r\nb\r\x00c\r")}, []byte("a\nb\rc\r")},
		{"netascii_CR_split_across_blocks", "netascii", [][]byte{append(bytes.Repeat([]byte("x"), 511), '\r'), []byte("\nz")}, append(bytes.Repeat([]byte("x"), 511), "\nz"...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &memUploads{}
			ts := uploadServer(t, h)
			c := gatewaytest.NewClient(t, ts.Addr())
			c.WRQ("up/f", tt.mode)
			c.Expect(gatewaytest.Ack(0))
			for i, p := range tt.blocks {
				c.Send(gatewaytest.Data(uint16(i+1), p))
				c.Expect(gatewaytest.Ack(uint16(i + 1)))
			}
			st := ts.NextStats(t)
			if st.Outcome != gateway.OutcomeOK || !st.Write {
				t.Errorf("outcome %v, write %v: want ok, true", st.Outcome, st.Write)
			}
			got, ok := h.file("up/f")
			if !ok || !bytes.Equal(got, tt.want) {
				t.Errorf("stored %q (%v), want %q", got, ok, tt.want)
			}
			if want := int64(len(joinPayloads(tt.blocks))); st.BytesReceived != want {
				t.Errorf("BytesReceived %d, want %d", st.BytesReceived, want)
			}
			if a := h.abortedPaths(); len(a) != 0 {
				t.Errorf("aborted %v", a)
			}
		})
	}
}

// TestUploadOptions: RFC 2347 OACK for a WRQ, in the request's order;
// tsize is the client's size echoed (RFC 2349), 0 included; blksize and
// windowsize are capped as for reads.
func TestUploadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts []string
		oack []string
	}{
		{"rfc2349_tsize_echoed", []string{"tsize", "3000"}, []string{"tsize", "3000"}},
		{"rfc2349_tsize_0_echoed", []string{"tsize", "0"}, []string{"tsize", "0"}},
		{"rfc2349_invalid_tsize_omitted", []string{"tsize", "-1", "blksize", "1024"}, []string{"blksize", "1024"}},
		{"rfc2347_order_kept", []string{"windowsize", "4", "tsize", "10", "blksize", "100000"}, []string{"windowsize", "4", "tsize", "10", "blksize", "1468"}},
		{"rfc2349_timeout_echoed", []string{"timeout", "1"}, []string{"timeout", "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &memUploads{}
			ts := uploadServer(t, h, func(s *gateway.Server) { s.MaxBlockSize = 1468 })
			c := gatewaytest.NewClient(t, ts.Addr())
			c.WRQ("f", "octet", tt.opts...)
			c.Expect(gatewaytest.OACK(tt.oack...))
			c.Send(gatewaytest.Data(1, []byte("x")))
			c.Expect(gatewaytest.Ack(1))
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
				t.Errorf("outcome %v", st.Outcome)
			}
		})
	}
}

// TestUploadRFC7440Receiver: with a window, the receiver acknowledges the
// last block of each window, a gap with the last block received in order
// (once), and a resent window's duplicates with one ACK.
func TestUploadRFC7440Receiver(t *testing.T) {
	h := &memUploads{}
	ts := uploadServer(t, h)
	c := gatewaytest.NewClient(t, ts.Addr())
	c.WRQ("w", "octet", "blksize", "8", "windowsize", "4")
	c.Expect(gatewaytest.OACK("blksize", "8", "windowsize", "4"))
	blk := func(n int) []byte { return gatewaytest.Pattern(8 * n)[8*(n-1):] }
	for n := 1; n <= 4; n++ {
		c.Send(gatewaytest.Data(uint16(n), blk(n)))
	}
	c.Expect(gatewaytest.Ack(4))
	// Block 5 lost: 6 and 7 show a gap, acknowledged once with ACK 4.
	c.Send(gatewaytest.Data(6, blk(6)))
	c.Expect(gatewaytest.Ack(4))
	c.Send(gatewaytest.Data(7, blk(7)))
	c.ExpectNothing(50 * time.Millisecond)
	// The sender restarts after 4: a window of 5..8.
	for n := 5; n <= 8; n++ {
		c.Send(gatewaytest.Data(uint16(n), blk(n)))
	}
	c.Expect(gatewaytest.Ack(8))
	// ACK 8 lost: the sender resends 5..8; one ACK 8 answers the run.
	for n := 5; n <= 8; n++ {
		c.Send(gatewaytest.Data(uint16(n), blk(n)))
	}
	c.Expect(gatewaytest.Ack(8))
	c.ExpectNothing(50 * time.Millisecond)
	c.Send(gatewaytest.Data(9, []byte("end")))
	c.Expect(gatewaytest.Ack(9))
	st := ts.NextStats(t)
	want := append(gatewaytest.Pattern(64), "end"...)
	if got, _ := h.file("w"); !bytes.Equal(got, want) || st.Outcome != gateway.OutcomeOK {
		t.Fatalf("outcome %v, stored %q, want %q", st.Outcome, got, want)
	}
}

// TestUploadRFC1350DuplicateDataReacked: in lock-step every duplicate DATA
// gets the ACK again (the sender's retransmission says its ACK was
// lost), and a duplicate is written once.
func TestUploadRFC1350DuplicateDataReacked(t *testing.T) {
	h := &memUploads{}
	ts := uploadServer(t, h)
	c := gatewaytest.NewClient(t, ts.Addr())
	c.WRQ("d", "octet")
	c.Expect(gatewaytest.Ack(0))
	c.Send(gatewaytest.Data(1, gatewaytest.Pattern(512)))
	c.Expect(gatewaytest.Ack(1))
	for range 2 {
		c.Send(gatewaytest.Data(1, gatewaytest.Pattern(512)))
		c.Expect(gatewaytest.Ack(1))
	}
	c.Send(gatewaytest.Data(2, nil))
	c.Expect(gatewaytest.Ack(2))
	ts.NextStats(t)
	if got, _ := h.file("d"); !bytes.Equal(got, gatewaytest.Pattern(512)) {
		t.Fatalf("stored %d bytes, want 512", len(got))
	}
}

// TestUploadFinalAckDally: RFC 1350 section 6, the receiver of the final
// DATA dallies, and acknowledges it again if the client sends it again.
func TestUploadFinalAckDally(t *testing.T) {
	h := &memUploads{}
	ts := uploadServer(t, h)
	c := gatewaytest.NewClient(t, ts.Addr())
	c.WRQ("d", "octet")
	c.Expect(gatewaytest.Ack(0))
	c.Send(gatewaytest.Data(1, []byte("last")))
	c.Expect(gatewaytest.Ack(1))
	c.Send(gatewaytest.Data(1, []byte("last")))
	c.Expect(gatewaytest.Ack(1))
	if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
		t.Fatalf("outcome %v", st.Outcome)
	}
}

// TestUploadRollover: block numbers roll over from 65535 to 0, and the
// upload goes on to the right bytes.
func TestUploadRollover(t *testing.T) {
	h := &memUploads{}
	ts := uploadServer(t, h)
	c := gatewaytest.NewClient(t, ts.Addr())
	const blocks = 65536 + 10
	c.WRQ("r", "octet", "blksize", "8", "windowsize", "64")
	c.Expect(gatewaytest.OACK("blksize", "8", "windowsize", "64"))
	payload := func(n int) []byte { return []byte(strconv.Itoa(100000000 + n)[1:]) } // 8 bytes
	var want []byte
	for n := 1; n <= blocks; n++ {
		c.Send(gatewaytest.Data(uint16(n), payload(n)))
		want = append(want, payload(n)...)
		if n%64 == 0 {
			c.Expect(gatewaytest.Ack(uint16(n)))
		}
	}
	last := blocks + 1
	c.Send(gatewaytest.Data(uint16(last), nil))
	c.Expect(gatewaytest.Ack(uint16(last)))
	st := ts.NextStats(t)
	if got, _ := h.file("r"); st.Outcome != gateway.OutcomeOK || !bytes.Equal(got, want) {
		t.Fatalf("outcome %v, %d bytes stored, want %d", st.Outcome, len(got), len(want))
	}
}

// TestUploadErrors: what the client gets, and that the upload is
// aborted, when the handler refuses, a write or the commit fails, the
// client sends an ERROR, a block is larger than negotiated, or uploads
// are off.
func TestUploadErrors(t *testing.T) {
	errFull := &gateway.Error{Code: gateway.ErrDiskFull, Message: "file too large"}
	tests := []struct {
		name    string
		h       *memUploads
		off     bool
		steps   func(c *gatewaytest.Client)
		outcome gateway.Outcome
		aborted bool
	}{
		{"no_write_handler_is_error_2", nil, true, func(c *gatewaytest.Client) {
			c.WRQ("a-name-long-enough-for-the-whole-message", "octet") // an answer from the listening port is cut to the request's length
			c.ExpectFrom(c.Server(), gatewaytest.ErrorPacket(2, "read-only server"))
		}, gateway.OutcomeUnknown, false},
		{"refused_before_first_ack", &memUploads{refuse: errFull}, false, func(c *gatewaytest.Client) {
			c.WRQ("f", "octet", "tsize", "99999999")
			c.Expect(gatewaytest.ErrorPacket(3, "file too large"))
		}, gateway.OutcomeError, false},
		{"exists_is_error_6", &memUploads{refuse: &gateway.Error{Code: gateway.ErrFileExists, Message: "file already exists"}}, false, func(c *gatewaytest.Client) {
			c.WRQ("f", "octet")
			c.Expect(gatewaytest.ErrorPacket(6, "file already exists"))
		}, gateway.OutcomeError, false},
		{"write_error_cuts_with_error_3", &memUploads{writeErr: func(n int) error {
			if n > 1000 {
				return errFull
			}
			return nil
		}}, false, func(c *gatewaytest.Client) {
			c.WRQ("f", "octet")
			c.Expect(gatewaytest.Ack(0))
			c.Send(gatewaytest.Data(1, gatewaytest.Pattern(512)))
			c.Expect(gatewaytest.Ack(1))
			c.Send(gatewaytest.Data(2, gatewaytest.Pattern(512)))
			c.Expect(gatewaytest.Ack(2))
			c.Send(gatewaytest.Data(3, []byte("x")))
			c.Expect(gatewaytest.ErrorPacket(3, "file too large"))
		}, gateway.OutcomeError, true},
		{"commit_error_instead_of_final_ack", &memUploads{commitErr: errors.New("disk on fire")}, false, func(c *gatewaytest.Client) {
			c.WRQ("f", "octet")
			c.Expect(gatewaytest.Ack(0))
			c.Send(gatewaytest.Data(1, []byte("x")))
			c.Expect(gatewaytest.ErrorPacket(0, "internal error"))
		}, gateway.OutcomeError, true},
		{"client_error_aborts", &memUploads{}, false, func(c *gatewaytest.Client) {
			c.WRQ("f", "octet")
			c.Expect(gatewaytest.Ack(0))
			c.Send(gatewaytest.Data(1, gatewaytest.Pattern(512)))
			c.Expect(gatewaytest.Ack(1))
			c.SendError(0, "cancelled")
		}, gateway.OutcomeAborted, true},
		{"block_larger_than_blksize_is_error_4", &memUploads{}, false, func(c *gatewaytest.Client) {
			c.WRQ("f", "octet", "blksize", "8")
			c.Expect(gatewaytest.OACK("blksize", "8"))
			c.Send(gatewaytest.Data(1, []byte("123456789")))
			c.Expect(gatewaytest.ErrorPacket(4, "block larger than the negotiated blksize"))
		}, gateway.OutcomeError, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ts *gatewaytest.Server
			if tt.off {
				ts = gatewaytest.NewServer(t, gatewaytest.Files{}, gatewaytest.FixedTimer)
			} else {
				ts = uploadServer(t, tt.h)
			}
			c := gatewaytest.NewClient(t, ts.Addr())
			tt.steps(c)
			if tt.off {
				if st := ts.WaitIdle(t); st.WriteRequests != 1 {
					t.Errorf("WriteRequests %d, want 1", st.WriteRequests)
				}
				return
			}
			st := ts.NextStats(t)
			if st.Outcome != tt.outcome {
				t.Errorf("outcome %v, want %v", st.Outcome, tt.outcome)
			}
			if got := len(tt.h.abortedPaths()) == 1; got != tt.aborted {
				t.Errorf("aborted %v, want %v", tt.h.abortedPaths(), tt.aborted)
			}
			if _, ok := tt.h.file("f"); ok {
				t.Error("a file was stored")
			}
			ss := ts.WaitIdle(t)
			if ss.Uploads[tt.outcome] != 1 {
				t.Errorf("ServerStats.Uploads %v, want one %v", ss.Uploads, tt.outcome)
			}
		})
	}
}

// TestUploadClientVanishes: a client that stops sending mid-upload times
// out, and the upload is aborted.
func TestUploadClientVanishes(t *testing.T) {
	h := &memUploads{}
	ts := uploadServer(t, h, func(s *gateway.Server) { s.Timeout = 200 * time.Millisecond; s.Retries = 2 })
	c := gatewaytest.NewClient(t, ts.Addr())
	c.WRQ("v", "octet")
	c.Expect(gatewaytest.Ack(0))
	c.Send(gatewaytest.Data(1, gatewaytest.Pattern(512)))
	c.Expect(gatewaytest.Ack(1))
	// The receiver's timer sends the ACK again, then gives up. (A run
	// slowed down past the session's deadline may give up before the
	// resend: regression, a flaky CI run; only what is sent is checked.)
	for {
		b, _, ok := c.TryRecv(time.Second)
		if !ok {
			break
		}
		if !bytes.Equal(b, gatewaytest.Ack(1)) {
			t.Fatalf("got %q, want ACK 1 again or nothing", gatewaytest.Abbrev(b))
		}
	}
	st := ts.NextStats(t)
	if st.Outcome != gateway.OutcomeTimeout || len(h.abortedPaths()) != 1 {
		t.Fatalf("outcome %v, aborted %v: want timeout, one", st.Outcome, h.abortedPaths())
	}
}

// TestUploadBatchesWrites: the upload is written in batches, not a write
// per block.
func TestUploadBatchesWrites(t *testing.T) {
	h := &memUploads{}
	ts := uploadServer(t, h)
	c := gatewaytest.NewClient(t, ts.Addr())
	c.WRQ("b", "octet")
	c.Expect(gatewaytest.Ack(0))
	const n = 200
	for i := 1; i <= n; i++ {
		c.Send(gatewaytest.Data(uint16(i), gatewaytest.Pattern(512)))
		c.Expect(gatewaytest.Ack(uint16(i)))
	}
	c.Send(gatewaytest.Data(n+1, nil))
	c.Expect(gatewaytest.Ack(n + 1))
	ts.NextStats(t)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.writes) > 5 {
		t.Errorf("%d writes for %d blocks: %v", len(h.writes), n, h.writes)
	}
}

// TestUploadLargeBlocks: blocks larger than a request (the session's small
// receive buffer) arrive whole; in single-port mode, where the listener
// hands a session datagrams of at most a request's size plus a header,
// an upload's blksize is capped to fit.
func TestUploadLargeBlocks(t *testing.T) {
	for _, single := range []bool{false, true} {
		t.Run("single_port_"+strconv.FormatBool(single), func(t *testing.T) {
			h := &memUploads{}
			ts := uploadServer(t, h, func(s *gateway.Server) { s.SinglePort = single })
			c := gatewaytest.NewClient(t, ts.Addr())
			c.WRQ("big", "octet", "blksize", "1468")
			blk := 1468
			if single {
				blk = 512
			}
			c.Expect(gatewaytest.OACK("blksize", strconv.Itoa(blk)))
			want := gatewaytest.Pattern(3*blk + 5)
			for i := 0; i*blk <= len(want); i++ {
				c.Send(gatewaytest.Data(uint16(i+1), want[i*blk:min((i+1)*blk, len(want))]))
				c.Expect(gatewaytest.Ack(uint16(i + 1)))
			}
			ts.NextStats(t)
			if got, _ := h.file("big"); !bytes.Equal(got, want) {
				t.Fatalf("stored %d bytes, want %d", len(got), len(want))
			}
		})
	}
}

// TestUploadDallyEndsOnShutdown: a graceful shutdown does not wait for a
// stored upload's dally (a client may negotiate a timeout of seconds).
func TestUploadDallyEndsOnShutdown(t *testing.T) {
	h := &memUploads{}
	ts := uploadServer(t, h, func(s *gateway.Server) { s.Timeout = 10 * time.Second })
	c := gatewaytest.NewClient(t, ts.Addr())
	c.WRQ("d", "octet", "timeout", "10")
	c.Expect(gatewaytest.OACK("timeout", "10"))
	c.Send(gatewaytest.Data(1, []byte("x")))
	c.Expect(gatewaytest.Ack(1))
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.Config.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v after %v", err, time.Since(start))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v: it waited for the dally", d)
	}
	if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
		t.Errorf("outcome %v", st.Outcome)
	}
}

// TestUploadOversizedBlockIsError4 is a regression test (review): a DATA
// longer than the negotiated blksize was cut to blksize by the receive
// buffer, stored and acknowledged as a full block. It is now ERROR 4,
// whatever the blksize and in single-port mode too.
func TestUploadOversizedBlockIsError4(t *testing.T) {
	for _, tc := range []struct {
		name   string
		single bool
		opts   []string
		oack   []string
		blk    int
	}{
		{"default_512", false, nil, nil, 512},
		{"blksize_1468", false, []string{"blksize", "1468"}, []string{"blksize", "1468"}, 1468},
		{"single_port_512", true, nil, nil, 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &memUploads{}
			ts := uploadServer(t, h, func(s *gateway.Server) { s.SinglePort = tc.single })
			c := gatewaytest.NewClient(t, ts.Addr())
			c.WRQ("f", "octet", tc.opts...)
			if tc.oack != nil {
				c.Expect(gatewaytest.OACK(tc.oack...))
			} else {
				c.Expect(gatewaytest.Ack(0))
			}
			c.Send(gatewaytest.Data(1, gatewaytest.Pattern(tc.blk+100)))
			c.Expect(gatewaytest.ErrorPacket(4, "block larger than the negotiated blksize"))
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeError {
				t.Errorf("outcome %v", st.Outcome)
			}
			if _, ok := h.file("f"); ok {
				t.Error("stored")
			}
		})
	}
}

// stallingUploads accepts uploads whose Write blocks until the session's
// context ends, as a backend that stopped reading its stream makes the
// remote upload's Send block.
type stallingUploads struct{ aborted chan struct{} }

type stallingUpload struct {
	ctx context.Context
	h   *stallingUploads
}

func (h *stallingUploads) ReceiveTFTP(ctx context.Context, _ *gateway.Request) (gateway.Upload, error) {
	return &stallingUpload{ctx: ctx, h: h}, nil
}
func (u *stallingUpload) Write([]byte) (int, error) { <-u.ctx.Done(); return 0, u.ctx.Err() }
func (u *stallingUpload) Commit() error             { return nil }
func (u *stallingUpload) Abort()                    { close(u.h.aborted) }

// TestUploadStalledSinkEndsTheSession is a regression test (review): a
// sink that stops taking bytes (a backend that accepted, then stopped
// reading) held the session, its port, slot and window memory until a
// forced shutdown. The write is now watched like a content read: after
// as long as the session waits for a silent client, the session is
// cancelled, and the upload aborted.
func TestUploadStalledSinkEndsTheSession(t *testing.T) {
	h := &stallingUploads{aborted: make(chan struct{})}
	ts := gatewaytest.NewServer(t, gatewaytest.Files{}, gatewaytest.FixedTimer, func(s *gateway.Server) {
		s.WriteHandler = h
		s.Timeout, s.Retries = 100*time.Millisecond, 2
	})
	c := gatewaytest.NewClient(t, ts.Addr())
	c.WRQ("f", "octet", "blksize", "8192")
	c.Expect(gatewaytest.OACK("blksize", "8192"))
	for blk := uint16(1); blk <= 5; blk++ { // 40 KiB: more than a batch
		c.Send(gatewaytest.Data(blk, gatewaytest.Pattern(8192)))
		if _, _, ok := c.TryRecv(50 * time.Millisecond); !ok && blk < 4 {
			t.Fatalf("no ACK %d", blk)
		}
	}
	select {
	case <-h.aborted:
	case <-time.After(5 * time.Second):
		t.Fatal("the session still runs 5 s after its sink stalled")
	}
	st := ts.NextStats(t)
	if st.Outcome != gateway.OutcomeError || st.ErrorSent == nil || st.ErrorSent.Message != "timeout" {
		t.Errorf("outcome %v, error %v; want error, timeout", st.Outcome, st.ErrorSent)
	}
	if ss := ts.WaitIdle(t); ss.ActiveSessions != 0 {
		t.Errorf("%d sessions still active", ss.ActiveSessions)
	}
}

// TestUploadSinglePortWindowCapped is a regression test (review): in
// single-port mode the listener queues a few datagrams per session, and
// an upload granted a larger window lost every burst. Its window is now
// capped to the queue.
func TestUploadSinglePortWindowCapped(t *testing.T) {
	h := &memUploads{}
	ts := uploadServer(t, h, func(s *gateway.Server) { s.SinglePort = true })
	c := gatewaytest.NewClient(t, ts.Addr())
	c.WRQ("w", "octet", "windowsize", "32")
	c.Expect(gatewaytest.OACK("windowsize", "8"))
	c.SendError(0, "enough")
	ts.NextStats(t)
}

// TestUploadDuplicateRestartsWindowCount is a regression test (review): a
// duplicate in the middle of a window gets an ACK, after which the sender
// restarts its window; the receiver kept counting the old one and
// acknowledged inside the new window, which the sender takes for a gap.
func TestUploadDuplicateRestartsWindowCount(t *testing.T) {
	h := &memUploads{}
	ts := uploadServer(t, h)
	c := gatewaytest.NewClient(t, ts.Addr())
	c.WRQ("w", "octet", "blksize", "8", "windowsize", "4")
	c.Expect(gatewaytest.OACK("blksize", "8", "windowsize", "4"))
	blk := func(n int) []byte { return gatewaytest.Pattern(8 * n)[8*(n-1):] }
	for n := 1; n <= 3; n++ {
		c.Send(gatewaytest.Data(uint16(n), blk(n)))
	}
	c.Send(gatewaytest.Data(1, blk(1))) // a duplicate
	c.Expect(gatewaytest.Ack(3))
	for n := 4; n <= 7; n++ { // the sender's window after ACK 3
		c.Send(gatewaytest.Data(uint16(n), blk(n)))
	}
	c.Expect(gatewaytest.Ack(7))
	c.Send(gatewaytest.Data(8, nil))
	c.Expect(gatewaytest.Ack(8))
	ts.NextStats(t)
}

// TestUploadUnansweredRequestsCannotTakeWindowMemory is a regression test
// (review): write requests that are never answered (spoofed sources) each
// took a receive buffer from window memory, until real clients got
// "server busy". Unanswered uploads may hold an eighth of the window
// memory; beyond it they get blksize 512 (no large buffer), and reads and
// answered uploads keep theirs.
func TestUploadUnansweredRequestsCannotTakeWindowMemory(t *testing.T) {
	h := &memUploads{}
	ts := uploadServer(t, h, func(s *gateway.Server) {
		s.MaxWindowMemory = 1 << 20
		s.MaxWindowMemoryPerClient = -1
		s.MaxSessionsPerClient = -1
		s.ClientRequestRate = -1
	})
	small := 0
	for i := range 40 {
		c := gatewaytest.NewClient(t, ts.Addr())
		c.WRQ("spoofed"+strconv.Itoa(i), "octet", "blksize", "16384")
		b, _ := c.Recv(2 * time.Second)
		if bytes.Equal(b, gatewaytest.OACK("blksize", "512")) {
			small++
		} else if !bytes.Equal(b, gatewaytest.OACK("blksize", "16384")) {
			t.Fatalf("WRQ %d: got %q", i, gatewaytest.Abbrev(b))
		}
	}
	if small == 0 {
		t.Fatal("every unanswered upload got a large receive buffer")
	}
	// A real upload still gets its batch, and a read its window.
	c := gatewaytest.NewClient(t, ts.Addr())
	c.WRQ("real", "octet")
	c.Expect(gatewaytest.Ack(0))
	c.Send(gatewaytest.Data(1, []byte("real")))
	c.Expect(gatewaytest.Ack(1))
	if got, _ := h.file("real"); string(got) != "real" {
		t.Fatalf("the real upload: %q", got)
	}
	t.Logf("%d of 40 unanswered uploads fell back to blksize 512", small)
}

// TestUploadRefusedPathCounted: a write handler's ErrUploadRefused is
// ERROR 2 "upload not allowed", counted with the write requests of a
// server without uploads.
func TestUploadRefusedPathCounted(t *testing.T) {
	h := &memUploads{refuse: gateway.ErrUploadRefused}
	ts := uploadServer(t, h)
	c := gatewaytest.NewClient(t, ts.Addr())
	c.WRQ("f", "octet")
	c.Expect(gatewaytest.ErrorPacket(2, "upload not allowed"))
	ts.NextStats(t)
	if st := ts.WaitIdle(t); st.WriteRequests != 1 {
		t.Errorf("WriteRequests %d, want 1", st.WriteRequests)
	}
}
