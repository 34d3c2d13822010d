//go:build !linux

package udp

import (
	"net"
	"net/netip"
)

// newSessionConn returns c with net's calls: the descriptor-level socket
// is Linux-only.
func newSessionConn(c *net.UDPConn, _ netip.AddrPort) Conn { return plainConn{c} }
