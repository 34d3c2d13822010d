package fileinfo

import (
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// OverridesReadPermission reports whether the process can read any file
// whatever its permission bits: it holds CAP_DAC_OVERRIDE or
// CAP_DAC_READ_SEARCH in its effective set, as root does (unless its
// capabilities were dropped). If they cannot be learnt, root is taken to.
//
// The answer is kept for a second (permCacheFor): a file server asks for
// every request, and a capget per request showed in profiles. The process
// only ever loses the capability (tftpgw -user drops it once, at start),
// and an answer kept from before that only makes the file server check
// more than the kernel then does, for that second.
func OverridesReadPermission() bool {
	now := time.Now().UnixNano()
	if now < permUntil.Load() {
		return permValue.Load()
	}
	v := overridesReadPermission()
	permValue.Store(v)
	permUntil.Store(now + int64(permCacheFor))
	return v
}

// permCacheFor is how long OverridesReadPermission keeps its answer.
const permCacheFor = time.Second

var (
	permValue atomic.Bool
	permUntil atomic.Int64 // unix nanoseconds
)

func overridesReadPermission() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return os.Geteuid() == 0
	}
	const mask = 1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_DAC_READ_SEARCH
	return data[0].Effective&mask != 0
}
