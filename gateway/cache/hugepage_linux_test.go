package cache

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// vmFlags returns the VmFlags of the mapping of this process that holds
// addr, from /proc/self/smaps ("hg": advised to use huge pages).
func vmFlags(t *testing.T, addr uintptr) []string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 { // a mapping's first line
			in = lo <= addr && addr < hi
			continue
		}
		if rest, ok := strings.CutPrefix(line, "VmFlags:"); ok && in {
			return strings.Fields(rest)
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return nil
}

// alignedStart is the first huge-page boundary in b.
func alignedStart(b []byte, size int) uintptr {
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return (p + uintptr(size) - 1) &^ (uintptr(size) - 1)
}

// TestAdviseHugePages: the whole huge pages of a buffer are advised to be
// backed by huge pages; buffers too small to hold two, empty ones and
// unaligned ones are taken without fault.
func TestAdviseHugePages(t *testing.T) {
	size := hugePageSize()
	if size == 0 {
		t.Skip("this kernel has no transparent huge pages")
	}
	for _, n := range []int{0, 1, 4096, size, 2*size - 1} {
		if err := adviseHugePages(make([]byte, n)); err != nil { // too small: left alone
			t.Errorf("%d bytes: %v", n, err)
		}
	}
	buf := make([]byte, 3*size+12345)
	if err := adviseHugePages(buf[1:]); err != nil { // an unaligned start
		t.Skipf("the kernel refuses the advice: %v", err)
	}
	t.Cleanup(func() {
		// Take the advice back: the heap may give this memory to the
		// buffer TestFetchAdvisesHugePages checks.
		start := alignedStart(buf[1:], size) - uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
		unix.Madvise(buf[start:start+uintptr(2*size)], unix.MADV_NOHUGEPAGE)
	})
	if flags := vmFlags(t, alignedStart(buf[1:], size)); !slices.Contains(flags, "hg") {
		t.Errorf("a buffer of %d bytes: its first whole huge page's mapping has flags %v, want hg among them", len(buf)-1, flags)
	}
}

// TestFetchAdvisesHugePages: an entry's buffer, which a fetch fills page
// by page, is advised to be backed by huge pages before it is written, so
// that filling it does not take a page fault per 4 KiB.
func TestFetchAdvisesHugePages(t *testing.T) {
	size := hugePageSize()
	if size == 0 {
		t.Skip("this kernel has no transparent huge pages")
	}
	probe := make([]byte, 2*size)
	if err := adviseHugePages(probe); err != nil {
		t.Skipf("the kernel refuses the advice: %v", err)
	}
	defer runtime.KeepAlive(probe) // its advised memory is not the entry's
	f := newFake()
	data := pattern(3*size, 9)
	f.set("initrd", file{data: data, etag: "v1", maxAge: time.Minute})
	h := newCache(t, f, 0)
	mustGet(t, h, "initrd", data)
	h.mu.Lock()
	e := h.entries["initrd"]
	h.mu.Unlock()
	if e == nil || len(e.buf) != len(data) {
		t.Fatalf("no entry of %d bytes cached", len(data))
	}
	if flags := vmFlags(t, alignedStart(e.buf, size)); !slices.Contains(flags, "hg") {
		t.Errorf("the entry's buffer: mapping flags %v, want hg among them", flags)
	}
}
