// Package udp is tftpgw's transport: the listening socket (destination
// addresses with IP_PKTINFO and IPV6_PKTINFO, kernel receive timestamps,
// interface broadcasts), the sessions' own sockets, single-port
// demultiplexing through the listening socket, and the Linux fast paths
// under them: raw system calls on non-blocking sockets, UDP segmentation
// offload and blocks sent straight from a file's pages.
//
// Every session connection has the one method set of [Conn]; a
// capability a transport lacks is a no-op there, so that the session
// engine holds no type assertion. Platform files come in one pair:
// *_linux.go (the fast paths; on 386 and s390x, whose older kernels lack
// the direct socket system calls, they fall back to net's calls at run
// time) and *_other.go.
package udp

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// Conn is a session's connection to its client: its own socket (see
// ListenSession and ListenSessionPort), or the listening socket in single-port mode (MuxConn).
type Conn interface {
	// ReadFromUDPAddrPort, WriteToUDPAddrPort, SetReadDeadline and Close
	// are net.UDPConn's.
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error)
	SetReadDeadline(t time.Time) error
	Close() error

	// SendBeforeRead holds b, a datagram for the client that must stay
	// unchanged until the next read or write, for that call to send
	// first: a read then does not look at a queue that cannot hold the
	// answer yet (one system call less per block in lock-step). It
	// reports false when the transport cannot: the caller sends b.
	SendBeforeRead(b []byte) bool
	// TakeSendErr returns, and forgets, the error of the last held send.
	TakeSendErr() error

	// ReadQueued takes a datagram already waiting, without waiting,
	// past the read deadline too (net's reads report the deadline
	// first). ok is false when there is none.
	ReadQueued(b []byte) (n int, from netip.AddrPort, ok bool)

	// EnableGSO asks the kernel to cut sends into datagrams of size
	// bytes (UDP segmentation offload) and returns how many one send may
	// carry: 0 when segmentation is unavailable or pointless. DisableGSO
	// turns it off again.
	EnableGSO(size int) int
	DisableGSO()

	// FileSender returns a sender of the blocks of f, a regular file of
	// size bytes positioned at its start, straight from its pages, or nil
	// when the transport cannot (then the caller reads the blocks).
	// final is called before the final block is sent and its error stops
	// the send; a block the file no longer has is an error wrapping
	// changed.
	FileSender(f *os.File, size int64, blksize int, final func() error, changed error) FileSender

	// Offload lets r answer the client's datagrams on the transport's own
	// goroutine, without waking the session's read, until r declines one
	// (the read then returns it) or the read returns for another reason
	// (its deadline, Close). Meanwhile the session's state is r's: the
	// session calls Offload just before a read, and gets its state back
	// when the read returns. It reports false when the transport cannot
	// (then nothing changes).
	Offload(r Responder) bool
}

// Responder answers a session's datagrams for it, on the transport's
// goroutine (see Conn.Offload).
type Responder interface {
	// Respond answers pkt, a datagram from the client: it returns the
	// reply to send (the transport copies it before Respond is called
	// again) and the session's read deadline from now on, or ok false,
	// having changed nothing, when the session must take pkt itself.
	Respond(pkt []byte) (reply []byte, deadline time.Time, ok bool)
}

// FileSender sends the DATA packets of a file straight from its pages.
type FileSender interface {
	// Prepare reads the pages of the bytes [off, end) in, with a system
	// call that may wait for a disk, so that the sends of those blocks
	// do not.
	Prepare(off, end int64) error
	// Send sends block blk: the n bytes of the file from off.
	Send(blk uint16, off int64, n int) error
	// Release drops the pages before off (acknowledged) from the process.
	Release(off int64)
	// Close unmaps the file.
	Close() error
}

// ListenSession opens a session's socket on the address the request was
// sent to, so that replies come from it (RFC 1350 section 4), with a port
// the kernel picks, and returns it with the client's address in the
// socket's family.
func ListenSession(local netip.Addr, client netip.AddrPort) (Conn, netip.AddrPort, error) {
	return ListenSessionPort(local, client, 0)
}

// ListenSessionPort is ListenSession on the given port (one of a server's
// port range, see PortPool); 0 lets the kernel pick. When another socket
// holds that port on the address, the error satisfies AddrInUse.
func ListenSessionPort(local netip.Addr, client netip.AddrPort, port uint16) (Conn, netip.AddrPort, error) {
	local, client, v4 := sessionAddrs(local, client)
	var c socket
	var err error
	if fastPath {
		c, err = listenSocket(netip.AddrPortFrom(local, port), v4)
	} else {
		network := "udp6"
		if v4 {
			network = "udp4"
		}
		c, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, port)))
	}
	if err != nil {
		if port != 0 {
			return nil, client, fmt.Errorf("session socket on %s: %w", netip.AddrPortFrom(local, port), err)
		}
		return nil, client, fmt.Errorf("session socket on %s: %w", local, err)
	}
	return newSessionConn(c, client), client, nil
}

// socket is what a session's connection needs of the socket it wraps:
// *os.File (a socket opened by listenSocket) and *net.UDPConn both are
// one.
type socket interface {
	SetReadDeadline(t time.Time) error
	Close() error
	SyscallConn() (syscall.RawConn, error)
}

// sessionAddrs returns the local address a session's socket binds and the
// client's address in that socket's family: IPv4 (v4) for an IPv4 client,
// also one that reached a dual-stack socket as an IPv4-mapped address.
func sessionAddrs(local netip.Addr, client netip.AddrPort) (netip.Addr, netip.AddrPort, bool) {
	if client.Addr().Is4In6() || client.Addr().Is4() {
		client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
		if local.Is4In6() {
			local = local.Unmap()
		}
		if !local.Is4() {
			local = netip.IPv4Unspecified()
		}
		return local, client, true
	}
	if !local.Is6() || local.Is4In6() {
		local = netip.IPv6Unspecified()
	}
	return local, client, false
}

// plainConn is a session's own socket through net's calls, where the fast
// path is not available.
type plainConn struct{ *net.UDPConn }

func (plainConn) SendBeforeRead([]byte) bool                                      { return false }
func (plainConn) TakeSendErr() error                                              { return nil }
func (plainConn) ReadQueued([]byte) (int, netip.AddrPort, bool)                   { return 0, netip.AddrPort{}, false }
func (c plainConn) EnableGSO(size int) int                                        { return enableGSO(c.UDPConn, size) }
func (c plainConn) DisableGSO()                                                   { disableGSO(c.UDPConn) }
func (plainConn) FileSender(*os.File, int64, int, func() error, error) FileSender { return nil }
func (plainConn) Offload(Responder) bool                                          { return false }

// ClosedConn stands in for a session socket that could not be opened:
// reads and writes fail with net.ErrClosed.
type ClosedConn struct{}

func (ClosedConn) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed
}
func (ClosedConn) WriteToUDPAddrPort([]byte, netip.AddrPort) (int, error) { return 0, net.ErrClosed }
func (ClosedConn) SetReadDeadline(time.Time) error                        { return nil }
func (ClosedConn) Close() error                                           { return nil }
func (ClosedConn) SendBeforeRead([]byte) bool                             { return false }
func (ClosedConn) TakeSendErr() error                                     { return nil }
func (ClosedConn) ReadQueued([]byte) (int, netip.AddrPort, bool)          { return 0, netip.AddrPort{}, false }
func (ClosedConn) EnableGSO(int) int                                      { return 0 }
func (ClosedConn) DisableGSO()                                            {}
func (ClosedConn) FileSender(*os.File, int64, int, func() error, error) FileSender {
	return nil
}
func (ClosedConn) Offload(Responder) bool { return false }
