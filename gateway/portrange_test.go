package gateway_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
)

// TestPortRangeText: "LO-HI" and "N" are read and written back; port 0,
// an inverted range and junk are refused with an error that quotes the
// text and leave the value as it was.
func TestPortRangeText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want gateway.PortRange
		err  string // "" for valid
	}{
		{"", gateway.PortRange{}, ""},
		{"50000-50999", gateway.PortRange{First: 50000, Last: 50999}, ""},
		{"69", gateway.PortRange{First: 69, Last: 69}, ""},
		{"1-65535", gateway.PortRange{First: 1, Last: 65535}, ""},
		{"7-7", gateway.PortRange{First: 7, Last: 7}, ""},
		{"050000-050001", gateway.PortRange{First: 50000, Last: 50001}, ""},
		{"0", gateway.PortRange{}, `"0" is not a port`},
		{"0-10", gateway.PortRange{}, `"0" is not a port`},
		{"10-0", gateway.PortRange{}, `"0" is not a port`},
		{"10-5", gateway.PortRange{}, "first port 10 is above last port 5"},
		{"65536", gateway.PortRange{}, `"65536" is not a port`},
		{"1-70000", gateway.PortRange{}, `"70000" is not a port`},
		{"-5", gateway.PortRange{}, `"" is not a port`},
		{"5-", gateway.PortRange{}, `"" is not a port`},
		{"+5", gateway.PortRange{}, `"+5" is not a port`},
		{"1-2-3", gateway.PortRange{}, `"2-3" is not a port`},
		{"50000:50999", gateway.PortRange{}, `"50000:50999" is not a port`},
		{" 5", gateway.PortRange{}, `" 5" is not a port`},
		{"a-b", gateway.PortRange{}, `"a" is not a port`},
		{"tftp", gateway.PortRange{}, `"tftp" is not a port`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			before := gateway.PortRange{First: 1, Last: 2}
			got := before
			err := got.UnmarshalText([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), `"`+tc.in+`"`) {
					t.Fatalf("UnmarshalText(%q) = %v, want an error quoting the text and naming %s", tc.in, err, tc.err)
				}
				if got != before {
					t.Errorf("UnmarshalText(%q) failed but changed the range to %v", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("UnmarshalText(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			text, err := got.MarshalText()
			if err != nil || string(text) != got.String() {
				t.Fatalf("MarshalText = %q, %v; String %q", text, err, got.String())
			}
			var back gateway.PortRange
			if err := back.UnmarshalText(text); err != nil || back != got {
				t.Errorf("round trip of %q through %q: %v, %v", tc.in, text, back, err)
			}
		})
	}
	for r, want := range map[gateway.PortRange]string{{}: "", {First: 5, Last: 5}: "5", {First: 5, Last: 9}: "5-9"} {
		if got := r.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", r, got, want)
		}
	}
	if r := (gateway.PortRange{First: 10, Last: 13}); r.Len() != 4 || !r.Contains(10) || !r.Contains(13) || r.Contains(9) || r.Contains(14) {
		t.Errorf("10-13: Len %d, Contains 10 %v 13 %v 9 %v 14 %v", r.Len(), r.Contains(10), r.Contains(13), r.Contains(9), r.Contains(14))
	}
	if r := (gateway.PortRange{}); r.Len() != 0 || r.Contains(0) || !r.IsZero() {
		t.Errorf("zero range: Len %d, Contains(0) %v, IsZero %v", r.Len(), r.Contains(0), r.IsZero())
	}
}

// busyPacket is ERROR 0 "server busy", whole: the requests of these tests
// (for pxelinux.0, or small) are long enough for the listening port to
// send all of it.
var busyPacket = gatewaytest.ErrorPacket(0, "server busy")

// holdSessions starts n sessions that the clients hold (they never
// acknowledge: the server waits, FixedTimer's 2 s apart), each from a
// client on clientNet and clientAddr sending to dst, every other one
// with a blksize option (OACK first) and the others without (DATA 1
// first). It checks that the first packet of each comes from dst's
// address and a port of r, the ports all different, and returns the
// clients and their ports.
func holdSessions(t *testing.T, n int, clientNet, clientAddr string, dst netip.AddrPort, r gateway.PortRange, content []byte, seen map[uint16]bool) []*gatewaytest.Client {
	t.Helper()
	var held []*gatewaytest.Client
	for i := range n {
		c := gatewaytest.NewClientOn(t, clientNet, clientAddr, dst)
		want := gatewaytest.Data(1, content[:512])
		if i%2 == 1 {
			c.RRQ("pxelinux.0", "octet", "blksize", "1024")
			want = gatewaytest.OACK("blksize", "1024")
		} else {
			c.RRQ("pxelinux.0", "octet")
		}
		c.Expect(want)
		tid := c.TID()
		if tid.Addr().Unmap() != dst.Addr().Unmap() || !r.Contains(tid.Port()) || seen[tid.Port()] {
			t.Fatalf("session %d replies from %v: want %v and a port of %v not used by another session (%v)", i, tid, dst.Addr(), r, seen)
		}
		seen[tid.Port()] = true
		held = append(held, c)
	}
	return held
}

// endSessions ends the held sessions with an ERROR from their clients and
// waits for their stats.
func endSessions(t *testing.T, ts *gatewaytest.Server, held []*gatewaytest.Client) {
	t.Helper()
	for _, c := range held {
		c.SendError(0, "bye")
	}
	for range held {
		ts.NextStats(t)
	}
}

// haveIPv6 skips the test when ::1 cannot be bound.
func haveIPv6(t *testing.T) {
	t.Helper()
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	c.Close()
}

// TestPortRange: with a range of 4 ports, four sessions held at once
// reply from the 4 ports of the range (over IPv4, IPv6, a wildcard socket
// replying from the request's address with PKTINFO, and a dual-stack
// socket whose IPv4 and IPv6 sessions share the range); a fifth request
// gets exactly ERROR 0 "server busy" from the listening port, with no
// session, counted once in PortsExhausted and BusyRefusals; once the
// sessions end the whole range is free and serves again.
func TestPortRange(t *testing.T) {
	content := gatewaytest.Pattern(5000)
	type client struct{ network, addr, dst string }
	v4 := client{"udp4", "127.0.0.1:0", "127.0.0.1"}
	v6 := client{"udp6", "[::1]:0", "::1"}
	for _, tc := range []struct {
		name          string
		network, addr string // listening socket
		ipv6          bool
		clients       []client // the four held, then the fifth
	}{
		{"ipv4", "udp4", "127.0.0.1:0", false, []client{v4, v4, v4, v4, v4}},
		{"ipv6", "udp6", "[::1]:0", true, []client{v6, v6, v6, v6, v6}},
		{"ipv4_wildcard_pktinfo", "udp4", "0.0.0.0:0", false, []client{
			{"udp4", "127.0.0.1:0", "127.0.0.2"}, {"udp4", "127.0.0.1:0", "127.0.0.3"},
			{"udp4", "127.0.0.1:0", "127.0.0.2"}, {"udp4", "127.0.0.1:0", "127.0.0.1"},
			{"udp4", "127.0.0.1:0", "127.0.0.4"},
		}},
		{"dual_stack_shares_the_range", "udp", "[::]:0", true, []client{v4, v6, v4, v6, v6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.ipv6 {
				haveIPv6(t)
			}
			r := gatewaytest.FreePortRange(t, 4)
			ts := gatewaytest.NewServerOn(t, tc.network, tc.addr, gatewaytest.Files{"pxelinux.0": content}, gatewaytest.FixedTimer,
				func(s *gateway.Server) { s.PortRange = r })
			dst := func(c client) netip.AddrPort {
				return netip.AddrPortFrom(netip.MustParseAddr(c.dst), ts.Addr().Port())
			}
			seen := map[uint16]bool{}
			var held []*gatewaytest.Client
			for _, c := range tc.clients[:4] {
				held = append(held, holdSessions(t, 1, c.network, c.addr, dst(c), r, content, seen)...)
			}
			if len(seen) != 4 {
				t.Fatalf("ports used: %v, want the 4 of %v", seen, r)
			}
			if n := gateway.FreePorts(ts.Config); n != 0 {
				t.Errorf("%d ports free with 4 sessions, want 0", n)
			}

			fifth := tc.clients[4]
			c := gatewaytest.NewClientOn(t, fifth.network, fifth.addr, dst(fifth))
			c.RRQ("pxelinux.0", "octet")
			c.ExpectFrom(dst(fifth), busyPacket)
			c.ExpectNothing(100 * time.Millisecond) // no session: nothing else comes
			st := ts.Config.Stats()
			if st.PortsExhausted != 1 || st.BusyRefusals != 1 || st.ErrorsSent[gateway.ErrNotDefined] != 1 || st.ActiveSessions != 4 {
				t.Errorf("PortsExhausted %d, BusyRefusals %d, ERROR 0 sent %d, active %d; want 1, 1, 1, 4",
					st.PortsExhausted, st.BusyRefusals, st.ErrorsSent[gateway.ErrNotDefined], st.ActiveSessions)
			}

			endSessions(t, ts, held)
			if n := ts.PendingStats(); n != 0 {
				t.Errorf("%d more sessions ended: the refused request had a session", n)
			}
			if n := gateway.FreePorts(ts.Config); n != 4 {
				t.Errorf("%d ports free after the sessions ended, want 4", n)
			}
			// The range serves again, from any of its ports.
			first := tc.clients[0]
			again := holdSessions(t, 4, first.network, first.addr, dst(first), r, content, map[uint16]bool{})
			endSessions(t, ts, again)
			if n := gateway.FreePorts(ts.Config); n != 4 {
				t.Errorf("%d ports free at the end, want 4", n)
			}
		})
	}
}

// TestPortRangeSkipsPortsInUse: a port of the range that another socket
// holds is skipped for a free one; when the held port is the only one left,
// the request is refused with ERROR 0 "server busy" from the listening
// port (its session ends at once, outcome error) and counted as a full
// range would be. The held port goes back to the pool, and serves once it
// is released.
func TestPortRangeSkipsPortsInUse(t *testing.T) {
	for _, hold := range []string{"127.0.0.1", "0.0.0.0"} {
		t.Run("held_on_"+hold, func(t *testing.T) {
			content := gatewaytest.Pattern(5000)
			r := gatewaytest.FreePortRange(t, 4)
			held, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(hold), r.First+2)))
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			ts := gatewaytest.NewServer(t, gatewaytest.Files{"pxelinux.0": content}, gatewaytest.FixedTimer,
				func(s *gateway.Server) { s.PortRange = r })

			seen := map[uint16]bool{}
			sessions := holdSessions(t, 3, "udp4", "127.0.0.1:0", ts.Addr(), r, content, seen)
			if seen[r.First+2] {
				t.Fatalf("a session replies from port %d, which another socket holds", r.First+2)
			}
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("pxelinux.0", "octet")
			c.ExpectFrom(ts.Addr(), busyPacket)
			refused := ts.NextStats(t)
			if refused.Outcome != gateway.OutcomeError || refused.ErrorSent == nil || *refused.ErrorSent != (gateway.Error{Code: 0, Message: "server busy"}) {
				t.Errorf("refused session: outcome %v, error sent %v; want error, ERROR 0 \"server busy\"", refused.Outcome, refused.ErrorSent)
			}
			st := ts.Config.Stats()
			if st.PortsExhausted != 1 || st.BusyRefusals != 1 || st.ErrorsSent[gateway.ErrNotDefined] != 1 {
				t.Errorf("PortsExhausted %d, BusyRefusals %d, ERROR 0 sent %d; want 1, 1, 1", st.PortsExhausted, st.BusyRefusals, st.ErrorsSent[gateway.ErrNotDefined])
			}
			if n := gateway.FreePorts(ts.Config); n != 1 {
				t.Errorf("%d ports free with 3 sessions, want 1 (the held one, back in the pool)", n)
			}

			endSessions(t, ts, sessions)
			held.Close()
			all := map[uint16]bool{}
			endSessions(t, ts, holdSessions(t, 4, "udp4", "127.0.0.1:0", ts.Addr(), r, content, all))
			if !all[r.First+2] {
				t.Errorf("ports %v: the released port %d was not used", all, r.First+2)
			}
			if n := gateway.FreePorts(ts.Config); n != 4 {
				t.Errorf("%d ports free at the end, want 4", n)
			}
		})
	}
}

// TestPortRangeFreedOnEveryPath: however a session ends, its port goes
// back to the pool: a transfer completed, a file not found, a handler's
// panic, a path refused, a client's abort, a silent client, a session
// superseded by a new request, a refusal for window memory, a refusal of a
// full range, and sessions ended by Close.
func TestPortRangeFreedOnEveryPath(t *testing.T) {
	small, big := gatewaytest.Pattern(700), gatewaytest.Pattern(64*1468)
	files := gatewaytest.Files{"pxelinux.0": small, "big": big}
	h := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		if req.Path == "panic" {
			panic("handler panic")
		}
		return files.ServeTFTP(ctx, req)
	})
	r := gatewaytest.FreePortRange(t, 3)
	ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer, func(s *gateway.Server) {
		s.PortRange = r
		s.Timeout, s.Retries = 200*time.Millisecond, 1
	})
	freed := func(step string) {
		t.Helper()
		if n := gateway.FreePorts(ts.Config); n != 3 {
			t.Fatalf("after %s: %d ports free, want 3", step, n)
		}
	}
	errorReply := func(c *gatewaytest.Client, code uint16) {
		t.Helper()
		b, from := c.Recv(gatewaytest.DefaultExpectWait)
		if len(b) < 4 || b[1] != 5 || b[3] != byte(code) || !r.Contains(from.Port()) {
			t.Fatalf("got %q from %v, want ERROR %d from a port of %v", gatewaytest.Abbrev(b), from, code, r)
		}
	}
	newClient := func() *gatewaytest.Client { return gatewaytest.NewClient(t, ts.Addr()) }

	c := newClient()
	c.RRQ("pxelinux.0", "octet")
	c.Expect(gatewaytest.Data(1, small[:512]))
	c.Ack(1)
	c.Expect(gatewaytest.Data(2, small[512:]))
	c.Ack(2)
	if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
		t.Fatalf("transfer: outcome %v", st.Outcome)
	}
	freed("a complete transfer")

	c = newClient()
	c.RRQ("missing", "octet")
	errorReply(c, 1)
	ts.NextStats(t)
	freed("file not found")

	c = newClient()
	c.RRQ("panic", "octet")
	errorReply(c, 0)
	ts.NextStats(t)
	freed("a handler panic")

	c = newClient()
	c.RRQ("../etc/passwd", "octet")
	errorReply(c, 2)
	ts.NextStats(t)
	freed("a path refused")

	c = newClient()
	c.RRQ("big", "octet")
	c.Expect(gatewaytest.Data(1, big[:512]))
	c.SendError(0, "abort")
	ts.NextStats(t)
	freed("a client's abort")

	c = newClient()
	c.RRQ("pxelinux.0", "octet")
	c.Expect(gatewaytest.Data(1, small[:512]))
	if st := ts.NextStats(t); st.Outcome != gateway.OutcomeTimeout {
		t.Fatalf("silent client: outcome %v, want timeout", st.Outcome)
	}
	freed("a silent client")

	c = newClient()
	c.RRQ("big", "octet")
	c.Expect(gatewaytest.Data(1, big[:512]))
	c.Ack(1)
	c.Expect(gatewaytest.Data(2, big[512:1024]))
	c.RRQ("big", "octet") // the client restarted: a new session replaces the old
	if st := ts.NextStats(t); st.Outcome != gateway.OutcomeAborted {
		t.Fatalf("superseded: outcome %v, want aborted", st.Outcome)
	}
	for range 10 { // the old session's DATA 2 may come again first
		b, from := c.Recv(gatewaytest.DefaultExpectWait)
		if string(b) == string(gatewaytest.Data(1, big[:512])) {
			c.SetTID(from)
			break
		}
	}
	c.SendError(0, "bye")
	ts.NextStats(t)
	freed("a superseded session")
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}

	// A window-memory refusal, on a server with little of it.
	r = gatewaytest.FreePortRange(t, 3)
	ts = gatewaytest.NewServer(t, h, gatewaytest.FixedTimer, func(s *gateway.Server) {
		s.PortRange = r
		s.MaxWindowMemory = 8 * 1472
	})
	c = newClient()
	c.RRQ("big", "octet", "blksize", "1468", "windowsize", "16")
	c.Expect(busyPacket) // from the session's port
	ts.NextStats(t)
	freed("a refusal for window memory")
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}

	// A full range refused, then sessions ended by Close (a server whose
	// timer does not end them first).
	r = gatewaytest.FreePortRange(t, 3)
	ts = gatewaytest.NewServer(t, h, gatewaytest.FixedTimer, func(s *gateway.Server) { s.PortRange = r })
	var held []*gatewaytest.Client
	for range 3 {
		c := newClient()
		c.RRQ("pxelinux.0", "octet")
		c.Expect(gatewaytest.Data(1, small[:512]))
		held = append(held, c)
	}
	c = newClient()
	c.RRQ("pxelinux.0", "octet")
	c.ExpectFrom(ts.Addr(), busyPacket)
	if n := gateway.FreePorts(ts.Config); n != 0 {
		t.Errorf("with a full range: %d ports free, want 0", n)
	}
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range held {
		c.Expect(gatewaytest.ErrorPacket(0, "server shutting down"))
	}
	for range held {
		ts.NextStats(t)
	}
	if n := gateway.FreePorts(ts.Config); n != 3 {
		t.Errorf("after Close: %d ports free, want 3", n)
	}
	if st := ts.Config.Stats(); st.PortsExhausted != 1 || st.ActiveSessions != 0 {
		t.Errorf("PortsExhausted %d, active sessions %d; want 1, 0", st.PortsExhausted, st.ActiveSessions)
	}
}
