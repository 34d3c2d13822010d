package udp

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawReader reads the listening socket's datagrams with a raw recvmsg
// into memory the listener owns: net's ReadMsgUDPAddrPort makes a
// blocking system call, through the scheduler, and in single-port mode
// the listener reads every ACK of every session. The read loop is its
// only user.
type rawReader struct {
	rc     syscall.RawConn // nil: not available, the listener uses net's path
	readFn func(fd uintptr) bool
	local  net.Addr

	msg    unix.Msghdr
	iov    unix.Iovec
	sa     unix.RawSockaddrAny
	oobCap int
	n      int
	oobn   int
	err    error
}

func (r *rawReader) init(l *Listener) {
	if !fastPath || l.rc == nil || l.domain != unix.AF_INET && l.domain != unix.AF_INET6 {
		return
	}
	r.rc, r.local = l.rc, l.pc.LocalAddr()
	r.readFn = r.recvmsg
}

// read reads a datagram into b and its control messages into oob; zones
// names the interface of a link-local source. ok is false when the caller
// must read with net's path.
func (r *rawReader) read(b, oob []byte, zones *zoneCache) (n, oobn int, src netip.AddrPort, ok bool, err error) {
	if r.rc == nil || len(b) == 0 || len(oob) == 0 {
		return 0, 0, netip.AddrPort{}, false, nil
	}
	r.iov.Base = &b[0]
	r.iov.SetLen(len(b))
	r.msg.Iov, r.msg.Iovlen = &r.iov, 1
	r.msg.Control, r.oobCap = &oob[0], len(oob)
	r.err = nil
	err = r.rc.Read(r.readFn)
	r.iov.Base, r.msg.Control = nil, nil
	if err != nil {
		var oe *net.OpError // (escapes: only on the error path)
		if errors.As(err, &oe) && oe.Op == "raw-read" {
			oe.Op = "read" // a closed socket reads as with net's read
		}
	} else {
		err = r.err
	}
	if err != nil {
		return 0, 0, netip.AddrPort{}, true, err
	}
	return r.n, r.oobn, r.from(zones), true, nil
}

func (r *rawReader) recvmsg(fd uintptr) bool {
	r.msg.Name = (*byte)(unsafe.Pointer(&r.sa))
	r.msg.Namelen = unix.SizeofSockaddrAny
	r.msg.SetControllen(r.oobCap)
	for {
		// MSG_DONTWAIT: the socket is the caller's, which may have made
		// it blocking (File().Fd() does); a raw call that blocked would
		// hold its thread without the runtime knowing, and stall every
		// stop-the-world, a GC's first, until a datagram came.
		n, _, e := unix.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&r.msg)), unix.MSG_DONTWAIT)
		switch e {
		case 0:
			r.n, r.oobn = int(n), int(r.msg.Controllen)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			r.n, r.oobn, r.err = 0, 0, &net.OpError{Op: "read", Net: "udp", Source: r.local, Err: os.NewSyscallError("recvmsg", e)}
			return true
		}
	}
}

// from is the source of the datagram just read, unmapped.
func (r *rawReader) from(zones *zoneCache) netip.AddrPort {
	switch r.sa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&r.sa))
		a := netip.AddrFrom16(sa.Addr).Unmap()
		if sa.Scope_id != 0 && a.Is6() {
			a = a.WithZone(zones.name(sa.Scope_id))
		}
		return netip.AddrPortFrom(a, port(sa.Port))
	}
	return netip.AddrPort{}
}

// socketDomain is the address family of rc's socket, 0 if unknown.
func socketDomain(rc syscall.RawConn) int {
	d := 0
	rc.Control(func(fd uintptr) {
		if v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil {
			d = v
		}
	})
	return d
}
