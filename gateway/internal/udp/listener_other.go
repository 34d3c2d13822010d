//go:build !linux

package udp

import (
	"net/netip"
	"syscall"
)

// rawReader: the descriptor-level read is Linux-only; elsewhere the
// listener reads with net's ReadMsgUDPAddrPort.
type rawReader struct{}

func (*rawReader) init(*Listener) {}

func (*rawReader) read(_, _ []byte, _ *zoneCache) (n, oobn int, src netip.AddrPort, ok bool, err error) {
	return 0, 0, netip.AddrPort{}, false, nil
}

func (*rawReader) holds() bool { return false }

func socketDomain(syscall.RawConn) int { return 0 }
