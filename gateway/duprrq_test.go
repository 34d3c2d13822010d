package gateway_test

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
)

// TestRestartFromSamePort: a client that acknowledged blocks and then
// sends its RRQ again from the same port has restarted the transfer (a
// U-Boot with a fixed tftpsrcp does so after its own timeout): the
// request arrived after the client's first ACK, so it is no duplicate.
// The running session ends silently, as aborted with the reason logged,
// and the new one starts at DATA 1 and runs to the end. (A request that
// arrived before the first ACK is a duplicate: see
// TestDelayedDuplicateRRQIgnored and TestDuplicateRRQIgnored.)
func TestRestartFromSamePort(t *testing.T) {
	content := gatewaytest.Pattern(1300) // 3 blocks
	for _, single := range []bool{false, true} {
		t.Run(map[bool]string{false: "TID_per_session", true: "single_port"}[single], func(t *testing.T) {
			var logged syncbuf.Buffer
			ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) {
				s.SinglePort = single
				s.Logger = slog.New(slog.NewTextHandler(&logged, nil))
			})
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", "octet")
			c.Expect(gatewaytest.Data(1, content[:512]))
			c.Ack(1)
			c.Expect(gatewaytest.Data(2, content[512:1024])) // the client gives up here
			old := c.TID()
			c.SetTID(netip.AddrPort{})
			c.RRQ("f", "octet")
			c.Expect(gatewaytest.Data(1, content[:512]))
			if !single && c.TID() == old {
				t.Fatalf("the new transfer answered from the old session's TID %v", old)
			}
			first := ts.NextStats(t)
			if first.Outcome != gateway.OutcomeAborted || first.BytesAcked != 512 {
				t.Errorf("old session: %v with %d bytes acknowledged, want aborted with 512", first.Outcome, first.BytesAcked)
			}
			c.Ack(1)
			c.Expect(gatewaytest.Data(2, content[512:1024]))
			c.Ack(2)
			c.Expect(gatewaytest.Data(3, content[1024:]))
			c.Ack(3)
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK || st.BytesAcked != int64(len(content)) || st.SessionID == first.SessionID {
				t.Errorf("new session: %v (%s), %d bytes; want a second session, ok, %d bytes", st.Outcome, st.SessionID, st.BytesAcked, len(content))
			}
			c.ExpectNothing(100 * time.Millisecond) // nothing more from either session
			if want := `outcome=aborted bytes=512 `; !strings.Contains(logged.String(), want) ||
				!strings.Contains(logged.String(), `cause="gateway: superseded by a new request from the client's port"`) {
				t.Errorf("the old session's line lacks %s or its cause:\n%s", want, logged.String())
			}
			if n := ts.Config.Stats().DuplicateRequests; n != 0 {
				t.Errorf("DuplicateRequests %d, want 0", n)
			}
		})
	}
}

// TestNewRequestFromReusedPort is a regression test: 2 of 10,000 transfers
// failed in the 10k-session benchmark when a client's ephemeral port was
// reused while the previous transfer's session still waited for its lost
// final ACK. The new RRQ was taken for a duplicate and ignored, and the new
// client got the old session's final DATA. A request from a client that
// has acknowledged something is a new transfer: the old session ends
// (silently, ok if its final block was sent) and a new one starts. A
// retransmitted RRQ before any ACK is still a duplicate
// (TestDuplicateRRQIgnored).
func TestNewRequestFromReusedPort(t *testing.T) {
	content := gatewaytest.Pattern(700)
	for _, single := range []bool{false, true} {
		t.Run(map[bool]string{false: "TID_per_session", true: "single_port"}[single], func(t *testing.T) {
			ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.SinglePort = single })
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", "octet")
			c.Expect(gatewaytest.Data(1, content[:512]))
			c.Ack(1)
			c.Expect(gatewaytest.Data(2, content[512:])) // the final block; its ACK is "lost"
			old := c.TID()
			c.SetTID(netip.AddrPort{})
			c.RRQ("f", "octet") // the port, reused: a new transfer
			c.Expect(gatewaytest.Data(1, content[:512]))
			if !single && c.TID() == old {
				t.Fatalf("new transfer answered from the old session's TID %v", old)
			}
			c.Ack(1)
			c.Expect(gatewaytest.Data(2, content[512:]))
			c.Ack(2)
			first, second := ts.NextStats(t), ts.NextStats(t)
			if first.Outcome != gateway.OutcomeOK || second.Outcome != gateway.OutcomeOK || first.SessionID == second.SessionID {
				t.Errorf("outcomes %v (%s), %v (%s); want two ok sessions", first.Outcome, first.SessionID, second.Outcome, second.SessionID)
			}
			if n := ts.Config.Stats().DuplicateRequests; n != 0 {
				t.Errorf("DuplicateRequests %d, want 0", n)
			}
		})
	}
}

// TestSupersededSessionStopsWaiting: a session superseded by a new
// request from its client's port stops waiting for that client at once,
// not at its next retransmission timeout (here 30 seconds): the new
// request's listener wakes the old session's read. In single-port mode
// too, whose connection is the listener's.
func TestSupersededSessionStopsWaiting(t *testing.T) {
	content := gatewaytest.Pattern(1300) // 3 blocks
	for _, single := range []bool{false, true} {
		t.Run(map[bool]string{false: "TID_per_session", true: "single_port"}[single], func(t *testing.T) {
			ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, func(s *gateway.Server) {
				s.SinglePort = single
				s.Timeout, s.MinTimeout = 30*time.Second, time.Hour
			})
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", "octet")
			c.Expect(gatewaytest.Data(1, content[:512]))
			c.Ack(1)
			c.Expect(gatewaytest.Data(2, content[512:1024])) // the old session now waits for ACK 2
			c.SetTID(netip.AddrPort{})
			start := time.Now()
			c.RRQ("f", "octet")
			c.Expect(gatewaytest.Data(1, content[:512]))
			first := ts.NextStats(t)
			if took := time.Since(start); first.Outcome != gateway.OutcomeAborted || took > 10*time.Second {
				t.Errorf("old session: %v after %v, want aborted at once (its timeout is 30s)", first.Outcome, took.Round(time.Millisecond))
			}
		})
	}
}

// TestChangedRequestFromSamePortIsNew: only the same request again is a
// retransmission. Sent from the port of a session its client has not yet
// acknowledged, a request for another file (single-port mode, where the
// port is all that tells sessions apart), with other options, without
// options or in another mode is a new transfer: the old session ends and
// the client gets the new request's answer. Found by an outside protocol
// test: single-port mode served the first file for the second request,
// and both modes answered a request without options with the first
// one's OACK (RFC 2347: an OACK only for options the client sent; RFC
// 2348: a blksize no larger than the client's).
func TestChangedRequestFromSamePortIsNew(t *testing.T) {
	a, b := gatewaytest.Pattern(1000), []byte("line one\nline two\n")
	text := []byte(strings.Repeat("line\n", 200)) // two blocks
	files := gatewaytest.Files{"a": a, "b": b, "text": text}
	for _, tt := range []struct {
		name       string
		singleOnly bool
		first      []string // file, mode, options...
		second     []string
		want       []byte // the answer to second
	}{
		{"another file", true, []string{"a", "octet"}, []string{"b", "octet"}, gatewaytest.Data(1, b)},
		{"other options", false, []string{"a", "octet", "blksize", "1468", "tsize", "0"}, []string{"a", "octet", "blksize", "1024"}, gatewaytest.OACK("blksize", "1024")},
		{"options dropped", false, []string{"a", "octet", "blksize", "1468"}, []string{"a", "octet"}, gatewaytest.Data(1, a[:512])},
		{"other mode", false, []string{"text", "octet"}, []string{"text", "netascii"}, gatewaytest.Data(1, []byte(strings.Repeat("line\r\n", 200))[:512])},
	} {
		for _, single := range []bool{false, true} {
			if tt.singleOnly && !single {
				continue
			}
			t.Run(tt.name+map[bool]string{false: "/TID_per_session", true: "/single_port"}[single], func(t *testing.T) {
				ts := gatewaytest.NewServer(t, files, gatewaytest.FixedTimer, func(s *gateway.Server) { s.SinglePort = single })
				c := gatewaytest.NewClient(t, ts.Addr())
				c.RRQ(tt.first[0], tt.first[1], tt.first[2:]...)
				if p, _ := c.Recv(5 * time.Second); p == nil {
					t.Fatal("no answer to the first request")
				}
				c.SetTID(netip.AddrPort{})
				c.RRQ(tt.second[0], tt.second[1], tt.second[2:]...)
				c.Expect(tt.want)
				if st := ts.NextStats(t); st.Outcome != gateway.OutcomeAborted {
					t.Errorf("the first session ended %v, want aborted (superseded)", st.Outcome)
				}
				if n := ts.Config.Stats().DuplicateRequests; n != 0 {
					t.Errorf("DuplicateRequests %d, want 0", n)
				}
			})
		}
	}
}

// TestRetransmissionWithPaddingIsDuplicate: a retransmitted request whose
// datagram differs only after its last option (padding, which firmware
// sends and the parser ignores) is the same request: ignored as a
// duplicate, the transfer going on.
func TestRetransmissionWithPaddingIsDuplicate(t *testing.T) {
	content := gatewaytest.Pattern(700)
	for _, single := range []bool{false, true} {
		t.Run(map[bool]string{false: "TID_per_session", true: "single_port"}[single], func(t *testing.T) {
			ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.SinglePort = single })
			c := gatewaytest.NewClient(t, ts.Addr())
			rrq := gatewaytest.ReadRequest("f", "octet", "blksize", "512")
			c.SendTo(ts.Addr(), rrq)
			c.Expect(gatewaytest.OACK("blksize", "512"))
			c.SendTo(ts.Addr(), append(append([]byte(nil), rrq...), 0, 0xff, 0xff))
			c.Ack(0)
			c.Expect(gatewaytest.Data(1, content[:512]))
			c.Ack(1)
			c.Expect(gatewaytest.Data(2, content[512:]))
			c.Ack(2)
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
				t.Errorf("outcome %v, want ok", st.Outcome)
			}
			if n := ts.Config.Stats().DuplicateRequests; n != 1 {
				t.Errorf("DuplicateRequests %d, want 1", n)
			}
		})
	}
}
