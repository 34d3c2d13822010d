package gatewaytest

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tftpgw/tftpgw/gateway"
)

// FreePortRange returns n consecutive UDP ports for a server's
// [gateway.Server.PortRange] in a test. They lie below the kernel's
// ephemeral ports (which sockets bound to port 0 take, so that other
// tests do not land in the range), at a random place, and each was free on
// the wildcard addresses of IPv4 and IPv6 when it was chosen (bound and
// released). Nothing holds them after that: tests running in other
// processes that also ask for a range collide only by chance, about once
// in several thousand pairs of 4-port ranges.
func FreePortRange(t testing.TB, n int) gateway.PortRange {
	t.Helper()
	top := ephemeralLow()
	bottom := max(1024, top/3)
	if n < 1 || bottom+n > top {
		t.Fatalf("gatewaytest: FreePortRange(%d): no room below the ephemeral ports (%d)", n, top)
	}
	for range 100 {
		first := bottom + rand.IntN(top-n-bottom+1)
		if allFree(first, n) {
			return gateway.PortRange{First: uint16(first), Last: uint16(first + n - 1)}
		}
	}
	t.Fatalf("gatewaytest: FreePortRange(%d): no free range found in 100 tries", n)
	return gateway.PortRange{}
}

// allFree reports whether the ports first to first+n-1 can be bound on
// 0.0.0.0 and (where IPv6 works) on [::].
func allFree(first, n int) bool {
	var held []*net.UDPConn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	ipv6 := true
	for p := first; p < first+n; p++ {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(p))))
		if err != nil {
			return false
		}
		held = append(held, c)
		if !ipv6 {
			continue
		}
		c, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(p))))
		switch {
		case err == nil:
			held = append(held, c)
		case p == first:
			ipv6 = false // no IPv6 here, unless the port is taken on it
			if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err == nil {
				c.Close()
				return false
			}
		default:
			return false
		}
	}
	return true
}

// ephemeralLow is the first of the kernel's ephemeral ports: Linux's
// ip_local_port_range, else IANA's 49152.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if lo, err := strconv.Atoi(f[0]); err == nil && lo > 1024 {
				return lo
			}
		}
	}
	return 49152
}
