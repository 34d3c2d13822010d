//go:build !linux || 386 || s390x

package gateway

import (
	"net"
	"net/netip"
)

// newFastConn returns c: the descriptor-level socket is Linux-only.
func newFastConn(c *net.UDPConn, _ netip.AddrPort) sessionConn { return c }

// udpConn returns the *net.UDPConn behind a session's socket, or nil for
// a shared one (single-port) or a test's fake.
func udpConn(c sessionConn) *net.UDPConn {
	uc, _ := c.(*net.UDPConn)
	return uc
}
