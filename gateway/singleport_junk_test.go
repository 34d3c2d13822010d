package gateway_test

import (
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
)

// TestMalformedRequestDoesNotEndSession is a regression test (found in review): a datagram on the listening
// port whose opcode is RRQ or WRQ but which is not a valid read request
// (truncated, empty filename, unterminated mode) is junk: it is counted as
// malformed and dropped, and the client's running session goes on. In
// single-port mode such a datagram from the client's address and port is
// taken for a new request before it is parsed: the running session is
// cancelled silently and no new one starts, so the client hangs.
func TestMalformedRequestDoesNotEndSession(t *testing.T) {
	content := pattern(3 * 512)
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
				ts := startServer(t, files{"f": content}, func(s *gateway.Server) { s.SinglePort = single })
				c := newClient(t, ts.addr)
				c.rrq("f", "octet")
				c.expect(data(1, content[:512]))
				c.ack(1) // the session has progressed
				c.expect(data(2, content[512:1024]))
				c.sendTo(ts.addr, j.b) // junk on the listening port
				time.Sleep(50 * time.Millisecond)
				c.ack(2)
				c.conn.SetReadDeadline(time.Now().Add(time.Second))
				n, _, err := c.conn.ReadFromUDPAddrPort(c.buf)
				if err != nil {
					st := ts.nextStats(t)
					t.Fatalf("no DATA 3 after ACK 2 (%v): the junk datagram ended the session (outcome %v); malformed count %d",
						err, st.Outcome, ts.srv.Stats().MalformedPackets)
				}
				if got, want := c.buf[:n], data(3, content[1024:]); string(got) != string(want) {
					t.Fatalf("got %q, want DATA 3", trim(got))
				}
				c.ack(3)
				c.expect(data(4, nil))
				c.ack(4)
				if st := ts.nextStats(t); st.Outcome != gateway.OutcomeOK {
					t.Errorf("outcome %v, want ok", st.Outcome)
				}
			})
		}
	}
}
