//go:build !linux || 386 || s390x

package gateway

import "net/netip"

// muxSender: the descriptor-level send is Linux-only; elsewhere a
// single-port session sends through net's path.
type muxSender struct{}

func (*muxSender) init(*listener, netip.AddrPort, []byte) {}

func (*muxSender) to([]byte) (bool, error) { return false, nil }
