package cache

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// adviseHugePages asks the kernel to back buf, an entry's buffer not yet
// written, with transparent huge pages where the system grants them on
// request (THP "madvise", the default of Debian and Ubuntu; "always"
// needs no asking, "never" refuses). A fetch writes every byte of buf
// once, front to back, so a huge page wastes nothing; with base pages
// each 4 KiB of it costs a page fault on first write, which on a
// virtual machine with costly faults was most of what filling an entry
// cost (BENCHMARKS.md, "Filling the edge cache"). Only the part of buf
// made of whole huge pages is advised. The advice is a hint: the error
// of a kernel that refuses it is for tests. Where the host's THP defrag
// setting is "madvise" (the kernel's default), a fault in the advised
// part may first compact memory, so on a host with fragmented memory the
// fetch can wait there; the kernel falls back to 4 KiB pages when no huge
// page can be made.
func adviseHugePages(buf []byte) error {
	size := hugePageSize()
	if size <= 0 || len(buf) < 2*size {
		return nil
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	start := (p + uintptr(size) - 1) &^ (uintptr(size) - 1)
	end := (p + uintptr(len(buf))) &^ (uintptr(size) - 1)
	if end <= start {
		return nil
	}
	return unix.Madvise(buf[start-p:end-p], unix.MADV_HUGEPAGE)
}

// hugePageSize is the size of a transparent huge page, 0 if the kernel
// does not say (no THP support).
var hugePageSize = sync.OnceValue(func() int {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 || n&(n-1) != 0 {
		return 0
	}
	return n
})
