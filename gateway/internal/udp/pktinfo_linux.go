package udp

import (
	"encoding/binary"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// parseControl reads a datagram's control messages without allocating:
// its destination address and interface (IP_PKTINFO, IPV6_PKTINFO) and
// when it reached the socket (SCM_TIMESTAMPNS).
func parseControl(oob []byte) (c control) {
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
			return c
		}
		data := oob[unix.CmsgLen(0):n]
		switch {
		case level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
			c.dst, c.ifindex = netip.AddrFrom4([4]byte(data[8:12])), binary.NativeEndian.Uint32(data)
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			// struct in6_pktinfo { in6_addr addr; unsigned int ifindex; }
			c.dst, c.ifindex = netip.AddrFrom16([16]byte(data[:16])).Unmap(), binary.NativeEndian.Uint32(data[16:])
		case hdr == 16 && level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS && len(data) >= 16:
			// struct timespec { time_t tv_sec; long tv_nsec; } on 64-bit systems
			c.at = time.Unix(int64(binary.NativeEndian.Uint64(data)), int64(binary.NativeEndian.Uint64(data[8:])))
		}
		next := unix.CmsgSpace(n - unix.CmsgLen(0))
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return c
}
