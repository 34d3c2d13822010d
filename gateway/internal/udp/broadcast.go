package udp

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Broadcasts knows the IPv4 broadcast addresses of the host's interfaces,
// so that a request sent to one is ignored (RFC 1123 4.2.3.5). Its zero
// value is ready to use; it is safe for concurrent use.
type Broadcasts struct {
	mu      sync.Mutex
	addrs   map[netip.Addr]struct{}
	updated time.Time
}

// refreshEvery bounds how stale the interface list may be.
const refreshEvery = 30 * time.Second

// Is reports whether dst is the limited broadcast address, a multicast
// address or the directed broadcast address of one of the host's
// networks.
func (b *Broadcasts) Is(dst netip.Addr, now time.Time) bool {
	if dst.IsMulticast() || dst == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return true
	}
	if !dst.Is4() {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.addrs == nil || now.Sub(b.updated) > refreshEvery {
		b.addrs = interfaceBroadcasts()
		b.updated = now
	}
	_, ok := b.addrs[dst]
	return ok
}

func interfaceBroadcasts() map[netip.Addr]struct{} {
	m := make(map[netip.Addr]struct{})
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return m
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ones, _ := ipn.Mask.Size()
		if bc, ok := directedBroadcast(netip.PrefixFrom(ip.Unmap(), ones)); ok {
			m[bc] = struct{}{}
		}
	}
	return m
}

// directedBroadcast returns the broadcast address of an IPv4 network; /31
// and /32 networks have none (RFC 3021).
func directedBroadcast(p netip.Prefix) (netip.Addr, bool) {
	if !p.Addr().Is4() || p.Bits() < 0 || p.Bits() > 30 {
		return netip.Addr{}, false
	}
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}
