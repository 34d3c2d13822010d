package gateway_test

import (
	"bytes"
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// TestSinglePort: with SinglePort every reply comes from the listening
// port (and address), sessions are keyed by client address and port, and
// transfers work lock-step and windowed, several at once.
func TestSinglePort(t *testing.T) {
	content := pattern(10 * 512)
	single := func(s *gateway.Server) { s.SinglePort = true }

	t.Run("replies_from_the_listening_port", func(t *testing.T) {
		ts := startServer(t, files{"f": content}, single)
		c := newClient(t, ts.addr)
		c.rrq("f", "octet", "windowsize", "4")
		c.expect(oack("windowsize", "4"))
		if c.tid != ts.addr {
			t.Fatalf("reply from %v, want the listening %v", c.tid, ts.addr)
		}
		c.ack(0)
		for n := 1; n <= 4; n++ {
			c.expect(data(uint16(n), content[(n-1)*512:n*512]))
		}
		c.ack(2) // a gap: restart at 3
		for n := 3; n <= 6; n++ {
			c.expect(data(uint16(n), content[(n-1)*512:n*512]))
		}
		c.ack(6)
		for n := 7; n <= 10; n++ {
			c.expect(data(uint16(n), content[(n-1)*512:n*512]))
		}
		c.ack(10)
		c.expect(data(11, nil))
		c.ack(11)
		if st := ts.nextStats(t); st.Outcome != gateway.OutcomeOK || st.BytesAcked != int64(len(content)) {
			t.Errorf("outcome %v bytes %d", st.Outcome, st.BytesAcked)
		}
	})
	t.Run("reply_from_the_request_address_on_a_wildcard_socket", func(t *testing.T) {
		ts := startServerOn(t, "udp4", "0.0.0.0:0", files{"f": []byte("x")}, single)
		dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.5"), ts.addr.Port())
		c := newClientOn(t, "udp4", "127.0.0.1:0", dst)
		c.rrq("f", "octet")
		c.expect(data(1, []byte("x")))
		if c.tid != dst {
			t.Errorf("reply from %v, want %v", c.tid, dst)
		}
		c.ack(1)
		ts.nextStats(t)
	})
	t.Run("dual_stack", func(t *testing.T) {
		ts := startServerOn(t, "udp", "[::]:0", files{"f": []byte("x")}, single)
		for _, a := range []string{"127.0.0.1", "::1"} {
			dst := netip.AddrPortFrom(netip.MustParseAddr(a), ts.addr.Port())
			network, laddr := "udp4", "127.0.0.1:0"
			if dst.Addr().Is6() {
				network, laddr = "udp6", "[::1]:0"
			}
			c := newClientOn(t, network, laddr, dst)
			c.rrq("f", "octet")
			c.expect(data(1, []byte("x")))
			if c.tid != dst {
				t.Errorf("reply from %v, want %v", c.tid, dst)
			}
			c.ack(1)
			ts.nextStats(t)
		}
	})
	t.Run("duplicate_RRQ_ignored_and_retransmission_on_timeout", func(t *testing.T) {
		ts := startServer(t, files{"f": content}, func(s *gateway.Server) {
			s.SinglePort, s.Timeout, s.Retries = true, 100*time.Millisecond, 2
		})
		c := newClient(t, ts.addr)
		c.rrq("f", "octet")
		c.expect(data(1, content[:512]))
		c.rrq("f", "octet")
		c.rrq("other", "octet")
		// The timeout's resend, not a new session. Unanswered, DATA 1 is
		// sent at 0 and 100 ms; the next would be at 300 ms, when the
		// session gives up ((2+1) x 100 ms).
		c.expect(data(1, content[:512]))
		c.expectNothing(350 * time.Millisecond)
		if st := ts.nextStats(t); st.Outcome != gateway.OutcomeTimeout || st.Retransmits != 1 {
			t.Errorf("outcome %v retransmits %d", st.Outcome, st.Retransmits)
		}
		if n := ts.srv.Stats().DuplicateRequests; n != 2 {
			t.Errorf("DuplicateRequests %d, want 2", n)
		}
	})
	t.Run("concurrent_clients", func(t *testing.T) {
		big := pattern(300 << 10)
		ts := startServer(t, files{"f": big}, single)
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf bytes.Buffer
				o := tftpclient.Options{BlockSize: 1468, WindowSize: 1 + i%8, TSize: true, RetransmitTimeout: time.Second}
				if _, err := tftpclient.Get(context.Background(), ts.addr.String(), "f", &buf, o); err != nil {
					t.Errorf("client %d: %v", i, err)
				} else if !bytes.Equal(buf.Bytes(), big) {
					t.Errorf("client %d: content differs", i)
				}
			}()
		}
		wg.Wait()
		for range 20 {
			ts.nextStats(t)
		}
	})
}
