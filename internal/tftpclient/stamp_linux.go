package tftpclient

import (
	"net"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// setStamps turns kernel receive timestamps (SO_TIMESTAMPNS) on or off for
// c and reports whether the kernel took the setting.
func setStamps(c *net.UDPConn, on bool) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	v := 0
	if on {
		v = 1
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, v)
	}); err != nil || serr != nil {
		return false
	}
	return true
}

// stampSpace is the control-message room one timestamp needs.
var stampSpace = unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{})))

// parseStamp returns the SCM_TIMESTAMPNS time in oob, if any. It allocates
// nothing.
func parseStamp(oob []byte) (time.Time, bool) {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if h.Len < unix.SizeofCmsghdr || int(h.Len) > len(oob) {
			return time.Time{}, false
		}
		data := oob[unix.CmsgLen(0):h.Len]
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && len(data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&data[0]))
			return time.Unix(ts.Unix()), true
		}
		n := unix.CmsgSpace(int(h.Len) - unix.CmsgLen(0))
		if n > len(oob) {
			break
		}
		oob = oob[n:]
	}
	return time.Time{}, false
}
