package udp

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMuxSenderSocketKinds: a single-port session sends with the raw
// system call on every kind of listening socket (sendto when bound to one
// address, sendmsg with the source address's control message on a
// wildcard one, a v4-mapped address for an IPv4 client of a dual-stack
// socket), and the datagram reaches the client from the address the
// request was sent to. A listener whose socket is closed falls back to
// net's path and its error.
func TestMuxSenderSocketKinds(t *testing.T) {
	for _, tt := range []struct {
		name, network, laddr string
		client, dst          string // the client's socket, the request's destination
		wantOOB              bool
	}{
		{"v4_bound", "udp4", "127.0.0.1:0", "127.0.0.1", "127.0.0.1", false},
		{"v4_wildcard", "udp4", "0.0.0.0:0", "127.0.0.1", "127.0.0.5", true},
		{"dual_stack_v4_client", "udp", "[::]:0", "127.0.0.1", "127.0.0.3", true},
		{"dual_stack_v6_client", "udp", "[::]:0", "::1", "::1", true},
		{"v6_bound", "udp6", "[::1]:0", "::1", "::1", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pc, err := net.ListenPacket(tt.network, tt.laddr)
			if err != nil {
				t.Skipf("cannot listen on %s %s: %v", tt.network, tt.laddr, err)
			}
			defer pc.Close()
			l := NewListener(pc, false)
			cc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(tt.client), 0)))
			if err != nil {
				t.Skipf("no %s: %v", tt.client, err)
			}
			defer cc.Close()
			client := unmapPort(cc.LocalAddr().(*net.UDPAddr).AddrPort())
			m := l.Register(client, netip.MustParseAddr(tt.dst), nil)
			defer m.Close()
			if got := m.send.oob != nil; got != tt.wantOOB {
				t.Fatalf("control message %v, want %v", got, tt.wantOOB)
			}
			msg := []byte("\x00\x03\x00\x01payload")
			if n, err := m.WriteToUDPAddrPort(msg, client); err != nil || n != len(msg) {
				t.Fatalf("write: %d, %v", n, err)
			}
			if m.send.rc == nil {
				t.Fatal("the raw send is not set up")
			}
			cc.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			n, from, err := cc.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf[:n], msg) {
				t.Errorf("got %q, want %q", buf[:n], msg)
			}
			if want := netip.AddrPortFrom(netip.MustParseAddr(tt.dst), l.port); unmapPort(from) != want {
				t.Errorf("from %v, want %v", from, want)
			}

			pc.Close()
			if _, err := m.WriteToUDPAddrPort(msg, client); !errors.Is(err, net.ErrClosed) {
				t.Errorf("write on a closed listener: %v, want net.ErrClosed", err)
			}
		})
	}
}

// TestMuxSenderFallback: when the raw send leaves a datagram unsent (a
// full socket buffer: EAGAIN, which loopback cannot be made to return),
// net's path sends it, from the request's address; an error of the raw
// send is reported with the system call and the client.
func TestMuxSenderFallback(t *testing.T) {
	pc, err := net.ListenPacket("udp", "[::]:0")
	if err != nil {
		t.Skip(err)
	}
	defer pc.Close()
	l := NewListener(pc, false)
	cc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Skip(err)
	}
	defer cc.Close()
	client := cc.LocalAddr().(*net.UDPAddr).AddrPort()
	m := l.Register(client, netip.MustParseAddr("127.0.0.9"), nil)
	defer m.Close()

	big := make([]byte, 70000)
	_, err = m.WriteToUDPAddrPort(big, client)
	if !errors.Is(err, syscall.EMSGSIZE) || !strings.Contains(err.Error(), "sendmsg") || !strings.Contains(err.Error(), client.String()) {
		t.Errorf("oversize write: %v, want EMSGSIZE from sendmsg to %v", err, client)
	}

	calls := 0
	m.send.sendFn = func(uintptr) { calls++ } // nothing sent, as on EAGAIN
	if n, err := m.WriteToUDPAddrPort([]byte("abc"), client); err != nil || n != 3 {
		t.Fatalf("write: %d, %v", n, err)
	}
	if calls != 1 {
		t.Errorf("raw send tried %d times, want 1", calls)
	}
	cc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, from, err := cc.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:n]) != "abc" || unmapPort(from).Addr() != netip.MustParseAddr("127.0.0.9") {
		t.Errorf("got %q from %v, want \"abc\" from 127.0.0.9", buf[:n], from)
	}
}

// BenchmarkMuxSend: a single-port session's send allocates nothing.
func BenchmarkMuxSend(b *testing.B) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Skip(err)
	}
	defer pc.Close()
	l := NewListener(pc, false)
	cc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Skip(err)
	}
	defer cc.Close()
	cc.SetReadBuffer(4 << 20)
	client := cc.LocalAddr().(*net.UDPAddr).AddrPort()
	m := l.Register(client, netip.MustParseAddr("127.0.0.1"), nil)
	defer m.Close()
	msg := make([]byte, 516)
	buf := make([]byte, 1024)
	cc.SetReadDeadline(time.Now().Add(time.Minute))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.WriteToUDPAddrPort(msg, client); err != nil {
			b.Fatal(err)
		}
		if _, _, err := cc.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}
