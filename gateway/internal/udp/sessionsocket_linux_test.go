package udp

// The raw session sockets behave, to their
// callers, as the net.UDPConn ones they replace.

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(ents)
}

// TestSessionSocketErrors: AddrInUse for a port held by another
// socket, no descriptor left behind by a failed bind, CLOEXEC, deadline and
// close errors as net's.
func TestSessionSocketErrors(t *testing.T) {
	for _, ip := range []string{"127.0.0.1", "::1"} {
		t.Run(ip, func(t *testing.T) {
			local := netip.MustParseAddr(ip)
			client := netip.AddrPortFrom(local, 9)
			held, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
			if err != nil {
				t.Skip(err)
			}
			defer held.Close()
			port := held.LocalAddr().(*net.UDPAddr).AddrPort().Port()
			before := fdCount(t)
			for range 50 {
				for _, listen := range []func(netip.Addr, netip.AddrPort, uint16) (Conn, netip.AddrPort, error){ListenSessionPort, ListenReply} {
					c, _, err := listen(local, client, port)
					if err == nil {
						c.Close()
						t.Fatal("bound a port another socket holds")
					}
					if !AddrInUse(err) {
						t.Fatalf("error %v does not satisfy AddrInUse", err)
					}
					if !strings.Contains(err.Error(), "address already in use") {
						t.Errorf("error text %q", err)
					}
				}
			}
			if after := fdCount(t); after > before {
				t.Errorf("descriptors: %d before 100 failed binds, %d after", before, after)
			}

			c, _, err := ListenSessionPort(local, client, 0)
			if err != nil {
				t.Fatal(err)
			}
			f, ok := c.(*fastConn)
			if !ok {
				t.Skipf("%T, not a fastConn", c)
			}
			var flags int
			f.rc.Control(func(fd uintptr) { flags, _ = unix.FcntlInt(fd, unix.F_GETFD, 0) })
			if flags&unix.FD_CLOEXEC == 0 {
				t.Error("session socket without FD_CLOEXEC")
			}
			la, ok := f.LocalAddr().(*net.UDPAddr)
			if !ok || la.AddrPort().Addr() != local || la.Port == 0 {
				t.Errorf("LocalAddr %v", f.LocalAddr())
			}
			f.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			_, _, err = f.ReadFromUDPAddrPort(make([]byte, 100))
			var ne net.Error
			if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("read past the deadline: %v", err)
			}
			// A read blocked when the socket closes.
			f.SetReadDeadline(time.Time{})
			var wg sync.WaitGroup
			wg.Add(1)
			var rerr error
			go func() {
				defer wg.Done()
				_, _, rerr = f.ReadFromUDPAddrPort(make([]byte, 100))
			}()
			time.Sleep(20 * time.Millisecond)
			f.Close()
			wg.Wait()
			if !errors.Is(rerr, net.ErrClosed) {
				t.Errorf("read blocked over Close: %v, want net.ErrClosed", rerr)
			}
			if _, _, err := f.ReadFromUDPAddrPort(make([]byte, 100)); !errors.Is(err, net.ErrClosed) {
				t.Errorf("read after Close: %v", err)
			}
			if _, err := f.WriteToUDPAddrPort([]byte("x"), client); !errors.Is(err, net.ErrClosed) {
				t.Errorf("write after Close: %v", err)
			}
			if _, err := f.WriteToUDPAddrPort([]byte("x"), netip.AddrPortFrom(local, 10)); !errors.Is(err, net.ErrClosed) {
				t.Errorf("write to a stranger after Close: %v", err)
			}
			if err := f.SetReadDeadline(time.Now()); err == nil {
				t.Log("SetReadDeadline after Close: nil")
			}
		})
	}
}

// TestSessionSocketAnswersStrangers: the ERROR to an unknown TID goes out from the
// session's socket, to an IPv4, an IPv4-mapped or an IPv6 stranger.
func TestSessionSocketAnswersStrangers(t *testing.T) {
	for _, tc := range []struct{ local, stranger, strangerAs string }{
		{"127.0.0.1", "127.0.0.1", "127.0.0.1"},
		{"127.0.0.1", "::ffff:127.0.0.1", "127.0.0.1"},
		{"::1", "::1", "::1"},
	} {
		t.Run(tc.stranger, func(t *testing.T) {
			local := netip.MustParseAddr(tc.local)
			cl, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
			if err != nil {
				t.Skip(err)
			}
			defer cl.Close()
			st, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(tc.strangerAs), 0)))
			if err != nil {
				t.Skip(err)
			}
			defer st.Close()
			c, _, err := ListenSessionPort(local, cl.LocalAddr().(*net.UDPAddr).AddrPort(), 0)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sp := st.LocalAddr().(*net.UDPAddr).AddrPort().Port()
			to := netip.AddrPortFrom(netip.MustParseAddr(tc.stranger), sp)
			if _, err := c.WriteToUDPAddrPort([]byte("stranger"), to); err != nil {
				t.Fatalf("write to %v: %v", to, err)
			}
			st.SetReadDeadline(time.Now().Add(time.Second))
			b := make([]byte, 100)
			n, from, err := st.ReadFromUDPAddrPort(b)
			if err != nil || string(b[:n]) != "stranger" {
				t.Fatalf("stranger got %q %v", b[:n], err)
			}
			if want := c.(interface{ LocalAddr() net.Addr }).LocalAddr().(*net.UDPAddr).AddrPort(); from.Port() != want.Port() {
				t.Errorf("from %v, want the session socket %v", from, want)
			}
		})
	}
}
