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
// address (IP_PKTINFO / IPV6_PKTINFO), so that replies leave from it.
// Reading allocates nothing per datagram.
type listener struct {
	pc      net.PacketConn
	uc      *net.UDPConn // pc, when it is one
	pktinfo bool         // destination addresses arrive as control messages
	local   netip.Addr   // the bound address (unmapped)
	// single: single-port mode, where the sessions send and receive
	// through this socket, so it is closed after them.
	single bool
	port   uint16
	oob    []byte // read loop only

	wmu  sync.Mutex // guards wbuf
	wbuf []byte

	// Single-port mode: the sessions served through this socket, by client.
	muxMu sync.RWMutex
	mux   map[netip.AddrPort]*muxConn
}

func newListener(pc net.PacketConn) *listener {
	l := &listener{pc: pc, oob: make([]byte, 128), mux: make(map[netip.AddrPort]*muxConn)}
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		l.local, l.port = ap.Addr().Unmap(), ap.Port()
	}
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return l
	}
	l.uc = uc
	growRecvBuffer(uc, listenerRecvBuffer)
	if l.local.Is4() {
		l.pktinfo = ipv4.NewPacketConn(uc).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true) == nil
	} else {
		// On a dual-stack socket IPv4 datagrams get IPV6_PKTINFO too, with
		// a v4-mapped address.
		l.pktinfo = ipv6.NewPacketConn(uc).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true) == nil
	}
	return l
}

// read returns the next datagram, its source and the address it was sent
// to (IPv4 addresses unmapped).
func (l *listener) read(b []byte) (int, netip.AddrPort, netip.Addr, error) {
	if l.uc == nil {
		n, src, err := l.pc.ReadFrom(b)
		if err != nil {
			return 0, netip.AddrPort{}, netip.Addr{}, err
		}
		var sap netip.AddrPort
		if ua, ok := src.(*net.UDPAddr); ok {
			sap = ua.AddrPort()
		}
		return n, unmapPort(sap), l.local, nil
	}
	n, oobn, _, src, err := l.uc.ReadMsgUDPAddrPort(b, l.oob)
	if err != nil {
		return 0, netip.AddrPort{}, netip.Addr{}, err
	}
	dst := l.local
	if l.pktinfo {
		if d, ifi, ok := parsePktinfo(l.oob[:oobn]); ok {
			dst = d
			if d.Is6() && d.IsLinkLocalUnicast() && ifi > 0 {
				if ifc, err := net.InterfaceByIndex(int(ifi)); err == nil {
					dst = d.WithZone(ifc.Name)
				}
			}
		}
	}
	return n, unmapPort(src), dst, nil
}

func unmapPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// sourceOOB returns the control message that makes a datagram sent on the
// listening socket leave from the address from: nil when the socket is
// bound to one address anyway.
func (l *listener) sourceOOB(from netip.Addr) []byte {
	if !l.pktinfo || !from.IsValid() || from.IsUnspecified() || !l.local.IsUnspecified() {
		return nil
	}
	if from.Is4() {
		return (&ipv4.ControlMessage{Src: from.AsSlice()}).Marshal()
	}
	return (&ipv6.ControlMessage{Src: from.WithZone("").AsSlice()}).Marshal()
}

// writeTo sends b to to, with oob from sourceOOB.
func (l *listener) writeTo(b, oob []byte, to netip.AddrPort) error {
	if l.uc != nil {
		_, _, err := l.uc.WriteMsgUDPAddrPort(b, oob, to)
		return err
	}
	_, err := l.pc.WriteTo(b, net.UDPAddrFromAddrPort(to))
	return err
}

// replyError sends an ERROR from the listening port, from the address the
// request was sent to. The reply is never longer than the request of
// reqLen bytes (the message is cut), so a spoofed source cannot use the
// server to amplify traffic.
func (l *listener) replyError(to netip.AddrPort, from netip.Addr, code ErrorCode, msg string, reqLen int) {
	if n := max(reqLen-5, 0); len(msg) > n { // opcode, code and NUL take 5 bytes
		msg = msg[:n]
	}
	oob := l.sourceOOB(from)
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.wbuf = wire.AppendError(l.wbuf[:0], uint16(code), msg)
	l.writeTo(l.wbuf, oob, to)
}

func (l *listener) close() { l.pc.Close() }
