package gateway_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
)

// TestBackloggedDuplicateRRQIgnored: the kernel's receive timestamp
// decides, not when the listener reads the request. A retransmitted RRQ
// waits in a listening socket's queue (here a second socket of the
// server, which starts reading only then; in a boot storm, the backlog)
// while the client acknowledges DATA 1; read afterwards, it is still a
// duplicate: ignored, and the transfer goes on (regression: the session
// was ended as aborted and the transfer restarted at DATA 1).
func TestBackloggedDuplicateRRQIgnored(t *testing.T) {
	content := gatewaytest.Pattern(1300) // 3 blocks
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := pc.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	// As Serve does, but before it starts: the queued request is stamped.
	rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) })
	late := pc.LocalAddr().(*net.UDPAddr).AddrPort()

	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet")
	c.Expect(gatewaytest.Data(1, content[:512]))
	c.SendTo(late, gatewaytest.ReadRequest("f", "octet")) // the retransmission, queued
	c.Ack(1)
	c.Expect(gatewaytest.Data(2, content[512:1024])) // the session has taken the ACK

	done := make(chan error, 1)
	go func() { done <- ts.Config.Serve(pc) }() // reads the queued request now
	t.Cleanup(func() {
		ts.Config.Close()
		if err := <-done; !errors.Is(err, gateway.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	for i := 0; ts.Config.Stats().DuplicateRequests == 0; i++ {
		if i == 500 {
			t.Fatalf("the queued request was not taken for a duplicate within 5 s: %+v", ts.Config.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.ExpectNothing(200 * time.Millisecond)
	c.Ack(2)
	c.Expect(gatewaytest.Data(3, content[1024:]))
	c.Ack(3)
	if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK || st.BytesAcked != int64(len(content)) {
		t.Errorf("session: %v, %d bytes acknowledged; want ok, %d", st.Outcome, st.BytesAcked, len(content))
	}
}
