package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// TestLimits: over each limit the client gets ERROR 0 "server busy" (never
// silence), the refusal is counted, and other clients are still served.
func TestLimits(t *testing.T) {
	content := pattern(5000)
	busy := errPkt(0, "server busy") // requests long enough for the whole message
	t.Run("MaxSessions", func(t *testing.T) {
		var logged syncbuf.Buffer
		ts := startServer(t, files{"pxelinux.0": content}, func(s *gateway.Server) {
			s.MaxSessions = 1
			s.Logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))
		})
		c1 := newClient(t, ts.addr)
		c1.rrq("pxelinux.0", "octet")
		c1.expect(data(1, content[:512]))
		c2 := newClientOn(t, "udp4", "127.0.0.2:0", ts.addr)
		for range 3 { // refused three times, logged once (found in operator review: never logged)
			c2.rrq("pxelinux.0", "octet")
			c2.expect(busy)
		}
		if n := strings.Count(logged.String(), "refusing read requests"); n != 1 {
			t.Errorf("%d refusal log lines for 3 refusals, want 1:\n%s", n, logged.String())
		}
		c1.sendError(0, "bye")
		ts.nextStats(t)
		c3 := newClientOn(t, "udp4", "127.0.0.2:0", ts.addr) // a slot is free again
		c3.rrq("pxelinux.0", "octet")
		c3.expect(data(1, content[:512]))
		c3.sendError(0, "bye")
		ts.nextStats(t)
		if n := ts.srv.Stats().BusyRefusals; n != 3 {
			t.Errorf("BusyRefusals %d, want 3", n)
		}
	})
	t.Run("MaxSessionsPerClient", func(t *testing.T) {
		ts := startServer(t, files{"pxelinux.0": content}, func(s *gateway.Server) { s.MaxSessionsPerClient = 2 })
		var held []*rawClient
		for range 2 {
			c := newClient(t, ts.addr)
			c.rrq("pxelinux.0", "octet")
			c.expect(data(1, content[:512]))
			held = append(held, c)
		}
		same := newClient(t, ts.addr) // same address, third port
		same.rrq("pxelinux.0", "octet")
		same.expect(busy)
		other := newClientOn(t, "udp4", "127.0.0.3:0", ts.addr)
		other.rrq("pxelinux.0", "octet")
		other.expect(data(1, content[:512]))
		other.sendError(0, "bye")
		for _, c := range held {
			c.sendError(0, "bye")
		}
		for range 3 {
			ts.nextStats(t)
		}
	})
	t.Run("ClientRequestRate", func(t *testing.T) {
		// 1 per second with bursts of 2: the third request at once is refused.
		ts := startServer(t, files{"pxelinux.0": []byte("x")}, func(s *gateway.Server) { s.ClientRequestRate = 1 })
		for i := range 3 {
			c := newClient(t, ts.addr)
			c.rrq("pxelinux.0", "octet")
			if i == 2 {
				c.expect(busy)
				break
			}
			c.expect(data(1, []byte("x")))
			c.ack(1)
			ts.nextStats(t)
		}
		other := newClientOn(t, "udp4", "127.0.0.4:0", ts.addr)
		other.rrq("pxelinux.0", "octet")
		other.expect(data(1, []byte("x")))
		other.ack(1)
		ts.nextStats(t)
	})
	t.Run("MaxWindowMemory", func(t *testing.T) {
		big := pattern(64 * 1468)
		ts := startServer(t, files{"pxelinux.0": big}, func(s *gateway.Server) { s.MaxWindowMemory = 8 * 1472 })
		c := newClient(t, ts.addr)
		c.rrq("pxelinux.0", "octet", "blksize", "1468", "windowsize", "16")
		c.expect(busy)
		st := ts.nextStats(t)
		if st.Outcome != gateway.OutcomeError || st.ErrorSent == nil || st.ErrorSent.Message != "server busy" {
			t.Errorf("outcome %v error %v", st.Outcome, st.ErrorSent)
		}
		// Counted with the other limits' refusals (regression, found in
		// operator review: it was not).
		if n := ts.srv.Stats().BusyRefusals; n != 1 {
			t.Errorf("BusyRefusals %d, want 1", n)
		}
		// A small file needs a small window buffer, so it still fits.
		c2 := newClient(t, ts.addr)
		c2.sendTo(ts.addr, request(1, "g", "octet"))
		c2.expect(errPkt(1, "file not found"))
		ts.nextStats(t)
	})
}

// TestBurstOfBootsAtDefaults: the default limits serve 1,000 simultaneous
// boots (250 client addresses, 4 each), where dnsmasq (50 sessions) and
// atftpd (100 threads) fail half of a 200-client burst.
func TestBurstOfBootsAtDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("1000 clients")
	}
	content := pattern(20 * 1024)
	ts := startServer(t, files{"pxelinux.0": content}, func(s *gateway.Server) { s.SessionStatsFunc = nil; s.Timeout = time.Second })
	const clients = 1000
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + i%250)})
			var buf bytes.Buffer
			_, err := tftpclient.Get(ctx, ts.addr.String(), "pxelinux.0", &buf, tftpclient.Options{
				BlockSize: 1468, TSize: true, LocalAddr: src, RetransmitTimeout: time.Second, Retries: 10, RecvBuffer: 256 << 10,
			})
			if err == nil && !bytes.Equal(buf.Bytes(), content) {
				err = fmt.Errorf("content differs")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			if failed <= 3 {
				t.Errorf("transfer: %v", err)
			}
		}
	}
	st := waitIdle(t, ts.srv)
	if failed > 0 || st.BusyRefusals > 0 || st.Sessions[gateway.OutcomeOK] != clients {
		t.Errorf("%d of %d failed; %d busy refusals; %d ok sessions", failed, clients, st.BusyRefusals, st.Sessions[gateway.OutcomeOK])
	}
}
