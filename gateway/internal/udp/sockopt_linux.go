package udp

import (
	"net"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/tftpgw/tftpgw/internal/wire"
)

// gsoMaxBytes bounds one segmented send: the kernel builds it as a single
// UDP datagram before cutting it, so it must fit in 64 KiB.
const (
	gsoMaxBytes = 65000
	gsoMaxSegs  = 64 // UDP_MAX_SEGMENTS on older kernels
)

// enableGSO asks the kernel to cut sends on c into datagrams of size bytes
// (UDP_SEGMENT, Linux 4.18+) and returns how many datagrams one send may
// carry: 0 when segmentation is unavailable or pointless.
//
// Every send on c longer than size is cut, so size must exceed the OACK
// and ERROR packets the session sends: small blocks get no segmentation.
func enableGSO(c socket, size int) int {
	segs := min(gsoMaxBytes/size, gsoMaxSegs)
	if segs < 2 || size < wire.HeaderSize+wire.DefaultBlockSize {
		return 0
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, size)
	}); err != nil || serr != nil {
		return 0
	}
	return segs
}

// disableGSO turns segmentation off on c again. A socket with UDP_SEGMENT
// set sends no datagram larger than the path MTU at all, segmented or
// not (the kernel does not fragment them): after a segmented send is
// refused, the datagrams must go one by one without it.
func disableGSO(c socket) {
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, 0)
		})
	}
}

// listenerRecvBuffer is the receive buffer asked for the listening socket:
// a burst of thousands of RRQs (a rack powering on) must not overflow the
// kernel's default of about 200 KiB (some 300 datagrams).
const listenerRecvBuffer = 8 << 20

// growRecvBuffer enlarges c's receive buffer, beyond net.core.rmem_max
// when the process may (SO_RCVBUFFORCE needs CAP_NET_ADMIN).
func growRecvBuffer(c *net.UDPConn, n int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) })
	if serr != nil {
		c.SetReadBuffer(n) // capped by net.core.rmem_max
	}
}

// enableRecvStamps asks the kernel to stamp every datagram on c with the
// time it reached the socket (SO_TIMESTAMPNS), so that a session's times
// start when its request arrived, not when the listener got to it.
func enableRecvStamps(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) })
}

// fastPath is whether the raw system calls of the fast paths are used:
// not on 386 and s390x, whose kernels before 4.3 reach sockets only
// through socketcall (no direct sendmsg, recvfrom or sendto), where net's
// calls serve instead.
const fastPath = runtime.GOARCH != "386" && runtime.GOARCH != "s390x"
