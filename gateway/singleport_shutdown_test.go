package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
)

// TestSinglePortShutdownDrains is a regression test (found in review): Shutdown promises to let running
// sessions finish, and when its context ends first to send them ERROR 0
// "server shutting down". In single-port mode every session sends and
// receives through the listening socket, which Shutdown closes at once:
// the running session can neither receive its client's ACKs nor send
// anything, so it neither finishes nor gets the ERROR.
func TestSinglePortShutdownDrains(t *testing.T) {
	content := pattern(1500)
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
			ts := startServer(t, files{"f": content}, func(s *gateway.Server) {
				s.SinglePort = true
				s.Timeout = 10 * time.Second
			})
			c := newClient(t, ts.addr)
			c.rrq("f", "octet")
			c.expect(data(1, content[:512]))
			ctx, cancel := context.WithTimeout(context.Background(), tt.drain)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- ts.srv.Shutdown(ctx) }()
			time.Sleep(50 * time.Millisecond) // let Shutdown close the listener
			if tt.wantErr {
				c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, _, err := c.conn.ReadFromUDPAddrPort(c.buf)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					<-done
					st := ts.nextStats(t)
					t.Fatalf("no ERROR 0 \"server shutting down\" reached the client; session outcome %v, ErrorSent %v", st.Outcome, st.ErrorSent)
				}
				if want := errPkt(0, "server shutting down"); !bytes.Equal(c.buf[:n], want) {
					t.Fatalf("got %q, want %q", c.buf[:n], want)
				}
				<-done
				ts.nextStats(t)
				return
			}
			c.ack(1)
			c.conn.SetReadDeadline(time.Now().Add(time.Second))
			n, _, err := c.conn.ReadFromUDPAddrPort(c.buf)
			if err != nil {
				derr := <-done
				st := ts.nextStats(t)
				t.Fatalf("no DATA 2 after ACK 1 while Shutdown drains (%v); Shutdown = %v; session outcome %v, ErrorSent %v",
					err, derr, st.Outcome, st.ErrorSent)
			}
			if want := data(2, content[512:1024]); !bytes.Equal(c.buf[:n], want) {
				t.Fatalf("got %q, want DATA 2", trim(c.buf[:n]))
			}
			c.ack(2)
			c.expect(data(3, content[1024:]))
			c.ack(3)
			if err := <-done; err != nil {
				t.Fatalf("Shutdown = %v", err)
			}
			if st := ts.nextStats(t); st.Outcome != gateway.OutcomeOK {
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
		Handler:          files{"f": pattern(4096)},
		SinglePort:       true,
		Timeout:          100 * time.Millisecond,
		MinTimeout:       time.Hour,
		Retries:          2,
		Logger:           discardLogger(),
		SessionStatsFunc: func(s gateway.SessionStats) { stats <- s },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(pc) }()
	defer srv.Close()
	c := newClient(t, pc.LocalAddr().(*net.UDPAddr).AddrPort())
	c.rrq("f", "octet")
	c.expect(data(1, pattern(4096)[:512]))

	pc.Close()
	select {
	case err := <-served:
		if errors.Is(err, gateway.ErrServerClosed) || !errors.Is(err, net.ErrClosed) || !strings.HasPrefix(err.Error(), "gateway: read: read udp") {
			t.Errorf("Serve returned %v, want gateway's read error for a closed socket", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	c.ack(1) // lost: nobody reads the socket
	select {
	case st := <-stats:
		if st.Outcome != gateway.OutcomeTimeout && st.Outcome != gateway.OutcomeError {
			t.Errorf("session outcome %v, want a timeout or an error", st.Outcome)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not end")
	}
}
