package gatewaytest_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
)

// TestClientScript: a scripted transfer with options, packet by packet,
// against a server with a fixed timer; the client learns the session's
// TID from the first reply.
func TestClientScript(t *testing.T) {
	content := gatewaytest.Pattern(700)
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer)
	c := gatewaytest.NewClient(t, ts.Addr())
	if c.TID().IsValid() || c.Server() != ts.Addr() || c.LocalAddr().Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("new client: TID %v, server %v, local %v", c.TID(), c.Server(), c.LocalAddr())
	}
	c.RRQ("f", "octet", "blksize", "512", "tsize", "0")
	c.Expect(gatewaytest.OACK("blksize", "512", "tsize", "700"))
	if tid := c.TID(); !tid.IsValid() || tid == ts.Addr() {
		t.Fatalf("TID %v, want the session's port, not the listening %v", tid, ts.Addr())
	}
	c.Ack(0)
	c.ExpectWithin(time.Second, gatewaytest.Data(1, content[:512]))
	c.Ack(1)
	c.Expect(gatewaytest.Data(2, content[512:]))
	c.Ack(2)
	c.ExpectNothing(50 * time.Millisecond)
	if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK || st.BytesAcked != int64(len(content)) {
		t.Errorf("outcome %v, %d bytes acknowledged", st.Outcome, st.BytesAcked)
	}
	if st := ts.WaitIdle(t); st.ActiveSessions != 0 || st.Sessions[gateway.OutcomeOK] != 1 {
		t.Errorf("server stats %+v", st)
	}

	// A new session of the same client: the TID is learnt again.
	c.SetTID(netip.AddrPort{})
	c.RRQ("missing", "octet")
	c.Expect(gatewaytest.ErrorPacket(1, "file not found"))
	ts.NextStats(t)

	// The listening port's own answer, and a stranger.
	c.SendTo(ts.Addr(), gatewaytest.WriteRequest("boot/grub/grub.cfg", "octet")) // long enough for the whole message
	c.ExpectFrom(ts.Addr(), gatewaytest.ErrorPacket(2, "read-only server"))
	if _, _, ok := c.TryRecv(20 * time.Millisecond); ok {
		t.Error("TryRecv found a packet, want none")
	}
}

// TestClientStranger: a client given another's TID plays a stranger on
// the session's port and gets ERROR 5; the session goes on.
func TestClientStranger(t *testing.T) {
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": []byte("x")}, gatewaytest.FixedTimer)
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet")
	b, from := c.Recv(5 * time.Second)
	if !bytes.Equal(b, gatewaytest.Data(1, []byte("x"))) || from != c.TID() {
		t.Fatalf("got %q from %v (TID %v)", b, from, c.TID())
	}
	stranger := gatewaytest.NewClientOn(t, "udp4", "127.0.0.1:0", ts.Addr())
	stranger.SetTID(c.TID())
	stranger.Send(gatewaytest.Ack(1))
	stranger.Expect(gatewaytest.ErrorPacket(5, "unknown transfer ID"))
	c.Ack(1)
	if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
		t.Errorf("outcome %v", st.Outcome)
	}
}

// TestNewServerOn: a server on another loopback address, and a client on
// a third, talk as they do on 127.0.0.1.
func TestNewServerOn(t *testing.T) {
	ts := gatewaytest.NewServerOn(t, "udp4", "127.0.0.2:0", gatewaytest.Files{"f": []byte("x")})
	if a := ts.Addr(); a.Addr() != netip.MustParseAddr("127.0.0.2") || a.Port() == 0 {
		t.Fatalf("Addr() = %v, want 127.0.0.2 and a port", a)
	}
	c := gatewaytest.NewClientOn(t, "udp4", "127.0.0.3:0", ts.Addr())
	c.RRQ("f", "octet")
	c.Expect(gatewaytest.Data(1, []byte("x")))
	c.SendError(0, "enough")
	if st := ts.NextStats(t); st.RemoteAddr.Addr() != netip.MustParseAddr("127.0.0.3") {
		t.Errorf("session from %v, want 127.0.0.3", st.RemoteAddr)
	}
}

// TestFixedTimer: the cfg functions run in order, nil ones skipped, so a
// later one changes the timeout and the timer stays fixed.
func TestFixedTimer(t *testing.T) {
	ts := gatewaytest.NewServer(t, gatewaytest.Files{}, gatewaytest.FixedTimer, nil, func(s *gateway.Server) { s.Timeout = time.Second })
	if s := ts.Config; s.Timeout != time.Second || s.MinTimeout < s.Timeout {
		t.Errorf("Timeout %v, MinTimeout %v; want 1s and a fixed timer", s.Timeout, s.MinTimeout)
	}
}

// TestPackets: the builders' bytes, option pairs in order and a name
// without a value left out.
func TestPackets(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want []byte
	}{
		{"RRQ", gatewaytest.ReadRequest("f", "octet", "blksize", "1024", "odd"), []byte("\x00\x01f\x00octet\x00blksize\x001024\x00")},
		{"WRQ", gatewaytest.WriteRequest("f", "octet"), []byte("\x00\x02f\x00octet\x00")},
		{"DATA", gatewaytest.Data(258, []byte("xy")), []byte("\x00\x03\x01\x02xy")},
		{"empty DATA", gatewaytest.Data(1, nil), []byte("\x00\x03\x00\x01")},
		{"ACK", gatewaytest.Ack(65535), []byte("\x00\x04\xff\xff")},
		{"ERROR", gatewaytest.ErrorPacket(5, "unknown transfer ID"), []byte("\x00\x05\x00\x05unknown transfer ID\x00")},
		{"OACK", gatewaytest.OACK("tsize", "3", "blksize", "8"), []byte("\x00\x06tsize\x003\x00blksize\x008\x00")},
	} {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if a := gatewaytest.Abbrev(gatewaytest.Pattern(100)); len(a) != 67 || !bytes.HasSuffix(a, []byte("...")) {
		t.Errorf("Abbrev of 100 bytes: %d bytes %q", len(a), a)
	}
	if p := gatewaytest.Pattern(1024); bytes.Equal(p[:512], p[512:]) {
		t.Error("Pattern repeats from one block to the next")
	}
}
