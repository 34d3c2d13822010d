package fileinfo

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// ChangeID returns the file's change time (ns) and inode number.
func ChangeID(fi os.FileInfo) (ctime int64, ino uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return st.Ctim.Nano(), st.Ino, true
}

// Dev returns the device of the filesystem fi is on.
func Dev(fi os.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Dev), true // uint32 on mips
}

// LocalDevice returns the device of root's filesystem if a stat there
// shows a file's current version (see localFS), and false otherwise.
func LocalDevice(root *os.Root) (uint64, bool) {
	d, err := root.Open(".")
	if err != nil {
		return 0, false
	}
	defer d.Close()
	rc, err := d.SyscallConn()
	if err != nil {
		return 0, false
	}
	var fs unix.Statfs_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstatfs(int(fd), &fs) }); err != nil || serr != nil {
		return 0, false
	}
	if !localFS(uint32(fs.Type)) {
		return 0, false
	}
	fi, err := d.Stat()
	if err != nil {
		return 0, false
	}
	return Dev(fi)
}

// localFS reports whether a filesystem of this type (statfs's f_type)
// answers a stat with the file as it is now. Those of network
// filesystems (NFS, SMB, FUSE, which may be anything) answer from
// attributes cached for up to a minute; their clients check with the
// server when a file is opened (close-to-open consistency), so a change
// made by another host is only sure to be seen through an open.
func localFS(magic uint32) bool {
	switch magic {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC,
		unix.TMPFS_MAGIC, unix.RAMFS_MAGIC, unix.OVERLAYFS_SUPER_MAGIC,
		unix.F2FS_SUPER_MAGIC, unix.BCACHEFS_SUPER_MAGIC, unix.SQUASHFS_MAGIC,
		unix.EROFS_SUPER_MAGIC_V1, unix.ISOFS_SUPER_MAGIC, unix.EXFAT_SUPER_MAGIC,
		unix.MSDOS_SUPER_MAGIC, unix.NILFS_SUPER_MAGIC, unix.REISERFS_SUPER_MAGIC,
		0x2fc12fc1: // ZFS (OpenZFS; not in linux/magic.h)
		return true
	}
	return false
}

// RealPath returns the absolute path of the file f is open on, with no
// symbolic link in it (from /proc/self/fd).
func RealPath(f *os.File) (string, bool) {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil || !filepath.IsAbs(p) {
		return "", false
	}
	return p, true
}
