package udp

import (
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tftpgw/tftpgw/internal/wire"
)

// fileSender sends the DATA packets of a regular file straight from its
// pages: the file is mapped read-only, and each packet is one sendmsg of
// two pieces, the 4-byte header and the block in the mapping, which the
// kernel copies once into the datagram. The window path copies every block
// twice (read into the window, then into the datagram); for large blocks
// the copies are most of a transfer's CPU.
//
// Go code never reads the mapping, only the kernel does: a file truncated
// under a transfer makes the kernel refuse the pages past its new end
// (EFAULT, nothing is sent) where Go code reading them would raise
// SIGBUS, and the session ends with ERROR 0 "file changed while being
// sent". Bytes past the new end but inside its last page are mapped as
// zeros, so the final block is sent only after the file is checked to be
// the one opened (size, modification and change time), which also catches
// a rewrite in place. (The window path does the same at the content's end.)
//
// The pages of each new stretch of blocks are faulted in ahead of their
// sends (see prepare), so that a send, which then cannot wait for a disk,
// can be a raw system call.
//
// It is used for blocks too large for UDP segmentation to batch (see
// [mappedMinBlock]), on a session's own socket.
type fileSender struct {
	sock *fastConn // the session's socket
	mm   []byte    // the file, mapped; never read by Go code

	// released is where the mapping's resident pages start: the pages of
	// blocks acknowledged are dropped from the process (madvise) so that
	// its RSS does not grow with every large file it serves.
	released int64

	// One sendmsg, built once: no allocation per packet.
	hdr   [wire.HeaderSize]byte
	iov   [2]unix.Iovec
	msg   unix.Msghdr
	err   error
	write func(fd uintptr) bool // f.sendmsg, bound once

	// raw is whether sends may be raw system calls: prepare faults the
	// pages in (MADV_POPULATE_READ, Linux 5.14+).
	raw bool

	size    int64        // of the file, as opened: what is sent
	final   func() error // checks, before the final block, that the file is the one opened
	changed error        // wrapped by errors for bytes the file no longer has
}

// mappedMinBlock is the smallest block sent from the mapping: blocks
// that UDP segmentation cannot pack two to a send (see enableGSO).
// Smaller ones go out several per system call from the window, where the
// copy into the window costs less than a system call each.
const mappedMinBlock = gsoMaxBytes/2 - wire.HeaderSize + 1

// releaseBytes is how far the acknowledged part of a mapping grows before
// its pages are dropped from the process.
const releaseBytes = 4 << 20

// FileSender implements Conn: a sender of f's blocks straight from its
// pages, for blocks too large for segmentation to batch (mappedMinBlock);
// nil for smaller blocks, an empty or huge file, a file not positioned at
// its start (a handler read or seeked it: the window path reads on from
// there), or a file system that cannot map it.
func (f *fastConn) FileSender(file *os.File, size int64, blksize int, final func() error, changed error) FileSender {
	if blksize < mappedMinBlock || size <= 0 || int64(int(size)) != size {
		return nil
	}
	if pos, err := file.Seek(0, io.SeekCurrent); err != nil || pos != 0 {
		return nil
	}
	sc, err := file.SyscallConn()
	if err != nil {
		return nil
	}
	var mm []byte
	var merr error
	if err := sc.Control(func(fd uintptr) {
		mm, merr = unix.Mmap(int(fd), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	}); err != nil || merr != nil {
		return nil
	}
	s := &fileSender{sock: f, mm: mm, raw: true, size: size, final: final, changed: changed}
	s.msg.Name = (*byte)(f.sa.p) // the client's address, which f keeps
	s.msg.Namelen = uint32(f.sa.len)
	s.iov[0].Base = &s.hdr[0]
	s.iov[0].SetLen(wire.HeaderSize)
	s.msg.Iov = &s.iov[0]
	s.write = s.sendmsg
	return s
}

// putPort stores port in network byte order.
func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

// Prepare faults in the mapped pages of the bytes [off, end) with a normal
// system call, which may wait for a disk: the sends that follow find them
// mapped. An error wrapping errFileChanged means the file no longer has
// them.
func (f *fileSender) Prepare(off, end int64) error {
	if !f.raw || end <= off {
		return nil
	}
	off &^= int64(unix.Getpagesize() - 1)
	for {
		err := unix.Madvise(f.mm[off:end], unix.MADV_POPULATE_READ)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EFAULT:
			return fmt.Errorf("%w: bytes %d to %d: %w", f.changed, off, end, err)
		case unix.EINVAL: // a kernel before 5.14: sends fault the pages in
			f.raw = false
			return nil
		default:
			return fmt.Errorf("reading bytes %d to %d of the file: %w", off, end, err)
		}
	}
}

// Send sends block blk: the n bytes of the file from off. An error
// wrapping f.changed means the file no longer has them.
func (f *fileSender) Send(blk uint16, off int64, n int) error {
	if off+int64(n) == f.size && f.final != nil { // the final block: is the file still the one opened?
		if err := f.final(); err != nil {
			return err
		}
	}
	wire.AppendDataHeader(f.hdr[:0], blk)
	f.msg.Iovlen = 1
	if n > 0 {
		f.iov[1].Base = &f.mm[off]
		f.iov[1].SetLen(n)
		f.msg.Iovlen = 2
	}
	f.err = nil
	if err := f.sock.rc.Write(f.write); err != nil {
		return err
	}
	if f.err == unix.EFAULT {
		return fmt.Errorf("%w: sending %d bytes from offset %d: %w", f.changed, n, off, f.err)
	}
	return f.err
}

// sendmsg makes the system call without telling the scheduler (RawSyscall)
// once prepare has faulted the pages in: on a non-blocking socket it then
// does not wait (EAGAIN instead; a page reclaimed since prepare is the
// rare exception), but copying 64 KiB outlasts the 20 µs after which the
// runtime may hand a goroutine's processor to another thread, which then
// finds nothing to do (BENCHMARKS.md, "Fast paths").
func (f *fileSender) sendmsg(fd uintptr) bool {
	var e unix.Errno
	if f.raw {
		_, _, e = unix.RawSyscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&f.msg)), 0)
	} else {
		_, _, e = unix.Syscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&f.msg)), 0)
	}
	switch e {
	case 0:
		f.err = nil
	case unix.EAGAIN:
		return false // wait for room in the socket's buffer
	case unix.EINTR:
		return f.sendmsg(fd)
	default:
		f.err = e
	}
	return true
}

// Release drops from the process the mapped pages before off (a block
// boundary acknowledged by the client), once they add up to releaseBytes.
func (f *fileSender) Release(off int64) {
	off = min(off, int64(len(f.mm))) &^ int64(unix.Getpagesize()-1)
	if off-f.released < releaseBytes {
		return
	}
	if err := unix.Madvise(f.mm[f.released:off], unix.MADV_DONTNEED); err == nil {
		f.released = off
	}
}

// Close unmaps the file.
func (f *fileSender) Close() error {
	if f.mm == nil {
		return nil
	}
	err := unix.Munmap(f.mm)
	f.mm = nil
	if err != nil {
		return fmt.Errorf("munmap: %w", err)
	}
	return nil
}
