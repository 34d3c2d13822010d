package gateway_test

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
)

// TestSessionTimesStartAtTheRequestsArrival: a session's Start (and so its
// Duration and TimeToFirstData) is when its request reached the listening
// socket, so the time a request waits in a backlog (a boot storm) is
// counted, not hidden.
func TestSessionTimesStartAtTheRequestsArrival(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// As Serve will: stamped on arrival. Here the option must be on before
	// the request comes, which Serve sets only when it starts.
	rc, err := pc.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) })
	addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	c := gatewaytest.NewClient(t, addr)
	sent := time.Now()
	c.RRQ("f", "octet") // waits in the socket's queue: nothing reads it yet
	const backlog = 200 * time.Millisecond
	time.Sleep(backlog)
	stats := make(chan gateway.SessionStats, 1)
	srv := &gateway.Server{
		Handler:          gatewaytest.Files{"f": []byte("abc")},
		Logger:           slog.New(slog.DiscardHandler),
		SessionStatsFunc: func(s gateway.SessionStats) { stats <- s },
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(pc) }()
	defer func() {
		srv.Close()
		<-done
	}()
	c.Expect(gatewaytest.Data(1, []byte("abc")))
	c.Ack(1)
	select {
	case st := <-stats:
		if st.TimeToFirstData < backlog || st.Start.Sub(sent) > backlog/2 {
			t.Errorf("Start %v after the request was sent, TimeToFirstData %v; want the %v the request waited counted",
				st.Start.Sub(sent), st.TimeToFirstData, backlog)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no session stats")
	}
}
