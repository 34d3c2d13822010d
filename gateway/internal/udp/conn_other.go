//go:build !linux

package udp

import (
	"errors"
	"net"
	"net/netip"
)

// newSessionConn returns c with net's calls: the descriptor-level socket
// is Linux-only.
func newSessionConn(c socket, _ netip.AddrPort) Conn { return plainConn{c.(*net.UDPConn)} }

// fastPath: the raw system calls are Linux-only.
const fastPath = false

// listenSocket is Linux-only (fastPath is false elsewhere).
func listenSocket(netip.AddrPort, bool) (socket, error) {
	return nil, errors.New("udp: raw session sockets are Linux-only")
}
