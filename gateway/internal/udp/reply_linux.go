package udp

import (
	"net"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// replyConn is a session socket that only sends: the ERROR that refuses a
// request whose content (or path) was refused before anything else
// happened. It is never registered with the runtime's poller, and its
// system calls are raw (none can block: the socket is non-blocking, and
// its one datagram finds its send buffer empty), so it costs a socket, a
// bind, a send and a close: none of the poller's registration and
// removal, of net's option calls and address lookups, of the garbage of a
// net.UDPConn, or of the scheduler's bookkeeping (a refusal is most of
// what a PXELINUX client's config search gets).
type replyConn struct {
	fd int
	sa sockaddr // the client's
}

// ListenReply opens a send-only session socket on local (port, or one the
// kernel picks when 0), with the client's address in the socket's family,
// as ListenSessionPort does. Reads fail with net.ErrClosed.
func ListenReply(local netip.Addr, client netip.AddrPort, port uint16) (Conn, netip.AddrPort, error) {
	if !fastPath {
		return ListenSessionPort(local, client, port)
	}
	local, client, v4 := sessionAddrs(local, client)
	fd, err := openSocket(netip.AddrPortFrom(local, port), v4)
	if err != nil {
		return nil, client, err
	}
	c := &replyConn{fd: fd}
	c.sa.set(client, v4)
	return c, client, nil
}

func (c *replyConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	if c.fd < 0 {
		return 0, net.ErrClosed
	}
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	for {
		_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(c.fd), uintptr(p), uintptr(len(b)), unix.MSG_DONTWAIT, uintptr(c.sa.p), c.sa.len)
		switch e {
		case 0:
			return len(b), nil
		case unix.EINTR:
			continue
		}
		return 0, os.NewSyscallError("sendto", e)
	}
}

func (c *replyConn) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed
}

func (c *replyConn) SetReadDeadline(time.Time) error { return nil }

func (c *replyConn) Close() error {
	if c.fd < 0 {
		return nil
	}
	_, _, e := unix.RawSyscall(unix.SYS_CLOSE, uintptr(c.fd), 0, 0)
	c.fd = -1
	if e != 0 {
		return os.NewSyscallError("close", e)
	}
	return nil
}

// The capabilities of Conn, absent.
func (c *replyConn) SendBeforeRead([]byte) bool { return false }
func (c *replyConn) TakeSendErr() error         { return nil }
func (c *replyConn) ReadQueued([]byte) (int, netip.AddrPort, bool) {
	return 0, netip.AddrPort{}, false
}
func (c *replyConn) EnableGSO(int) int { return 0 }
func (c *replyConn) DisableGSO()       {}
func (c *replyConn) FileSender(*os.File, int64, int, func() error, error) FileSender {
	return nil
}
func (c *replyConn) Offload(Responder) bool { return false }
