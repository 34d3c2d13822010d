package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// TestSinglePort: with SinglePort every reply comes from the listening
// port (and address), sessions are keyed by client address and port, and
// transfers work lock-step and windowed, several at once.
func TestSinglePort(t *testing.T) {
	content := gatewaytest.Pattern(10 * 512)
	single := func(s *gateway.Server) { s.SinglePort = true }

	t.Run("replies_from_the_listening_port", func(t *testing.T) {
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, single)
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet", "windowsize", "4")
		c.Expect(gatewaytest.OACK("windowsize", "4"))
		if c.TID() != ts.Addr() {
			t.Fatalf("reply from %v, want the listening %v", c.TID(), ts.Addr())
		}
		c.Ack(0)
		for n := 1; n <= 4; n++ {
			c.Expect(gatewaytest.Data(uint16(n), content[(n-1)*512:n*512]))
		}
		c.Ack(2) // a gap: restart at 3
		for n := 3; n <= 6; n++ {
			c.Expect(gatewaytest.Data(uint16(n), content[(n-1)*512:n*512]))
		}
		c.Ack(6)
		for n := 7; n <= 10; n++ {
			c.Expect(gatewaytest.Data(uint16(n), content[(n-1)*512:n*512]))
		}
		c.Ack(10)
		c.Expect(gatewaytest.Data(11, nil))
		c.Ack(11)
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK || st.BytesAcked != int64(len(content)) {
			t.Errorf("outcome %v bytes %d", st.Outcome, st.BytesAcked)
		}
	})
	t.Run("reply_from_the_request_address_on_a_wildcard_socket", func(t *testing.T) {
		ts := gatewaytest.NewServerOn(t, "udp4", "0.0.0.0:0", gatewaytest.Files{"f": []byte("x")}, gatewaytest.FixedTimer, single)
		dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.5"), ts.Addr().Port())
		c := gatewaytest.NewClientOn(t, "udp4", "127.0.0.1:0", dst)
		c.RRQ("f", "octet")
		c.Expect(gatewaytest.Data(1, []byte("x")))
		if c.TID() != dst {
			t.Errorf("reply from %v, want %v", c.TID(), dst)
		}
		c.Ack(1)
		ts.NextStats(t)
	})
	t.Run("dual_stack", func(t *testing.T) {
		ts := gatewaytest.NewServerOn(t, "udp", "[::]:0", gatewaytest.Files{"f": []byte("x")}, gatewaytest.FixedTimer, single)
		for _, a := range []string{"127.0.0.1", "::1"} {
			dst := netip.AddrPortFrom(netip.MustParseAddr(a), ts.Addr().Port())
			network, laddr := "udp4", "127.0.0.1:0"
			if dst.Addr().Is6() {
				network, laddr = "udp6", "[::1]:0"
			}
			c := gatewaytest.NewClientOn(t, network, laddr, dst)
			c.RRQ("f", "octet")
			c.Expect(gatewaytest.Data(1, []byte("x")))
			if c.TID() != dst {
				t.Errorf("reply from %v, want %v", c.TID(), dst)
			}
			c.Ack(1)
			ts.NextStats(t)
		}
	})
	t.Run("duplicate_RRQ_ignored_and_retransmission_on_timeout", func(t *testing.T) {
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) {
			s.SinglePort, s.Timeout, s.Retries = true, 100*time.Millisecond, 2
		})
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		c.Expect(gatewaytest.Data(1, content[:512]))
		c.RRQ("f", "octet")
		c.RRQ("f", "octet")
		// (A request for another file from the port is a new transfer: see
		// TestChangedRequestFromSamePortIsNew.) The timeout's resend, not
		// a new session. Unanswered, DATA 1 is
		// sent at 0 and 100 ms; the next would be at 300 ms, when the
		// session gives up ((2+1) x 100 ms).
		c.Expect(gatewaytest.Data(1, content[:512]))
		c.ExpectNothing(350 * time.Millisecond)
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeTimeout || st.Retransmits != 1 {
			t.Errorf("outcome %v retransmits %d", st.Outcome, st.Retransmits)
		}
		if n := ts.Config.Stats().DuplicateRequests; n != 2 {
			t.Errorf("DuplicateRequests %d, want 2", n)
		}
	})
	t.Run("concurrent_clients", func(t *testing.T) {
		big := gatewaytest.Pattern(300 << 10)
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": big}, gatewaytest.FixedTimer, single)
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf bytes.Buffer
				o := tftpclient.Options{BlockSize: 1468, WindowSize: 1 + i%8, TSize: true, RetransmitTimeout: time.Second}
				if _, err := tftpclient.Get(context.Background(), ts.Addr().String(), "f", &buf, o); err != nil {
					t.Errorf("client %d: %v", i, err)
				} else if !bytes.Equal(buf.Bytes(), big) {
					t.Errorf("client %d: content differs", i)
				}
			}()
		}
		wg.Wait()
		for range 20 {
			ts.NextStats(t)
		}
	})
}

// TestSinglePortShutdownDrains is a regression test (found in review): Shutdown promises to let running
// sessions finish, and when its context ends first to send them ERROR 0
// "server shutting down". In single-port mode every session sends and
// receives through the listening socket, which Shutdown closes at once:
// the running session can neither receive its client's ACKs nor send
// anything, so it neither finishes nor gets the ERROR.
func TestSinglePortShutdownDrains(t *testing.T) {
	content := gatewaytest.Pattern(1500)
	tests := []struct {
		name    string
		drain   time.Duration // Shutdown's context
		wantErr bool          // a forced end: ERROR 0 "server shutting down"
	}{
		{"graceful_drain_finishes_the_transfer", 3 * time.Second, false},
		{"forced_end_sends_ERROR_0", 300 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) {
				s.SinglePort = true
				s.Timeout = 10 * time.Second
			})
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", "octet")
			c.Expect(gatewaytest.Data(1, content[:512]))
			ctx, cancel := context.WithTimeout(context.Background(), tt.drain)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- ts.Config.Shutdown(ctx) }()
			time.Sleep(50 * time.Millisecond) // let Shutdown close the listener
			if tt.wantErr {
				b, _, ok := c.TryRecv(2 * time.Second)
				if !ok {
					<-done
					st := ts.NextStats(t)
					t.Fatalf("no ERROR 0 \"server shutting down\" reached the client; session outcome %v, ErrorSent %v", st.Outcome, st.ErrorSent)
				}
				if want := gatewaytest.ErrorPacket(0, "server shutting down"); !bytes.Equal(b, want) {
					t.Fatalf("got %q, want %q", b, want)
				}
				<-done
				ts.NextStats(t)
				return
			}
			c.Ack(1)
			b, _, ok := c.TryRecv(time.Second)
			if !ok {
				derr := <-done
				st := ts.NextStats(t)
				t.Fatalf("no DATA 2 within 1s of ACK 1 while Shutdown drains; Shutdown = %v; session outcome %v, ErrorSent %v",
					derr, st.Outcome, st.ErrorSent)
			}
			if want := gatewaytest.Data(2, content[512:1024]); !bytes.Equal(b, want) {
				t.Fatalf("got %q, want DATA 2", gatewaytest.Abbrev(b))
			}
			c.Ack(2)
			c.Expect(gatewaytest.Data(3, content[1024:]))
			c.Ack(3)
			if err := <-done; err != nil {
				t.Fatalf("Shutdown = %v", err)
			}
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
				t.Errorf("outcome %v, want ok", st.Outcome)
			}
		})
	}
}

// TestSinglePortSocketClosedUnderSessions: the caller of Serve closes the
// PacketConn it passed while single-port sessions still use it. Serve
// returns the read's error (not ErrServerClosed), the sessions, which
// can neither send nor receive, end by their timeout, and nothing panics.
func TestSinglePortSocketClosedUnderSessions(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stats := make(chan gateway.SessionStats, 4)
	srv := &gateway.Server{
		Handler:          gatewaytest.Files{"f": gatewaytest.Pattern(4096)},
		SinglePort:       true,
		Timeout:          100 * time.Millisecond,
		MinTimeout:       time.Hour,
		Retries:          2,
		Logger:           slog.New(slog.DiscardHandler),
		SessionStatsFunc: func(s gateway.SessionStats) { stats <- s },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(pc) }()
	defer srv.Close()
	c := gatewaytest.NewClient(t, pc.LocalAddr().(*net.UDPAddr).AddrPort())
	c.RRQ("f", "octet")
	c.Expect(gatewaytest.Data(1, gatewaytest.Pattern(4096)[:512]))

	pc.Close()
	select {
	case err := <-served:
		if errors.Is(err, gateway.ErrServerClosed) || !errors.Is(err, net.ErrClosed) || !strings.HasPrefix(err.Error(), "gateway: read: read udp") {
			t.Errorf("Serve returned %v, want gateway's read error for a closed socket", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	c.Ack(1) // lost: nobody reads the socket
	select {
	case st := <-stats:
		if st.Outcome != gateway.OutcomeTimeout && st.Outcome != gateway.OutcomeError {
			t.Errorf("session outcome %v, want a timeout or an error", st.Outcome)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not end")
	}
}

// TestSinglePortRefusals is a regression test: in single-port mode a read
// refused before its transfer (a missing file, a path leaving the root, a
// handler's error) got no ERROR at all. The path's or the handler's error
// was taken for the session socket's, which single-port mode never opens:
// "cannot open session socket" was logged, the client was left to time
// out, and a PXELINUX config search took minutes.
func TestSinglePortRefusals(t *testing.T) {
	tests := []struct {
		name, path string
		want       []byte
		outcome    gateway.Outcome
	}{
		{"missing_file_ERROR_1", "pxelinux.cfg/01-52-54-00-00-00-01", gatewaytest.ErrorPacket(1, "file not found"), gateway.OutcomeError},
		{"path_leaving_the_root_ERROR_2", "../etc/passwd", gatewaytest.ErrorPacket(2, "access violation"), gateway.OutcomeError},
		{"handler_error_ERROR_0", "broken", gatewaytest.ErrorPacket(0, "internal error"), gateway.OutcomeError},
	}
	h := gateway.HandlerFunc(func(_ context.Context, r *gateway.Request) (gateway.Content, error) {
		if r.Path == "broken" {
			return nil, errors.New("backend down")
		}
		return gatewaytest.Files{"f": []byte("x")}.ServeTFTP(context.Background(), r)
	})
	ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer, func(s *gateway.Server) { s.SinglePort = true })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ(tt.path, "octet")
			c.Expect(tt.want)
			if c.TID() != ts.Addr() {
				t.Errorf("ERROR from %v, want the listening %v", c.TID(), ts.Addr())
			}
			st := ts.NextStats(t)
			if st.Outcome != tt.outcome || st.ErrorSent == nil || st.ErrorSent.Code != gateway.ErrorCode(tt.want[3]) {
				t.Errorf("outcome %v, ERROR sent %v", st.Outcome, st.ErrorSent)
			}
		})
	}
	// The server still serves.
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet")
	c.Expect(gatewaytest.Data(1, []byte("x")))
	c.Ack(1)
	ts.NextStats(t)
}
