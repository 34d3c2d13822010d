package udp

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// muxSender sends a single-port session's packets to its client with a
// raw system call on the listening socket's descriptor: sendto, or
// sendmsg when a control message picks the source address, with the
// client's address prepared once. net's WriteMsgUDPAddrPort takes the
// socket's write lock, which every session of the listener shares and
// contends for, and converts the address on every call. The descriptor is
// held through RawConn.Control, which counts a reference (the socket
// cannot be closed and its number reused during the call) but takes no
// lock: the kernel sends datagrams on one socket from several threads.
type muxSender struct {
	l      *Listener // nil: not available, the caller uses net's path
	client netip.AddrPort
	oob    []byte // the source address's control message, if any

	mu       sync.Mutex // one send at a time uses the fields below
	prepared bool       // by the first send, on the session's goroutine
	rc       syscall.RawConn
	sendFn   func(fd uintptr)
	buf      []byte
	sent     bool // the datagram went out or failed; false: EAGAIN
	err      error

	sa   sockaddr // the client's
	msg  unix.Msghdr
	iov  unix.Iovec
	addr *net.UDPAddr // the client, for errors
}

// init makes s send to client from l's socket, with the control message
// oob (from sourceOOB). It runs on the listener's read loop, so the
// address is prepared later, by the first send (a zone's interface index
// is a netlink query).
func (s *muxSender) init(l *Listener, client netip.AddrPort, oob []byte) {
	if fastPath && l.rc != nil {
		s.l, s.client, s.oob = l, client, oob
	}
}

// prepare sets up the client's address and the message header; s.rc
// stays nil when the socket's family is unknown or cannot reach client.
func (s *muxSender) prepare() {
	s.prepared = true
	a := s.client.Addr()
	switch {
	case s.l.domain == unix.AF_INET && a.Is4():
		s.sa.set(s.client, true)
	case s.l.domain == unix.AF_INET6:
		// An IPv4 client of a dual-stack socket is v4-mapped, as net
		// maps it.
		s.sa.set(s.client, false)
	default:
		return
	}
	if len(s.oob) > 0 {
		s.msg.Name = (*byte)(s.sa.p)
		s.msg.Namelen = uint32(s.sa.len)
		s.msg.Iov = &s.iov
		s.msg.Iovlen = 1
		s.msg.Control = &s.oob[0]
		s.msg.SetControllen(len(s.oob))
	}
	s.addr = net.UDPAddrFromAddrPort(s.client)
	s.rc, s.sendFn = s.l.rc, s.send
}

// to sends b to the client. sent is false when the caller must send b
// itself: s is not set up, the socket's buffer is full (net's path waits
// for room) or the socket is closed (net's path says so).
func (s *muxSender) to(b []byte) (sent bool, err error) {
	if s.l == nil {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.prepared {
		s.prepare()
	}
	if s.rc == nil {
		return false, nil
	}
	s.buf, s.sent, s.err = b, false, nil
	if err := s.rc.Control(s.sendFn); err != nil {
		return false, nil
	}
	s.buf = nil
	return s.sent, s.err
}

func (s *muxSender) send(fd uintptr) {
	var p unsafe.Pointer
	if len(s.buf) > 0 {
		p = unsafe.Pointer(&s.buf[0])
	}
	var e syscall.Errno
	for {
		// MSG_DONTWAIT: the listening socket is the caller's and may be
		// blocking (see rawReader.recvmsg); a full buffer gives EAGAIN,
		// and net's path waits.
		if s.oob == nil {
			_, _, e = unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(p), uintptr(len(s.buf)), unix.MSG_DONTWAIT, uintptr(s.sa.p), s.sa.len)
		} else {
			s.iov.Base = (*byte)(p)
			s.iov.SetLen(len(s.buf))
			_, _, e = unix.RawSyscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&s.msg)), unix.MSG_DONTWAIT)
		}
		if e != unix.EINTR {
			break
		}
	}
	s.iov.Base = nil
	switch e {
	case 0:
		s.sent = true
	case unix.EAGAIN:
	default:
		call := "sendto"
		if s.oob != nil {
			call = "sendmsg"
		}
		s.sent, s.err = true, &net.OpError{Op: "write", Net: "udp", Source: s.l.pc.LocalAddr(), Addr: s.addr, Err: os.NewSyscallError(call, e)}
	}
}
