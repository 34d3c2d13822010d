package gateway_test

// Sessions ended from outside (Close, Shutdown
// with an expired context, supersede) stop waiting for their client at
// once, in the default and single-port modes, with new requests arriving
// while the server closes.

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
)

func TestCloseEndsWaitingSessionsPromptly(t *testing.T) {
	content := gatewaytest.Pattern(1500)
	for _, mode := range []string{"default", "single-port", "shutdown-ctx", "single-port-shutdown-ctx"} {
		t.Run(mode, func(t *testing.T) {
			single := mode == "single-port" || mode == "single-port-shutdown-ctx"
			var ended atomic.Int64
			ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) {
				s.Timeout = 20 * time.Second
				s.SinglePort = single
				user := s.SessionStatsFunc
				s.SessionStatsFunc = func(st gateway.SessionStats) {
					ended.Add(1)
					if user != nil {
						user(st)
					}
				}
			})
			const n = 16
			clients := make([]*gatewaytest.Client, n)
			for i := range clients {
				c := gatewaytest.NewClient(t, ts.Addr())
				c.RRQ("f", "octet")
				c.Expect(gatewaytest.Data(1, content[:512]))
				clients[i] = c
			}
			// Requests keep arriving while the server closes.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 200; i++ {
					select {
					case <-stop:
						return
					default:
					}
					c := gatewaytest.NewClient(t, ts.Addr())
					c.RRQ("f", "octet")
					time.Sleep(time.Millisecond)
				}
			}()
			time.Sleep(20 * time.Millisecond)
			start := time.Now()
			switch mode {
			case "default", "single-port":
				ts.Config.Close()
			default:
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				ts.Config.Shutdown(ctx)
				cancel()
			}
			took := time.Since(start)
			close(stop)
			wg.Wait()
			if took > 2*time.Second {
				t.Errorf("%s: closing took %v with %d sessions waiting for an ACK (timeout 20 s)", mode, took, n)
			}
			for i, c := range clients {
				b, _, ok := c.TryRecv(2 * time.Second)
				if !ok || len(b) < 4 || b[1] != 5 {
					t.Errorf("client %d: got %q, %v; want ERROR 0 server shutting down", i, b, ok)
				}
			}
			t.Logf("%s: closed in %v; %d sessions reported; goroutines %d", mode, took, ended.Load(), runtime.NumGoroutine())
		})
	}
}

// TestSupersedeManyTimesFromOnePort: a client that repeats its request from the
// same port many times (each a new session superseding the last, as a
// client rebooting mid-transfer does) leaves one session, and each
// superseded one ends at once rather than at its timeout.
func TestSupersedeManyTimesFromOnePort(t *testing.T) {
	content := gatewaytest.Pattern(1500)
	for _, single := range []bool{false, true} {
		t.Run(fmt.Sprint("single=", single), func(t *testing.T) {
			var mu sync.Mutex
			var outcomes []gateway.SessionStats
			ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) {
				s.Timeout = 20 * time.Second
				s.SinglePort = single
				user := s.SessionStatsFunc
				s.SessionStatsFunc = func(st gateway.SessionStats) {
					mu.Lock()
					outcomes = append(outcomes, st)
					mu.Unlock()
					if user != nil {
						user(st)
					}
				}
			})
			c := gatewaytest.NewClient(t, ts.Addr())
			const n = 10
			for i := 0; i < n; i++ {
				c.SetTID(netip.AddrPort{})
				c.RRQ("f", "octet")
				// The first DATA of the new session (a superseded one's ERROR
				// or DATA may come too).
				deadline := time.Now().Add(2 * time.Second)
				for time.Now().Before(deadline) {
					b, from, ok := c.TryRecv(time.Until(deadline))
					if ok && len(b) > 4 && b[1] == 3 && b[3] == 1 {
						c.SetTID(from)
						c.Ack(1) // progress: the next request supersedes it
						break
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				mu.Lock()
				k := len(outcomes)
				mu.Unlock()
				if k >= n-1 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			k := len(outcomes)
			mu.Unlock()
			if k < n-1 {
				t.Errorf("after 3 s, %d of %d superseded sessions had ended (timeout 20 s)", k, n-1)
			}
		})
	}
}
