package gateway

import (
	"os"
	"syscall"
)

// changeID returns the file's change time (ns) and inode number.
func changeID(fi os.FileInfo) (ctime int64, ino uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return st.Ctim.Nano(), st.Ino, true
}
