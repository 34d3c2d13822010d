package gateway

import (
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/tftpgw/tftpgw/gateway/internal/wire"
)

// listener is a listening socket that learns each datagram's destination
// address (IP_PKTINFO / IPV6_PKTINFO), so a session can reply from it.
type listener struct {
	pc    net.PacketConn
	p4    *ipv4.PacketConn // set for an IPv4 socket, and for IPv4 replies on a dual-stack one
	p6    *ipv6.PacketConn // set for an IPv6 or dual-stack socket
	local netip.Addr       // the bound address, used when no control message arrives
	port  uint16

	wmu  sync.Mutex // guards wbuf
	wbuf []byte
}

func newListener(pc net.PacketConn) *listener {
	l := &listener{pc: pc}
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		l.local, l.port = ap.Addr().Unmap(), ap.Port()
	}
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return l
	}
	if l.local.Is4() {
		p4 := ipv4.NewPacketConn(uc)
		if p4.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true) == nil {
			l.p4 = p4
		}
		return l
	}
	p6 := ipv6.NewPacketConn(uc)
	if p6.SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true) == nil {
		l.p6 = p6
		l.p4 = ipv4.NewPacketConn(uc) // writes to IPv4 clients of a dual-stack socket
	}
	return l
}

// read returns the next datagram, its source and the address it was sent
// to (IPv4 addresses unmapped).
func (l *listener) read(b []byte) (int, netip.AddrPort, netip.Addr, error) {
	var (
		n   int
		src net.Addr
		dst net.IP
		ifi int
		err error
	)
	switch {
	case l.p6 != nil:
		var cm *ipv6.ControlMessage
		n, cm, src, err = l.p6.ReadFrom(b)
		if cm != nil {
			dst, ifi = cm.Dst, cm.IfIndex
		}
	case l.p4 != nil:
		var cm *ipv4.ControlMessage
		n, cm, src, err = l.p4.ReadFrom(b)
		if cm != nil {
			dst, ifi = cm.Dst, cm.IfIndex
		}
	default:
		n, src, err = l.pc.ReadFrom(b)
	}
	if err != nil {
		return 0, netip.AddrPort{}, netip.Addr{}, err
	}
	var sap netip.AddrPort
	if ua, ok := src.(*net.UDPAddr); ok {
		sap = ua.AddrPort()
		sap = netip.AddrPortFrom(sap.Addr().Unmap(), sap.Port())
	}
	d := l.local
	if a, ok := netip.AddrFromSlice(dst); ok {
		d = a.Unmap()
		if d.Is6() && d.IsLinkLocalUnicast() && ifi > 0 {
			if ifc, err := net.InterfaceByIndex(ifi); err == nil {
				d = d.WithZone(ifc.Name)
			}
		}
	}
	return n, sap, d, nil
}

// replyError sends an ERROR from the listening port, from the address the
// request was sent to.
func (l *listener) replyError(to netip.AddrPort, from netip.Addr, code ErrorCode, msg string) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.wbuf = wire.AppendError(l.wbuf[:0], uint16(code), msg)
	dst := net.UDPAddrFromAddrPort(to)
	switch {
	case to.Addr().Is4() && l.p4 != nil:
		var cm *ipv4.ControlMessage
		if from.Is4() && !from.IsUnspecified() {
			cm = &ipv4.ControlMessage{Src: from.AsSlice()}
		}
		l.p4.WriteTo(l.wbuf, cm, dst)
	case l.p6 != nil:
		var cm *ipv6.ControlMessage
		if from.Is6() && !from.IsUnspecified() {
			cm = &ipv6.ControlMessage{Src: from.AsSlice()}
		}
		l.p6.WriteTo(l.wbuf, cm, dst)
	default:
		l.pc.WriteTo(l.wbuf, dst)
	}
}

func (l *listener) close() { l.pc.Close() }
