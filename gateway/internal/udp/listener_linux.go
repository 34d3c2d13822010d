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

// rawReader reads the listening socket's datagrams with raw recvmmsg
// calls into memory the listener owns, up to batchLen a call: net's
// ReadMsgUDPAddrPort makes a blocking system call, through the scheduler,
// one per datagram, and in single-port mode the listener reads every ACK
// of every session, with more waiting almost every time (BENCHMARKS.md,
// "Lock-step, single-port mode and the 1,000-machine storm"). The read
// loop is its only user.
//
// A datagram is taken from the batch in hand before the socket is read
// again, so one recvmmsg serves several reads; each keeps its own source,
// control messages (destination address, kernel arrival time) and length.
// Datagrams still in hand when the socket is closed are returned first.
type rawReader struct {
	rc     syscall.RawConn // nil: not available, the listener uses net's path
	readFn func(fd uintptr) bool
	local  net.Addr

	// The batch: msgs[next:count] are datagrams read and not yet returned.
	msgs        [batchLen]unix.Mmsghdr
	iovs        [batchLen]unix.Iovec
	sas         [batchLen]unix.RawSockaddrAny
	bufs, oobs  []byte // a message's room: bufSize and oobSize bytes each
	bufSize     int
	oobSize     int
	vlen        int // messages a call may take: batchLen, fewer for long buffers
	next, count int
	err         error
}

// batchLen is the most datagrams one recvmmsg takes, and batchBytes the
// most room the batch's buffers take (a caller reading into long buffers
// gets fewer messages a call).
const (
	batchLen   = 32
	batchBytes = 256 << 10
)

func (r *rawReader) init(l *Listener) {
	if !fastPath || l.rc == nil || l.domain != unix.AF_INET && l.domain != unix.AF_INET6 {
		return
	}
	r.rc, r.local = l.rc, l.pc.LocalAddr()
	r.readFn = r.recvmmsg
}

// read reads a datagram into b and its control messages into oob; zones
// names the interface of a link-local source. ok is false when the caller
// must read with net's path. A datagram longer than b is cut to it, or to
// the room of the read that took the batch, if that was shorter (the
// read loop always reads into the same buffer).
func (r *rawReader) read(b, oob []byte, zones *zoneCache) (n, oobn int, src netip.AddrPort, ok bool, err error) {
	if r.rc == nil || len(b) == 0 || len(oob) == 0 {
		return 0, 0, netip.AddrPort{}, false, nil
	}
	if r.next == r.count {
		if err := r.fill(len(b), len(oob)); err != nil {
			if r.rc == nil { // recvmmsg refused: net's path from now on
				return 0, 0, netip.AddrPort{}, false, nil
			}
			return 0, 0, netip.AddrPort{}, true, err
		}
	}
	i := r.next
	r.next++
	m := &r.msgs[i]
	n = copy(b, r.bufs[i*r.bufSize:i*r.bufSize+int(m.Len)])
	oobn = copy(oob, r.oobs[i*r.oobSize:i*r.oobSize+int(m.Hdr.Controllen)])
	return n, oobn, fromSockaddr(&r.sas[i], zones), true, nil
}

// holds reports whether datagrams of the last batch are still to be
// returned: the next read then does not wait.
func (r *rawReader) holds() bool { return r.next < r.count }

// fill reads the next batch, waiting for the first datagram in the
// runtime's poller.
func (r *rawReader) fill(bufSize, oobSize int) error {
	if bufSize > r.bufSize || oobSize > r.oobSize {
		r.bufSize, r.oobSize = max(bufSize, r.bufSize), max(oobSize, r.oobSize)
		r.vlen = min(batchLen, max(1, batchBytes/r.bufSize))
		r.bufs = make([]byte, r.vlen*r.bufSize)
		r.oobs = make([]byte, r.vlen*r.oobSize)
		r.iovs, r.msgs = [batchLen]unix.Iovec{}, [batchLen]unix.Mmsghdr{} // nothing left pointing at the old room
		for i := range r.vlen {
			r.iovs[i].Base = &r.bufs[i*r.bufSize]
			r.iovs[i].SetLen(r.bufSize)
			h := &r.msgs[i].Hdr
			h.Iov, h.Iovlen = &r.iovs[i], 1
			h.Name = (*byte)(unsafe.Pointer(&r.sas[i]))
			h.Control = &r.oobs[i*r.oobSize]
		}
	}
	r.next, r.count, r.err = 0, 0, nil
	err := r.rc.Read(r.readFn)
	if err != nil {
		var oe *net.OpError // (escapes: only on the error path)
		if errors.As(err, &oe) && oe.Op == "raw-read" {
			oe.Op = "read" // a closed socket reads as with net's read
		}
		return err
	}
	return r.err
}

func (r *rawReader) recvmmsg(fd uintptr) bool {
	for i := range r.vlen {
		// The kernel writes back each message's lengths: restore the room.
		h := &r.msgs[i].Hdr
		h.Namelen = unix.SizeofSockaddrAny
		h.SetControllen(r.oobSize)
		h.Flags = 0
	}
	for {
		// MSG_DONTWAIT: the socket is the caller's, which may have made
		// it blocking (File().Fd() does); a raw call that blocked would
		// hold its thread without the runtime knowing, and stall every
		// stop-the-world, a GC's first, until a datagram came. With it,
		// the call takes what is queued, up to vlen, and never waits.
		n, e := sysRecvmmsg(fd, unsafe.Pointer(&r.msgs[0]), r.vlen)
		switch e {
		case 0:
			r.count = n
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		case unix.ENOSYS, unix.EPERM:
			// No recvmmsg here (a seccomp filter, an old or emulated
			// kernel): the listener reads with net's recvmsg instead.
			r.rc = nil
			r.err = os.NewSyscallError("recvmmsg", e)
			return true
		default:
			r.err = &net.OpError{Op: "read", Net: "udp", Source: r.local, Err: os.NewSyscallError("recvmmsg", e)}
			return true
		}
	}
}

// sysRecvmmsg is the raw call, non-blocking (a variable: tests make the
// kernel refuse it).
var sysRecvmmsg = func(fd uintptr, msgs unsafe.Pointer, vlen int) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(msgs), uintptr(vlen), unix.MSG_DONTWAIT, 0, 0)
	return int(n), e
}

// fromSockaddr is the source sa of a datagram, unmapped.
func fromSockaddr(sa *unix.RawSockaddrAny, zones *zoneCache) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
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
