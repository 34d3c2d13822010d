package fileinfo

import (
	"os"

	"golang.org/x/sys/unix"
)

// OverridesReadPermission reports whether the process can read any file
// whatever its permission bits: it holds CAP_DAC_OVERRIDE or
// CAP_DAC_READ_SEARCH in its effective set, as root does (unless its
// capabilities were dropped). If they cannot be learnt, root is taken to.
func OverridesReadPermission() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return os.Geteuid() == 0
	}
	const mask = 1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_DAC_READ_SEARCH
	return data[0].Effective&mask != 0
}
