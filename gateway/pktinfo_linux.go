package gateway

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// parsePktinfo finds the destination address and interface of a datagram
// in its control messages (IP_PKTINFO, IPV6_PKTINFO) without allocating.
func parsePktinfo(oob []byte) (dst netip.Addr, ifindex uint32, ok bool) {
	hdr := unix.SizeofCmsghdr
	for len(oob) >= hdr {
		var n, level, typ int
		if hdr == 16 { // 64-bit: Len is a uint64
			n = int(binary.NativeEndian.Uint64(oob))
			level, typ = int(int32(binary.NativeEndian.Uint32(oob[8:]))), int(int32(binary.NativeEndian.Uint32(oob[12:])))
		} else {
			n = int(binary.NativeEndian.Uint32(oob))
			level, typ = int(int32(binary.NativeEndian.Uint32(oob[4:]))), int(int32(binary.NativeEndian.Uint32(oob[8:])))
		}
		if n < hdr || n > len(oob) {
			return netip.Addr{}, 0, false
		}
		data := oob[unix.CmsgLen(0):n]
		switch {
		case level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
			return netip.AddrFrom4([4]byte(data[8:12])), binary.NativeEndian.Uint32(data), true
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			// struct in6_pktinfo { in6_addr addr; unsigned int ifindex; }
			return netip.AddrFrom16([16]byte(data[:16])).Unmap(), binary.NativeEndian.Uint32(data[16:]), true
		}
		next := unix.CmsgSpace(n - unix.CmsgLen(0))
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return netip.Addr{}, 0, false
}
