//go:build linux && !386 && !s390x

package gateway_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
)

// serveDir serves a temporary directory holding name with b through
// gateway.FileServer, whose large blocks are sent straight from the file.
func serveDir(t *testing.T, network, addr, name string, b []byte) (*gatewaytest.Server, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	fast := func(s *gateway.Server) { s.Timeout = 300 * time.Millisecond }
	return gatewaytest.NewServerOn(t, network, addr, gateway.FileServer(root), gatewaytest.FixedTimer, fast), path
}

// TestRFC2348_LargeBlocksFromFile: blocks too large for UDP segmentation
// are sent from the file's pages, not from the window. The packets on the
// wire must be the window path's to the byte: every block, the short or
// empty final one, the blocks of a window, a retransmission after a
// timeout, over IPv4 and IPv6.
func TestRFC2348_LargeBlocksFromFile(t *testing.T) {
	const bs = 65464
	tests := []struct {
		name    string
		network string
		addr    string
		size    int
		window  int
	}{
		{"lockstep_short_final_block", "udp4", "127.0.0.1:0", 2*bs + 1000, 1},
		{"lockstep_empty_final_block", "udp4", "127.0.0.1:0", 2 * bs, 1},
		{"one_byte", "udp4", "127.0.0.1:0", 1, 1},
		{"window_4", "udp4", "127.0.0.1:0", 5*bs + 7, 4},
		{"ipv6_window_2", "udp6", "[::1]:0", 3*bs + 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			content := gatewaytest.Pattern(tt.size)
			ts, _ := serveDir(t, tt.network, tt.addr, "big.bin", content)
			if tt.network == "udp6" && !ts.Addr().Addr().Is6() {
				t.Skip("no IPv6 loopback")
			}
			c := gatewaytest.NewClient(t, ts.Addr())
			opts := []string{"blksize", strconv.Itoa(bs)}
			if tt.window > 1 {
				opts = append(opts, "windowsize", strconv.Itoa(tt.window))
			}
			c.RRQ("big.bin", "octet", opts...)
			c.Recv(5e9) // the OACK
			c.Ack(0)
			block := func(n int) []byte {
				lo := min((n-1)*bs, tt.size)
				return gatewaytest.Data(uint16(n), content[lo:min(lo+bs, tt.size)])
			}
			last := tt.size/bs + 1
			for first := 1; first <= last; first += tt.window {
				end := min(first+tt.window-1, last)
				for n := first; n <= end; n++ {
					c.Expect(block(n))
				}
				if first == 1 {
					// No ACK: the window comes again after the timeout.
					for n := first; n <= end; n++ {
						c.Expect(block(n))
					}
				}
				c.Ack(uint16(end))
			}
			st := ts.NextStats(t)
			if st.Outcome != gateway.OutcomeOK || st.BytesAcked != int64(tt.size) {
				t.Errorf("outcome %v, %d bytes acknowledged; want ok, %d", st.Outcome, st.BytesAcked, tt.size)
			}
			if want := int64(min(tt.window, last)); st.Retransmits != want {
				t.Errorf("%d retransmits, want %d", st.Retransmits, want)
			}
		})
	}
}

// TestLargeBlocksFromTruncatedFile: a file cut short under a transfer
// whose blocks are sent from its pages ends the session with ERROR 0 (the
// kernel refuses to read past the file's end); it never brings down the
// server, which would be SIGBUS had Go code read those pages.
func TestLargeBlocksFromTruncatedFile(t *testing.T) {
	const bs = 65464
	tests := []struct {
		name   string
		cut    int64 // the file's size after block 1 was sent
		window int
	}{
		{"to_empty", 0, 1},
		{"inside_block_1", 1000, 1},
		{"window_to_empty", 0, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := gatewaytest.Pattern(8 * bs)
			ts, path := serveDir(t, "udp4", "127.0.0.1:0", "big.bin", content)
			c := gatewaytest.NewClient(t, ts.Addr())
			opts := []string{"blksize", strconv.Itoa(bs), "windowsize", strconv.Itoa(tt.window)}
			c.RRQ("big.bin", "octet", opts...)
			c.Recv(5e9)
			c.Ack(0)
			for n := 1; n <= tt.window; n++ {
				c.Expect(gatewaytest.Data(uint16(n), content[(n-1)*bs:n*bs]))
			}
			if err := os.Truncate(path, tt.cut); err != nil {
				t.Fatal(err)
			}
			c.Ack(uint16(tt.window))
			c.Expect(gatewaytest.ErrorPacket(0, "file changed while being sent"))
			st := ts.NextStats(t)
			if st.Outcome != gateway.OutcomeError {
				t.Errorf("outcome %v, want error", st.Outcome)
			}

			// The server still serves.
			if err := os.WriteFile(path, content[:10], 0o644); err != nil {
				t.Fatal(err)
			}
			c2 := gatewaytest.NewClient(t, ts.Addr())
			c2.RRQ("big.bin", "octet")
			c2.Expect(gatewaytest.Data(1, content[:10]))
			c2.Ack(1)
			ts.NextStats(t)
		})
	}
}

// TestLargeBlocksFromFileFinalAckPastTheMapping is a regression test: the
// ACK of a final short (or empty) block drops the acknowledged pages up to
// an offset past the file's end; with 4 MiB or more not yet dropped, that
// sliced past the mapping and panicked, so a file delivered in full ended
// with ERROR 0 "internal error".
func TestLargeBlocksFromFileFinalAckPastTheMapping(t *testing.T) {
	const bs = 65464
	for _, size := range []int{4<<20 + 1000, 70 * bs} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			t.Parallel()
			content := gatewaytest.Pattern(size)
			ts, _ := serveDir(t, "udp4", "127.0.0.1:0", "big.bin", content)
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("big.bin", "octet", "blksize", strconv.Itoa(bs))
			c.Recv(5 * time.Second)
			c.Ack(0)
			last := size/bs + 1
			for n := 1; n <= last; n++ {
				lo := (n - 1) * bs
				c.Expect(gatewaytest.Data(uint16(n), content[lo:min(lo+bs, size)]))
				c.Ack(uint16(n))
			}
			st := ts.NextStats(t)
			if st.Outcome != gateway.OutcomeOK || st.ErrorSent != nil {
				t.Errorf("outcome %v, error sent %v; want ok, none", st.Outcome, st.ErrorSent)
			}
			c.ExpectNothing(200 * time.Millisecond)
		})
	}
}

// TestLargeBlocksFromFileCutInsideItsLastPage is a regression test: a file
// cut by fewer bytes than a page under a transfer still maps its last page
// whole, the bytes past the new end as zeros. The final block went out
// full length with 500 zero bytes the file never had, and the session
// ended ok; the size is now checked before the final block.
func TestLargeBlocksFromFileCutInsideItsLastPage(t *testing.T) {
	const bs = 65464
	size := 2*bs + 1000 // the end lies inside a page
	content := gatewaytest.Pattern(size)
	ts, path := serveDir(t, "udp4", "127.0.0.1:0", "big.bin", content)
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("big.bin", "octet", "blksize", strconv.Itoa(bs))
	c.Recv(5 * time.Second)
	c.Ack(0)
	c.Expect(gatewaytest.Data(1, content[:bs]))
	c.Ack(1)
	c.Expect(gatewaytest.Data(2, content[bs:2*bs]))
	if err := os.Truncate(path, int64(size-500)); err != nil {
		t.Fatal(err)
	}
	c.Ack(2)
	c.Expect(gatewaytest.ErrorPacket(0, "file changed while being sent"))
	if st := ts.NextStats(t); st.Outcome != gateway.OutcomeError {
		t.Errorf("outcome %v, want error", st.Outcome)
	}
}

// TestFileRewrittenInPlaceUnderATransfer is a regression test: a file
// rewritten in place (cp, os.WriteFile: truncate, then write) with other
// bytes, longer or of the same length, or appended to, while a transfer
// runs went out as a complete download mixing both versions when its
// blocks came from the mapping (and, for a same-length rewrite, from the
// window too). The file is now checked to be the one opened (size,
// modification and change time) before the final block.
func TestFileRewrittenInPlaceUnderATransfer(t *testing.T) {
	const size = 3*65464 + 1000
	tests := []struct {
		name    string
		blksize int
		change  func(path string, old []byte) error
	}{
		{"mapped_rewritten_longer", 65464, func(p string, old []byte) error {
			return os.WriteFile(p, bytes.Repeat([]byte{0xAA}, len(old)+5000), 0o644)
		}},
		{"mapped_rewritten_same_length", 65464, func(p string, old []byte) error {
			return os.WriteFile(p, bytes.Repeat([]byte{0xAA}, len(old)), 0o644)
		}},
		{"mapped_appended", 65464, func(p string, _ []byte) error { return appendTo(p, []byte("more")) }},
		{"window_rewritten_same_length", 8192, func(p string, old []byte) error {
			return os.WriteFile(p, bytes.Repeat([]byte{0xAA}, len(old)), 0o644)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			content := gatewaytest.Pattern(size)
			ts, path := serveDir(t, "udp4", "127.0.0.1:0", "big.bin", content)
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("big.bin", "octet", "blksize", strconv.Itoa(tt.blksize))
			c.Recv(5 * time.Second)
			c.Ack(0)
			c.Expect(gatewaytest.Data(1, content[:tt.blksize]))
			time.Sleep(20 * time.Millisecond) // a change time the file system can tell apart
			if err := tt.change(path, content); err != nil {
				t.Fatal(err)
			}
			last := uint16(size/tt.blksize + 1)
			for blk := uint16(1); ; blk++ {
				c.Ack(blk)
				p, _ := c.Recv(5 * time.Second)
				if bytes.Equal(p, gatewaytest.ErrorPacket(0, "file changed while being sent")) {
					break
				}
				if blk+1 == last || len(p) < 4 || p[1] != 3 {
					t.Fatalf("after the file changed, block %d: got %q, want ERROR 0 before the final block", blk+1, gatewaytest.Abbrev(p))
				}
			}
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeError {
				t.Errorf("outcome %v, want error", st.Outcome)
			}
		})
	}
}

func appendTo(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
