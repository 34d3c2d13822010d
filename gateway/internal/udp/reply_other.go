//go:build !linux

package udp

import "net/netip"

// ListenReply opens a send-only session socket: on other systems, a
// session socket (see ListenSessionPort).
func ListenReply(local netip.Addr, client netip.AddrPort, port uint16) (Conn, netip.AddrPort, error) {
	return ListenSessionPort(local, client, port)
}
