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
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// TestLimits: over each limit the client gets ERROR 0 "server busy" (never
// silence), the refusal is counted, and other clients are still served.
func TestLimits(t *testing.T) {
	content := gatewaytest.Pattern(5000)
	busy := gatewaytest.ErrorPacket(0, "server busy") // requests long enough for the whole message
	t.Run("MaxSessions", func(t *testing.T) {
		var logged syncbuf.Buffer
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"pxelinux.0": content}, gatewaytest.FixedTimer, func(s *gateway.Server) {
			s.MaxSessions = 1
			s.Logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))
		})
		c1 := gatewaytest.NewClient(t, ts.Addr())
		c1.RRQ("pxelinux.0", "octet")
		c1.Expect(gatewaytest.Data(1, content[:512]))
		c2 := gatewaytest.NewClientOn(t, "udp4", "127.0.0.2:0", ts.Addr())
		for range 3 { // refused three times, logged once (found in operator review: never logged)
			c2.RRQ("pxelinux.0", "octet")
			c2.Expect(busy)
		}
		if n := strings.Count(logged.String(), "refusing requests"); n != 1 {
			t.Errorf("%d refusal log lines for 3 refusals, want 1:\n%s", n, logged.String())
		}
		wantBusyReason(t, &logged, "max_sessions")
		c1.SendError(0, "bye")
		ts.NextStats(t)
		c3 := gatewaytest.NewClientOn(t, "udp4", "127.0.0.2:0", ts.Addr()) // a slot is free again
		c3.RRQ("pxelinux.0", "octet")
		c3.Expect(gatewaytest.Data(1, content[:512]))
		c3.SendError(0, "bye")
		ts.NextStats(t)
		if n := ts.Config.Stats().BusyRefusals; n != 3 {
			t.Errorf("BusyRefusals %d, want 3", n)
		}
	})
	t.Run("MaxSessionsPerClient", func(t *testing.T) {
		var logged syncbuf.Buffer
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"pxelinux.0": content}, gatewaytest.FixedTimer, func(s *gateway.Server) {
			s.MaxSessionsPerClient = 2
			s.Logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))
		})
		var held []*gatewaytest.Client
		for range 2 {
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("pxelinux.0", "octet")
			c.Expect(gatewaytest.Data(1, content[:512]))
			held = append(held, c)
		}
		same := gatewaytest.NewClient(t, ts.Addr()) // same address, third port
		same.RRQ("pxelinux.0", "octet")
		same.Expect(busy)
		wantBusyReason(t, &logged, "max_sessions_per_client")
		other := gatewaytest.NewClientOn(t, "udp4", "127.0.0.3:0", ts.Addr())
		other.RRQ("pxelinux.0", "octet")
		other.Expect(gatewaytest.Data(1, content[:512]))
		other.SendError(0, "bye")
		for _, c := range held {
			c.SendError(0, "bye")
		}
		for range 3 {
			ts.NextStats(t)
		}
	})
	t.Run("ClientRequestRate", func(t *testing.T) {
		// 1 per second with bursts of 2: the third request at once is refused.
		var logged syncbuf.Buffer
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"pxelinux.0": []byte("x")}, gatewaytest.FixedTimer, func(s *gateway.Server) {
			s.ClientRequestRate = 1
			s.Logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))
		})
		for i := range 3 {
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("pxelinux.0", "octet")
			if i == 2 {
				c.Expect(busy)
				wantBusyReason(t, &logged, "client_rate")
				break
			}
			c.Expect(gatewaytest.Data(1, []byte("x")))
			c.Ack(1)
			ts.NextStats(t)
		}
		other := gatewaytest.NewClientOn(t, "udp4", "127.0.0.4:0", ts.Addr())
		other.RRQ("pxelinux.0", "octet")
		other.Expect(gatewaytest.Data(1, []byte("x")))
		other.Ack(1)
		ts.NextStats(t)
	})
	t.Run("MaxWindowMemory", func(t *testing.T) {
		big := gatewaytest.Pattern(64 * 1468)
		var logged syncbuf.Buffer
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"pxelinux.0": big}, gatewaytest.FixedTimer, func(s *gateway.Server) {
			s.MaxWindowMemory = 8 * 1472
			s.Logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))
		})
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("pxelinux.0", "octet", "blksize", "1468", "windowsize", "16")
		c.Expect(busy)
		st := ts.NextStats(t)
		if st.Outcome != gateway.OutcomeError || st.ErrorSent == nil || st.ErrorSent.Message != "server busy" {
			t.Errorf("outcome %v error %v", st.Outcome, st.ErrorSent)
		}
		// Counted with the other limits' refusals (regression, found in
		// operator review: it was not).
		if n := ts.Config.Stats().BusyRefusals; n != 1 {
			t.Errorf("BusyRefusals %d, want 1", n)
		}
		wantBusyReason(t, &logged, "window_memory")
		// A small file needs a small window buffer, so it still fits.
		c2 := gatewaytest.NewClient(t, ts.Addr())
		c2.SendTo(ts.Addr(), gatewaytest.ReadRequest("g", "octet"))
		c2.Expect(gatewaytest.ErrorPacket(1, "file not found"))
		ts.NextStats(t)
	})
}

// wantBusyReason checks that the "server busy" warning names the limit
// that refused (found in operator review: it named none) and counts the
// refusal under it.
func wantBusyReason(t *testing.T, logged *syncbuf.Buffer, reason string) {
	t.Helper()
	for range 100 { // the session's log line may follow the ERROR
		if strings.Contains(logged.String(), "reason="+reason+" ") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if l := logged.String(); !strings.Contains(l, "reason="+reason+" ") || !strings.Contains(l, "by_reason."+reason+"=1 ") {
		t.Errorf("no refusal logged with reason %s:\n%s", reason, l)
	}
}

// TestBurstOfBootsAtDefaults: the default limits serve 1,000 simultaneous
// boots (250 client addresses, 4 each), where dnsmasq (50 sessions) and
// atftpd (100 threads) fail half of a 200-client burst.
func TestBurstOfBootsAtDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("1000 clients")
	}
	content := gatewaytest.Pattern(20 * 1024)
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"pxelinux.0": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout = time.Second })
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
			_, err := tftpclient.Get(ctx, ts.Addr().String(), "pxelinux.0", &buf, tftpclient.Options{
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
	st := ts.WaitIdle(t)
	if failed > 0 || st.BusyRefusals > 0 || st.Sessions[gateway.OutcomeOK] != clients {
		t.Errorf("%d of %d failed; %d busy refusals; %d ok sessions", failed, clients, st.BusyRefusals, st.Sessions[gateway.OutcomeOK])
	}
}
