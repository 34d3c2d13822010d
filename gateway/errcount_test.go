package gateway_test

import (
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
