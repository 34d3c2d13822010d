package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"os"
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
