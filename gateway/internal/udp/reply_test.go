package udp

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestListenReply: a send-only session socket sends from a new port of
// the address asked for (IPv4, IPv6, and an IPv4 client of a dual-stack
// listener), on the port given when one is, and reports a port another
// socket holds as AddrInUse; reads fail at once.
func TestListenReply(t *testing.T) {
	for _, tc := range []struct {
		name          string
		clientNet     string
		clientAddr    string
		local         string
		clientAsSeen  func(netip.AddrPort) netip.AddrPort
		wantFromLocal string
	}{
		{"ipv4", "udp4", "127.0.0.1:0", "127.0.0.1", nil, "127.0.0.1"},
		{"ipv6", "udp6", "[::1]:0", "::1", nil, "::1"},
		{"ipv4_mapped_client", "udp4", "127.0.0.1:0", "::ffff:127.0.0.1", func(a netip.AddrPort) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), a.Port())
		}, "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := net.ListenPacket(tc.clientNet, tc.clientAddr)
			if err != nil {
				t.Skipf("no %s: %v", tc.clientNet, err)
			}
			defer cl.Close()
			client := cl.LocalAddr().(*net.UDPAddr).AddrPort()
			seen := client
			if tc.clientAsSeen != nil {
				seen = tc.clientAsSeen(client)
			}
			conn, got, err := ListenReply(netip.MustParseAddr(tc.local), seen, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got.Addr().Unmap() != client.Addr() || got.Port() != client.Port() {
				t.Errorf("client %v, want %v", got, client)
			}
			if _, err := conn.WriteToUDPAddrPort([]byte("\x00\x05\x00\x01file not found\x00"), got); err != nil {
				t.Fatal(err)
			}
			cl.SetReadDeadline(time.Now().Add(2 * time.Second))
			b := make([]byte, 100)
			n, from, err := cl.(*net.UDPConn).ReadFromUDPAddrPort(b)
			if err != nil {
				t.Fatal(err)
			}
			if string(b[:n]) != "\x00\x05\x00\x01file not found\x00" || from.Addr().Unmap().String() != tc.wantFromLocal || from.Port() == 0 {
				t.Errorf("got %q from %v", b[:n], from)
			}
			if _, _, err := conn.ReadFromUDPAddrPort(b); !errors.Is(err, net.ErrClosed) {
				t.Errorf("read: %v, want net.ErrClosed", err)
			}
			if err := conn.Close(); err != nil {
				t.Error(err)
			}
			if err := conn.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
	t.Run("port_in_use", func(t *testing.T) {
		held, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		port := uint16(held.LocalAddr().(*net.UDPAddr).Port)
		_, _, err = ListenReply(netip.MustParseAddr("127.0.0.1"), netip.MustParseAddrPort("127.0.0.1:9"), port)
		if !AddrInUse(err) {
			t.Fatalf("err %v, want one that AddrInUse reports", err)
		}
		free := port
		held.Close()
		conn, _, err := ListenReply(netip.MustParseAddr("127.0.0.1"), netip.MustParseAddrPort("127.0.0.1:9"), free)
		if err != nil {
			t.Fatalf("on the freed port: %v", err)
		}
		conn.Close()
	})
}
