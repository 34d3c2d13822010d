package gateway_test

import (
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// TestStrayPacketsOnSessionPort: every packet that reaches a session's
// port from another transfer ID is counted in UnknownTIDPackets, and the
// transfer goes on. Only a DATA or an ACK from the client's own address
// (another port: what a real client's confusion looks like) is answered,
// with ERROR 5 at its source (RFC 1350 section 4), counted in
// ErrorsSent[5]. An ERROR is never answered (section 7); junk, requests
// and anything from another address are dropped, so that a spoofed
// source cannot have 24 bytes sent anywhere for 4 (regression: each got
// ERROR 5).
func TestStrayPacketsOnSessionPort(t *testing.T) {
	content := gatewaytest.Pattern(600)
	for _, tc := range []struct {
		name     string
		from     string // the stray's local address
		pkt      []byte
		answered bool
	}{
		{"ACK_from_client_address_other_port", "127.0.0.1:0", wire.AppendAck(nil, 1), true},
		{"DATA_from_client_address_other_port", "127.0.0.1:0", gatewaytest.Data(1, []byte("x")), true},
		{"ERROR_from_client_address_other_port", "127.0.0.1:0", gatewaytest.ErrorPacket(0, "bye"), false},
		{"RRQ_from_client_address_other_port", "127.0.0.1:0", gatewaytest.ReadRequest("f", "octet"), false},
		{"junk_from_client_address_other_port", "127.0.0.1:0", []byte{0xff, 0xff, 0, 1}, false},
		{"ACK_from_other_address", "127.0.0.2:0", wire.AppendAck(nil, 1), false},
		{"DATA_from_other_address", "127.0.0.2:0", gatewaytest.Data(1, []byte("x")), false},
		{"ERROR_from_other_address", "127.0.0.2:0", gatewaytest.ErrorPacket(5, "x"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer)
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", "octet")
			c.Expect(gatewaytest.Data(1, content[:512]))
			stray := gatewaytest.NewClientOn(t, "udp4", tc.from, ts.Addr())
			stray.SetTID(c.TID())
			stray.SendTo(c.TID(), tc.pkt)
			if tc.answered {
				stray.Expect(gatewaytest.ErrorPacket(5, "unknown transfer ID"))
			} else {
				stray.ExpectNothing(200 * time.Millisecond)
			}
			c.ExpectNothing(50 * time.Millisecond)
			c.Ack(1)
			c.Expect(gatewaytest.Data(2, content[512:]))
			c.Ack(2)
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
				t.Errorf("outcome %v, want ok", st.Outcome)
			}
			st := ts.Config.Stats()
			if st.UnknownTIDPackets != 1 {
				t.Errorf("UnknownTIDPackets %d, want 1", st.UnknownTIDPackets)
			}
			if want := map[bool]int64{true: 1}[tc.answered]; st.ErrorsSent[gateway.ErrUnknownTID] != want {
				t.Errorf("ErrorsSent[5] %d, want %d", st.ErrorsSent[gateway.ErrUnknownTID], want)
			}
		})
	}
}

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
