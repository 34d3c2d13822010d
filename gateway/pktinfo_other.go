//go:build !linux

package gateway

import "net/netip"

// parsePktinfo is implemented for Linux only; elsewhere replies leave from
// the listening socket's bound address.
func parsePktinfo([]byte) (netip.Addr, uint32, bool) { return netip.Addr{}, 0, false }
