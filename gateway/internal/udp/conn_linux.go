package udp

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// listenSocket opens a non-blocking UDP socket bound to bind (see
// openSocket) and registers it with the runtime's poller through
// os.NewFile: net.ListenUDP would also set SO_BROADCAST, ask the kernel
// for the address it bound, and build a net.UDPConn's addresses and
// strings, about a third of what it costs to open a small transfer's
// session (BENCHMARKS.md, "Small requests").
func listenSocket(bind netip.AddrPort, v4 bool) (socket, error) {
	fd, err := openSocket(bind, v4)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "udp"), nil
}

// openSocket opens a non-blocking UDP socket bound to bind, IPv6 only
// unless v4 (as net does for "udp6"), with raw system calls: none of them
// can block on a UDP socket, and a raw call spares the scheduler's
// bookkeeping and the wakeups of its monitor thread that the first
// system call after an idle spell costs.
func openSocket(bind netip.AddrPort, v4 bool) (int, error) {
	domain := unix.AF_INET6
	if v4 {
		domain = unix.AF_INET
	}
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(domain), unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if e != 0 {
		return -1, &net.OpError{Op: "listen", Net: "udp", Addr: net.UDPAddrFromAddrPort(bind), Err: os.NewSyscallError("socket", e)}
	}
	if !v4 {
		one := int32(1)
		unix.RawSyscall6(unix.SYS_SETSOCKOPT, fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, uintptr(unsafe.Pointer(&one)), 4, 0)
	}
	var sa sockaddr
	sa.set(bind, v4)
	if _, _, e := unix.RawSyscall(unix.SYS_BIND, fd, uintptr(sa.p), sa.len); e != 0 {
		unix.RawSyscall(unix.SYS_CLOSE, fd, 0, 0)
		return -1, &net.OpError{Op: "listen", Net: "udp", Addr: net.UDPAddrFromAddrPort(bind), Err: os.NewSyscallError("bind", e)}
	}
	return int(fd), nil
}

// fastConn is a session's own socket, read and written through its
// descriptor, for the packets of the transfer: the client's address is
// prepared once and a source address is decoded without allocating, and
// both the send to the client and the read are raw system calls (on a
// non-blocking socket, into or from memory the session owns, they cannot
// wait: EAGAIN instead), which spares the scheduler's bookkeeping and the
// runtime's monitor thread the wakeups it makes to watch system calls
// (BENCHMARKS.md, "Fast paths", has what each step saved). Packets to
// anyone else take the wrapped conn's path.
//
// The read that follows a send would always find nothing: the answer
// cannot have come yet. A session therefore hands the last datagram of a
// window to SendBeforeRead, and the next read sends it from inside
// RawConn.Read, after Read has forgotten the socket's readiness, and then
// waits for readiness without looking at the queue: an answer arriving
// after the send is an edge the wait sees. (Skipping the recvfrom in a
// read made after a separate send would miss an answer that came in
// between until the timeout.) A datagram queued before the send (a
// duplicate ACK) is not missed: the send's completion raises an output
// edge, and the poller, reporting the socket's state, finds it readable
// too. A send that fails raises nothing, so the step then reads at once.
type fastConn struct {
	sock   socket // deadlines and Close
	rc     syscall.RawConn
	client netip.AddrPort
	scope  uint32 // the client's IPv6 zone as an interface index
	closed atomic.Bool
	local  atomic.Pointer[net.UDPAddr] // LocalAddr's, once asked

	// The read in progress.
	rbuf     []byte
	rn       int
	rfrom    netip.AddrPort
	rerr     error
	rsa      unix.RawSockaddrAny
	rsaLen   uint32
	readFn   func(fd uintptr) bool
	writeFn  func(fd uintptr) bool
	queuedFn func(fd uintptr)
	queued   bool // ReadQueued's recvfrom took a datagram

	// pending is a datagram for the client held by SendBeforeRead, and
	// pendingErr the error of its send.
	pending    []byte
	pendingErr error

	// The send in progress.
	wbuf []byte
	werr error
	sa   sockaddr // the client's
}

// newSessionConn wraps c, a session's socket for client, in a fastConn;
// a *net.UDPConn in a plainConn when its descriptor cannot be had or the
// fast path is not used.
func newSessionConn(c socket, client netip.AddrPort) Conn {
	rc, err := c.SyscallConn()
	if uc, ok := c.(*net.UDPConn); ok && (err != nil || !fastPath) {
		return plainConn{uc}
	}
	f := &fastConn{sock: c, rc: rc, client: client}
	f.sa.set(client, client.Addr().Is4())
	f.scope = f.sa.sa6.Scope_id
	f.readFn, f.writeFn = f.readStep, f.sendto
	f.queuedFn = func(fd uintptr) { f.queued = f.recvfrom(fd) && f.rerr == nil }
	return f
}

// EnableGSO implements Conn.
func (f *fastConn) EnableGSO(size int) int { return enableGSO(f.sock, size) }

// DisableGSO implements Conn.
func (f *fastConn) DisableGSO() { disableGSO(f.sock) }

// SetReadDeadline sets the deadline of reads, as net.UDPConn's does.
func (f *fastConn) SetReadDeadline(t time.Time) error { return f.sock.SetReadDeadline(t) }

// Close closes the socket; reads and writes then fail with net.ErrClosed.
func (f *fastConn) Close() error {
	f.closed.Store(true)
	return f.sock.Close()
}

// LocalAddr returns the address the socket is bound to.
func (f *fastConn) LocalAddr() net.Addr {
	if a := f.local.Load(); a != nil {
		return a
	}
	var sa unix.Sockaddr
	var err error
	f.rc.Control(func(fd uintptr) { sa, err = unix.Getsockname(int(fd)) })
	a := &net.UDPAddr{}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		a = net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)))
	case *unix.SockaddrInet6:
		ip := netip.AddrFrom16(sa.Addr)
		if sa.ZoneId != 0 {
			ip = ip.WithZone(zoneName(sa.ZoneId))
		}
		a = net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(sa.Port)))
	}
	if err == nil {
		f.local.Store(a)
	}
	return a
}

// ReadFromUDPAddrPort reads the next datagram like net.UDPConn's, within
// the read deadline, after sending the datagram held by SendBeforeRead.
func (f *fastConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		f.rbuf, f.rerr = b, nil
		err := f.rc.Read(f.readFn)
		if f.pending != nil {
			// Not sent: the deadline had passed or the socket was closed
			// before the read began, or the send buffer is full (the read
			// step then returned to let net's write wait for room).
			f.flush()
			if err == nil {
				continue
			}
		}
		if err != nil {
			return 0, netip.AddrPort{}, f.opError(err, "read")
		}
		return f.rn, f.rfrom, f.rerr
	}
}

// opError makes err, from the RawConn's Read or Write, read as
// net.UDPConn's own calls' errors do: a *net.OpError naming op, with
// net.ErrClosed once the socket is closed. net's RawConn names its
// operation "raw-read" or "raw-write"; an *os.File's gives poll's bare
// errors (its deadline error is os.ErrDeadlineExceeded either way).
func (f *fastConn) opError(err error, op string) error {
	var oe *net.OpError // (escapes: only on the error path)
	if errors.As(err, &oe) {
		if strings.HasPrefix(oe.Op, "raw-") {
			oe.Op = op
		}
		return err
	}
	if f.closed.Load() && !errors.Is(err, os.ErrDeadlineExceeded) {
		err = net.ErrClosed
	}
	return &net.OpError{Op: op, Net: "udp", Source: f.LocalAddr(), Err: err}
}

// Offload reports false: a session's own socket is read by the session.
func (f *fastConn) Offload(Responder) bool { return false }

// SendBeforeRead holds b, a datagram for the client, for the next read or
// write to send first (see the type's comment).
func (f *fastConn) SendBeforeRead(b []byte) bool {
	if f.pending != nil {
		f.flush()
	}
	f.pending = b
	return true
}

// TakeSendErr returns and forgets the error of the last held send.
func (f *fastConn) TakeSendErr() error {
	err := f.pendingErr
	f.pendingErr = nil
	return err
}

// flush sends the held datagram through WriteToUDPAddrPort.
func (f *fastConn) flush() {
	b := f.pending
	f.pending = nil
	if _, err := f.WriteToUDPAddrPort(b, f.client); err != nil {
		f.pendingErr = err
	}
}

// readStep is RawConn.Read's step: the held datagram's send, after which
// the answer cannot be there yet (the step reports false: wait for
// readiness), or a recvfrom.
func (f *fastConn) readStep(fd uintptr) bool {
	if f.pending == nil {
		return f.recvfrom(fd)
	}
	f.wbuf, f.werr = f.pending, nil
	if !f.sendto(fd) {
		return true // EAGAIN: ReadFromUDPAddrPort sends it through net's wait
	}
	f.pending, f.pendingErr = nil, f.werr
	if f.werr != nil {
		// Nothing went out, so no answer will raise readiness: a datagram
		// already queued must be looked for now.
		return f.recvfrom(fd)
	}
	return false
}

// ReadQueued returns a datagram that waits in the socket's queue, without
// waiting, whatever the read deadline: net's read reports an expired
// deadline before it looks at the queue.
func (f *fastConn) ReadQueued(b []byte) (int, netip.AddrPort, bool) {
	if f.pending != nil {
		f.flush()
	}
	f.rbuf, f.rerr, f.queued = b, nil, false
	if err := f.rc.Control(f.queuedFn); err != nil || !f.queued {
		return 0, netip.AddrPort{}, false
	}
	return f.rn, f.rfrom, true
}

func (f *fastConn) recvfrom(fd uintptr) bool {
	f.rsaLen = unix.SizeofSockaddrAny
	var p unsafe.Pointer
	if len(f.rbuf) > 0 {
		p = unsafe.Pointer(&f.rbuf[0])
	}
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(p), uintptr(len(f.rbuf)), unix.MSG_DONTWAIT,
		uintptr(unsafe.Pointer(&f.rsa)), uintptr(unsafe.Pointer(&f.rsaLen)))
	switch e {
	case 0:
		f.rn, f.rfrom = int(n), f.fromAddr()
	case unix.EAGAIN:
		return false
	case unix.EINTR:
		return f.recvfrom(fd)
	default:
		f.rn, f.rfrom, f.rerr = 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Source: f.LocalAddr(), Err: os.NewSyscallError("recvfrom", e)}
	}
	return true
}

// fromAddr is the source of the datagram just read.
func (f *fastConn) fromAddr() netip.AddrPort {
	switch f.rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&f.rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&f.rsa))
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			if sa.Scope_id == f.scope {
				a = a.WithZone(f.client.Addr().Zone())
			} else {
				a = a.WithZone(zoneName(sa.Scope_id))
			}
		}
		return netip.AddrPortFrom(a, port(sa.Port))
	}
	return netip.AddrPort{}
}

// WriteToUDPAddrPort sends b to addr.
func (f *fastConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if f.pending != nil {
		f.flush() // in order
	}
	if addr != f.client {
		return f.writeToStranger(b, addr)
	}
	f.wbuf, f.werr = b, nil
	if err := f.rc.Write(f.writeFn); err != nil {
		return 0, f.opError(err, "write")
	}
	if f.werr != nil {
		return 0, f.werr
	}
	return len(b), nil
}

// sockaddr is an address in the kernel's form, for raw system calls.
type sockaddr struct {
	p   unsafe.Pointer // &sa4 or &sa6
	len uintptr
	sa4 unix.RawSockaddrInet4
	sa6 unix.RawSockaddrInet6
}

// set makes s ap: an IPv4 sockaddr when v4 (ap's address is then IPv4),
// else an IPv6 one (an IPv4 address IPv4-mapped, as a dual-stack socket
// takes it), its zone as an interface index.
func (s *sockaddr) set(ap netip.AddrPort, v4 bool) {
	a := ap.Addr()
	if v4 {
		s.sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		putPort(&s.sa4.Port, ap.Port())
		s.p, s.len = unsafe.Pointer(&s.sa4), unix.SizeofSockaddrInet4
		return
	}
	s.sa6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16(), Scope_id: zoneIndex(a.Zone())}
	putPort(&s.sa6.Port, ap.Port())
	s.p, s.len = unsafe.Pointer(&s.sa6), unix.SizeofSockaddrInet6
}

// writeToStranger sends b to addr, not the client (an unknown transfer
// ID's ERROR): rare, so a sockaddr of its own is made for it.
func (f *fastConn) writeToStranger(b []byte, addr netip.AddrPort) (int, error) {
	var sa unix.Sockaddr
	if a := addr.Addr().Unmap(); a.Is4() && f.sa.p == unsafe.Pointer(&f.sa.sa4) {
		sa = &unix.SockaddrInet4{Addr: a.As4(), Port: int(addr.Port())}
	} else {
		sa = &unix.SockaddrInet6{Addr: addr.Addr().As16(), Port: int(addr.Port()), ZoneId: zoneIndex(addr.Addr().Zone())}
	}
	var serr error
	err := f.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, unix.MSG_DONTWAIT, sa)
		return serr != unix.EAGAIN
	})
	if err != nil {
		return 0, f.opError(err, "write")
	}
	if serr != nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: f.LocalAddr(), Addr: net.UDPAddrFromAddrPort(addr), Err: os.NewSyscallError("sendto", serr)}
	}
	return len(b), nil
}

func (f *fastConn) sendto(fd uintptr) bool {
	var p unsafe.Pointer
	if len(f.wbuf) > 0 {
		p = unsafe.Pointer(&f.wbuf[0])
	}
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(p), uintptr(len(f.wbuf)), unix.MSG_DONTWAIT, uintptr(f.sa.p), f.sa.len)
	switch e {
	case 0:
	case unix.EAGAIN:
		return false // wait for room in the socket's buffer
	case unix.EINTR:
		return f.sendto(fd)
	default:
		f.werr = &net.OpError{Op: "write", Net: "udp", Source: f.LocalAddr(), Err: os.NewSyscallError("sendto", e)}
	}
	return true
}

// port converts a port in network byte order.
func port(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}
