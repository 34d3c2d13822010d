package gateway_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// TestErrorsSentCountsEveryError is a regression test (found in review): ServerStats.ErrorsSent is
// exported as tftpgw_errors_sent_total{code}, "ERROR packets sent, by TFTP
// error code". Every ERROR the server sends must be counted, those sent
// from the listening port (WRQ refused with 2, unknown mode with 4) and
// the ERROR 5 answering a stranger on a session's port included, as the
// "server busy" ERROR 0 from the listening port is.
func TestErrorsSentCountsEveryError(t *testing.T) {
	tests := []struct {
		name string
		code gateway.ErrorCode
		send func(t *testing.T, ts *gatewaytest.Server)
	}{
		{"WRQ_refused_with_ERROR_2", gateway.ErrAccessViolation, func(t *testing.T, ts *gatewaytest.Server) {
			c := gatewaytest.NewClient(t, ts.Addr())
			c.SendTo(ts.Addr(), gatewaytest.WriteRequest("f", "octet"))
			expectErrorCode(t, c, 2) // the message is cut to the request's length
		}},
		{"unknown_mode_refused_with_ERROR_4", gateway.ErrIllegalOperation, func(t *testing.T, ts *gatewaytest.Server) {
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", "mail")
			expectErrorCode(t, c, 4)
		}},
		{"stranger_on_session_port_gets_ERROR_5", gateway.ErrUnknownTID, func(t *testing.T, ts *gatewaytest.Server) {
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", "octet")
			c.Expect(gatewaytest.Data(1, []byte("x")))
			stranger := gatewaytest.NewClient(t, c.TID())
			stranger.SetTID(c.TID())
			stranger.Ack(1)
			stranger.Expect(gatewaytest.ErrorPacket(5, "unknown transfer ID"))
			c.Ack(1)
			ts.NextStats(t)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": []byte("x")}, gatewaytest.FixedTimer)
			tt.send(t, ts)
			time.Sleep(20 * time.Millisecond)
			st := ts.WaitIdle(t)
			if n := st.ErrorsSent[tt.code]; n != 1 {
				t.Errorf("ServerStats.ErrorsSent[%d] = %d after one ERROR %d was sent (ErrorsSent %v)", tt.code, n, tt.code, st.ErrorsSent)
			}
		})
	}
}

func expectErrorCode(t *testing.T, c *gatewaytest.Client, code uint16) {
	t.Helper()
	b, _ := c.Recv(2 * time.Second)
	got, _, err := wire.ParseError(b)
	if err != nil || got != code {
		t.Fatalf("got %q, want ERROR %d", b, code)
	}
}

// TestServerStats: the server-stats callback runs every interval and once
// more at shutdown, with counters that match the sessions.
func TestServerStats(t *testing.T) {
	reports := make(chan gateway.ServerStats, 100)
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": []byte("abc")}, gatewaytest.FixedTimer, func(s *gateway.Server) {
		s.StatsInterval = 20 * time.Millisecond
		s.ServerStatsFunc = func(st gateway.ServerStats) { reports <- st }
	})
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet")
	c.Expect(gatewaytest.Data(1, []byte("abc")))
	c.Ack(1)
	c2 := gatewaytest.NewClient(t, ts.Addr())
	c2.RRQ("missing", "octet")
	c2.Expect(gatewaytest.ErrorPacket(1, "file not found"))
	ts.NextStats(t)
	ts.NextStats(t)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case r := <-reports:
			if r.Interval != 20*time.Millisecond {
				t.Fatalf("Interval %v", r.Interval)
			}
			if r.Sessions[gateway.OutcomeOK] == 1 && r.Sessions[gateway.OutcomeError] == 1 {
				if r.BytesSent != 3 || r.ErrorsSent[gateway.ErrFileNotFound] != 1 || r.ActiveSessions != 0 || r.PacketsSent != 2 {
					t.Errorf("report %+v", r)
				}
				return
			}
		case <-deadline:
			t.Fatal("no report with both sessions")
		}
	}
}

// TestServerStatsFuncPanicIsNotFatal: a panic in ServerStatsFunc is logged
// like one in SessionStatsFunc; the server goes on serving and reporting.
func TestServerStatsFuncPanicIsNotFatal(t *testing.T) {
	var calls atomic.Int64
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": []byte("abc")}, gatewaytest.FixedTimer, func(s *gateway.Server) {
		s.StatsInterval = 10 * time.Millisecond
		s.ServerStatsFunc = func(gateway.ServerStats) {
			calls.Add(1)
			panic("collector bug")
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := calls.Load(); n < 3 {
		t.Fatalf("%d reports, want reports to go on after a panic", n)
	}
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet")
	c.Expect(gatewaytest.Data(1, []byte("abc")))
	c.Ack(1)
	ts.NextStats(t)
}
