package gateway_test

import (
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
)

// TestMalformedRequestDoesNotEndSession is a regression test (found in review): a datagram on the listening
// port whose opcode is RRQ or WRQ but which is not a valid read request
// (truncated, empty filename, unterminated mode) is junk: it is counted as
// malformed and dropped, and the client's running session goes on. In
// single-port mode such a datagram from the client's address and port is
// taken for a new request before it is parsed: the running session is
// cancelled silently and no new one starts, so the client hangs.
func TestMalformedRequestDoesNotEndSession(t *testing.T) {
	content := gatewaytest.Pattern(3 * 512)
	junk := []struct {
		name string
		b    []byte
	}{
		{"opcode_only", []byte("\x00\x01")},
		{"unterminated_filename", []byte("\x00\x01f")},
		{"empty_filename", []byte("\x00\x01\x00octet\x00")},
	}
	for _, single := range []bool{false, true} {
		for _, j := range junk {
			name := "session_socket_mode/" + j.name
			if single {
				name = "single_port_mode/" + j.name
			}
			t.Run(name, func(t *testing.T) {
				ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.SinglePort = single })
				c := gatewaytest.NewClient(t, ts.Addr())
				c.RRQ("f", "octet")
				c.Expect(gatewaytest.Data(1, content[:512]))
				c.Ack(1) // the session has progressed
				c.Expect(gatewaytest.Data(2, content[512:1024]))
				c.SendTo(ts.Addr(), j.b) // junk on the listening port
				time.Sleep(50 * time.Millisecond)
				c.Ack(2)
				got, _, ok := c.TryRecv(time.Second)
				if !ok {
					st := ts.NextStats(t)
					t.Fatalf("no DATA 3 within 1s of ACK 2: the junk datagram ended the session (outcome %v); malformed count %d",
						st.Outcome, ts.Config.Stats().MalformedPackets)
				}
				if want := gatewaytest.Data(3, content[1024:]); string(got) != string(want) {
					t.Fatalf("got %q, want DATA 3", gatewaytest.Abbrev(got))
				}
				c.Ack(3)
				c.Expect(gatewaytest.Data(4, nil))
				c.Ack(4)
				if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
					t.Errorf("outcome %v, want ok", st.Outcome)
				}
			})
		}
	}
}
