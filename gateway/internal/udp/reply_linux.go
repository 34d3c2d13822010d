package udp

import (
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// replyConn is a session socket that only sends: the ERROR that refuses a
// request whose content (or path) was refused before anything else
// happened. It is a plain blocking descriptor, never registered with the
// runtime's poller, so it costs a socket, a bind, a send and a close:
// none of the poller's registration and removal, of net's option calls
// and address lookups, or of the garbage of a net.UDPConn (a refusal is
// most of what a PXELINUX client's config search gets).
type replyConn struct {
	fd int
	sa unix.Sockaddr
}

// ListenReply opens a send-only session socket on local (port, or one the
// kernel picks when 0), with the client's address in the socket's family,
// as ListenSessionPort does. Reads fail with net.ErrClosed.
func ListenReply(local netip.Addr, client netip.AddrPort, port uint16) (Conn, netip.AddrPort, error) {
	if !fastPath {
		return ListenSessionPort(local, client, port)
	}
	local, client, v4 := sessionAddrs(local, client)
	domain := unix.AF_INET6
	var bind, to unix.Sockaddr
	if v4 {
		domain = unix.AF_INET
		bind = &unix.SockaddrInet4{Addr: local.As4(), Port: int(port)}
		to = &unix.SockaddrInet4{Addr: client.Addr().As4(), Port: int(client.Port())}
	} else {
		bind = &unix.SockaddrInet6{Addr: local.As16(), Port: int(port), ZoneId: zoneIndex(local.Zone())}
		to = &unix.SockaddrInet6{Addr: client.Addr().As16(), Port: int(client.Port()), ZoneId: zoneIndex(client.Addr().Zone())}
	}
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, client, os.NewSyscallError("socket", err)
	}
	if !v4 {
		// As net does for "udp6": the socket is IPv6 only.
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	if err := unix.Bind(fd, bind); err != nil {
		unix.Close(fd)
		return nil, client, &net.OpError{Op: "listen", Net: "udp", Addr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, port)), Err: os.NewSyscallError("bind", err)}
	}
	return &replyConn{fd: fd, sa: to}, client, nil
}

func (c *replyConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	if err := unix.Sendto(c.fd, b, 0, c.sa); err != nil {
		return 0, os.NewSyscallError("sendto", err)
	}
	return len(b), nil
}

func (c *replyConn) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed
}

func (c *replyConn) SetReadDeadline(time.Time) error { return nil }

func (c *replyConn) Close() error {
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
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
