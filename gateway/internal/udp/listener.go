package udp

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/tftpgw/tftpgw/internal/wire"
)

// Listener is a listening socket that learns each datagram's destination
// address (IP_PKTINFO / IPV6_PKTINFO), so that replies leave from it.
// Reading allocates nothing per datagram. Read belongs to one goroutine
// (the read loop); the other methods may be called from any.
type Listener struct {
	pc      net.PacketConn
	uc      *net.UDPConn // pc, when it is one
	rc      syscall.RawConn
	domain  int        // uc's address family (AF_INET, AF_INET6); 0 if unknown
	raw     rawReader  // read loop only
	replies replyBatch // read loop only: single-port sessions' replies (see Offload)
	zones   zoneCache  // read loop only
	pktinfo bool       // destination addresses arrive as control messages
	local   netip.Addr // the bound address (unmapped)
	// single: single-port mode, where the sessions send and receive
	// through this socket, so it is closed after them.
	single bool
	port   uint16
	oob    []byte // read loop only

	wmu  sync.Mutex // guards wbuf
	wbuf []byte

	// Single-port mode: the sessions served through this socket, by client.
	muxMu sync.RWMutex
	mux   map[netip.AddrPort]*MuxConn
}

// NewListener serves pc. With single (single-port mode) the sessions send
// and receive through it (see Register), so it is closed after them.
func NewListener(pc net.PacketConn, single bool) *Listener {
	l := &Listener{pc: pc, single: single, oob: make([]byte, 128), mux: make(map[netip.AddrPort]*MuxConn)}
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		l.local, l.port = ap.Addr().Unmap(), ap.Port()
	}
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return l
	}
	l.uc = uc
	if rc, err := uc.SyscallConn(); err == nil {
		l.rc, l.domain = rc, socketDomain(rc)
	}
	l.raw.init(l)
	growRecvBuffer(uc, listenerRecvBuffer)
	enableRecvStamps(uc)
	if l.local.Is4() {
		l.pktinfo = ipv4.NewPacketConn(uc).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true) == nil
	} else {
		// On a dual-stack socket IPv4 datagrams get IPV6_PKTINFO too, with
		// a v4-mapped address.
		l.pktinfo = ipv6.NewPacketConn(uc).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true) == nil
	}
	return l
}

// control is what a datagram's control messages tell.
type control struct {
	dst     netip.Addr // the address it was sent to; invalid if unknown
	ifindex uint32     // the interface it came in on
	at      time.Time  // when it reached the socket; zero if unknown
}

// Datagram is one datagram read from the listening socket.
type Datagram struct {
	N   int            // its length
	Src netip.AddrPort // where it came from, unmapped
	Dst netip.Addr     // the address it was sent to, unmapped
	At  time.Time      // when it reached the socket (kernel timestamp), or when it was read
}

// Single reports whether the listener is in single-port mode.
func (l *Listener) Single() bool { return l.single }

// Port is the port the listener is bound to.
func (l *Listener) Port() uint16 { return l.port }

// Read returns the next datagram, in b. Datagrams are read from the
// socket several at a time where the platform allows (Linux: recvmmsg),
// so some may still be returned after the socket is closed.
func (l *Listener) Read(b []byte) (Datagram, error) {
	if !l.raw.holds() {
		// This read may wait: the replies made while serving the
		// datagrams read before go now.
		l.flushReplies()
	}
	if l.uc == nil {
		n, src, err := l.pc.ReadFrom(b)
		if err != nil {
			return Datagram{}, err
		}
		var sap netip.AddrPort
		if ua, ok := src.(*net.UDPAddr); ok {
			sap = ua.AddrPort()
		}
		return Datagram{N: n, Src: unmapPort(sap), Dst: l.local, At: time.Now()}, nil
	}
	n, oobn, src, ok, err := l.raw.read(b, l.oob, &l.zones)
	if !ok {
		n, oobn, _, src, err = l.uc.ReadMsgUDPAddrPort(b, l.oob)
	}
	if err != nil {
		return Datagram{}, err
	}
	d := Datagram{N: n, Src: unmapPort(src), Dst: l.local}
	c := parseControl(l.oob[:oobn])
	if l.pktinfo && c.dst.IsValid() {
		d.Dst = c.dst
		if c.dst.Is6() && c.dst.IsLinkLocalUnicast() && c.ifindex > 0 {
			d.Dst = c.dst.WithZone(l.zones.name(c.ifindex))
		}
	}
	// The kernel's timestamp counts the time the request waited in the
	// socket's queue (a boot storm's backlog); a clock step makes it
	// unusable, and then the read time serves. Either way At carries the
	// monotonic clock's reading (the kernel's time as an age before now),
	// so that comparing it with other times of this process (time.Now)
	// is not misled by a later step of the wall clock.
	now := time.Now()
	d.At = now
	if !c.at.IsZero() && !c.at.After(now) && now.Sub(c.at) < time.Minute {
		d.At = now.Add(-now.Sub(c.at))
	}
	return d, nil
}

func unmapPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// sourceOOB returns the control message that makes a datagram sent on the
// listening socket leave from the address from: nil when the socket is
// bound to one address anyway.
func (l *Listener) sourceOOB(from netip.Addr) []byte {
	if !l.pktinfo || !from.IsValid() || from.IsUnspecified() || !l.local.IsUnspecified() {
		return nil
	}
	if from.Is4() {
		return (&ipv4.ControlMessage{Src: from.AsSlice()}).Marshal()
	}
	return (&ipv6.ControlMessage{Src: from.WithZone("").AsSlice()}).Marshal()
}

// writeTo sends b to to, with oob from sourceOOB.
func (l *Listener) writeTo(b, oob []byte, to netip.AddrPort) error {
	if l.uc != nil {
		_, _, err := l.uc.WriteMsgUDPAddrPort(b, oob, to)
		return err
	}
	_, err := l.pc.WriteTo(b, net.UDPAddrFromAddrPort(to))
	return err
}

// ReplyError sends an ERROR from the listening port, from the address the
// request was sent to, and returns the message sent. The reply is never
// longer than the request of reqLen bytes (the message is cut), so a
// spoofed source cannot use the server to amplify traffic.
func (l *Listener) ReplyError(to netip.AddrPort, from netip.Addr, code uint16, msg string, reqLen int) string {
	if n := max(reqLen-5, 0); len(msg) > n { // opcode, code and NUL take 5 bytes
		msg = msg[:n]
	}
	oob := l.sourceOOB(from)
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.wbuf = wire.AppendError(l.wbuf[:0], code, msg)
	l.writeTo(l.wbuf, oob, to)
	return msg
}

// Close closes the socket.
func (l *Listener) Close() error { return l.pc.Close() }

// zoneCache names interfaces by index for IPv6 zones, as net's own zone
// cache does: a name is looked up (a netlink query) at most once a minute,
// not for every datagram of a link-local client.
type zoneCache map[uint32]zoneEntry

type zoneEntry struct {
	name string
	at   time.Time
}

func (z *zoneCache) name(index uint32) string {
	now := time.Now()
	if e, ok := (*z)[index]; ok && now.Sub(e.at) < time.Minute {
		return e.name
	}
	if *z == nil {
		*z = make(zoneCache)
	}
	n := zoneName(index)
	(*z)[index] = zoneEntry{n, now}
	return n
}

// zoneIndex is the interface index of an IPv6 zone (a name or a number);
// 0 if unknown.
func zoneIndex(zone string) uint32 {
	if zone == "" {
		return 0
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	if i, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(i)
	}
	return 0
}

// zoneName is the name of the interface with index i, or the number.
func zoneName(i uint32) string {
	if ifi, err := net.InterfaceByIndex(int(i)); err == nil {
		return ifi.Name
	}
	return strconv.FormatUint(uint64(i), 10)
}
