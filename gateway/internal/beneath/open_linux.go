package beneath

import (
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resolveCached is RESOLVE_CACHED (Linux 5.12, include/uapi/linux/openat2.h),
// which golang.org/x/sys/unix does not name.
const resolveCached = 0x20

// resolve is how every openat2 here resolves: below the directory, and
// through no symbolic link at all (which implies no /proc magic link
// either). A path with a link is left to os.Root, whose rules for links
// (at most 8 in a row, none absolute) are not the kernel's (40, and
// absolute ones refused only below a RESOLVE_BENEATH).
const resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS

// noCached is set once the kernel refused RESOLVE_CACHED (before Linux
// 5.12): Open then makes only the normal openat2, and Stat is ErrUnsure.
var noCached atomic.Bool

// Dir is a directory to open files below, open for as long as the Dir is
// used.
type Dir struct {
	f    *os.File // holds fd open
	fd   int
	name string
}

// OpenDir opens the directory of root (root.Open(".")), to open files
// below it; nil when it cannot be opened (then every Open is ErrUnsure).
// The Dir holds a descriptor of its own: closing root does not close it.
func OpenDir(root *os.Root) *Dir {
	f, err := root.Open(".")
	if err != nil {
		return nil
	}
	d := &Dir{f: f, fd: -1, name: root.Name()}
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { d.fd = int(fd) })
	}
	if d.fd < 0 {
		f.Close()
		return nil
	}
	return d
}

// Open opens name, a clean slash-separated path relative to the directory
// through no symbolic link, with flag (os.O_RDONLY and the like;
// O_CLOEXEC is added), in one openat2 that refuses to resolve anything
// outside the directory. It returns the file, an *os.PathError wrapping
// ENOENT when the kernel found no such file below the directory, or
// ErrUnsure.
//
// A name the kernel's caches know to be missing is answered by a raw
// system call that cannot wait (an O_PATH lookup: no filesystem open
// method, security hook or fanotify permission event runs for it), which
// spares the scheduler's bookkeeping and the wakeups of its monitor
// thread that a system call made after an idle spell costs: most of a
// PXELINUX client's config search. Every open that can wait (any real
// open: a fanotify permission check, FUSE, NFS) goes through the
// scheduler, so that it holds no P.
func (d *Dir) Open(name string, flag int) (*os.File, error) {
	if d == nil || !plain(name) {
		return nil, ErrUnsure
	}
	if !noCached.Load() {
		switch e := d.probe(name); e {
		case unix.ENOENT:
			return nil, notExist(name)
		case 0, unix.EAGAIN, unix.EINVAL: // found, or the caches cannot tell: open it
		default:
			return nil, ErrUnsure
		}
	}
	how := unix.OpenHow{Flags: uint64(flag | unix.O_CLOEXEC), Resolve: resolve}
	for {
		fd, err := unix.Openat2(d.fd, name, &how)
		runtime.KeepAlive(d)
		switch err {
		case nil:
			return os.NewFile(uintptr(fd), d.name+"/"+name), nil
		case unix.EINTR:
			continue
		case unix.ENOENT:
			return nil, notExist(name)
		}
		return nil, ErrUnsure
	}
}

// probe looks name up from the kernel's caches alone (RESOLVE_CACHED: no
// disk read and no remote revalidation) with an O_PATH openat2, a raw
// system call that cannot wait, and closes what it found: 0 when the
// name exists, ENOENT when the caches know it does not, EAGAIN when they
// cannot tell, EINVAL (also remembered in noCached) before Linux 5.12,
// another errno for a name os.Root must decide.
func (d *Dir) probe(name string) syscall.Errno {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return unix.EINVAL // a NUL in name (plain lets none through)
	}
	fd, e := d.lookup(p, 0)
	if e == 0 {
		unix.RawSyscall(unix.SYS_CLOSE, fd, 0, 0) // an O_PATH descriptor: nothing to flush
	}
	return e
}

// lookup is the raw O_PATH openat2 of p (with extra flags) from the
// kernel's caches alone that probe and Stat make; EINVAL, RESOLVE_CACHED
// unknown, is remembered in noCached.
func (d *Dir) lookup(p *byte, flags uint64) (uintptr, syscall.Errno) {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC | flags, Resolve: resolve | resolveCached}
	for {
		fd, _, e := unix.RawSyscall6(unix.SYS_OPENAT2, uintptr(d.fd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(&how)), unsafe.Sizeof(how), 0, 0)
		runtime.KeepAlive(d)
		if e == unix.EINTR {
			continue
		}
		if e == unix.EINVAL {
			noCached.Store(true) // no use trying again
		}
		return fd, e
	}
}

// notExist is the error os.Root gives for a missing name.
func notExist(name string) error {
	return &os.PathError{Op: "openat", Path: name, Err: syscall.ENOENT}
}

// plain reports whether name is a clean path below the directory, the
// only kind Open and Stat decide: os.Root has its own answers for an empty
// name, an absolute one, "..", and unclean forms ("a//b", "dir/").
func plain(name string) bool {
	return filepath.IsLocal(name) && path.Clean(name) == name
}

// Close closes the directory.
func (d *Dir) Close() error {
	if d == nil {
		return nil
	}
	return d.f.Close()
}

// Stat returns the facts of name below the directory, reached through no
// symbolic link, with Sys a *syscall.Stat_t: of a final symbolic link
// itself when nofollow (as os.Root's Lstat; without nofollow a final link
// is left to os.Root, as every other link is). An O_PATH openat2 from the
// kernel's caches alone finds the file (a raw system call, which cannot
// wait: see Open), fstat reads its facts through the scheduler (on FUSE
// or NFS it can ask a server), and close drops the O_PATH descriptor:
// the edge cache's revalidation of a file it holds takes no walk of
// os.Root's. Any error but a file the kernel found missing (an
// *os.PathError wrapping ENOENT) is ErrUnsure, as for Open, and so is a
// path the caches cannot resolve.
func (d *Dir) Stat(name string, nofollow bool) (os.FileInfo, error) {
	if d == nil || noCached.Load() || !plain(name) {
		return nil, ErrUnsure
	}
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return nil, ErrUnsure
	}
	var flags uint64
	if nofollow {
		flags = unix.O_NOFOLLOW
	}
	fd, e := d.lookup(p, flags)
	switch e {
	case 0:
	case unix.ENOENT:
		return nil, &os.PathError{Op: "statat", Path: name, Err: syscall.ENOENT}
	default:
		return nil, ErrUnsure
	}
	fi := &fileStat{name: path.Base(name)}
	_, _, e = unix.Syscall(unix.SYS_FSTAT, fd, uintptr(unsafe.Pointer(&fi.sys)), 0)
	unix.RawSyscall(unix.SYS_CLOSE, fd, 0, 0)
	if e != 0 {
		return nil, ErrUnsure
	}
	return fi, nil
}

// fileStat is Stat's os.FileInfo, as package os makes it from a stat.
type fileStat struct {
	name string
	sys  syscall.Stat_t
}

func (fs *fileStat) Name() string       { return fs.name }
func (fs *fileStat) Size() int64        { return fs.sys.Size }
func (fs *fileStat) ModTime() time.Time { return time.Unix(fs.sys.Mtim.Unix()) }
func (fs *fileStat) IsDir() bool        { return fs.Mode().IsDir() }
func (fs *fileStat) Sys() any           { return &fs.sys }

// Mode converts the stat's mode as package os does.
func (fs *fileStat) Mode() os.FileMode {
	m := os.FileMode(fs.sys.Mode & 0o777)
	switch fs.sys.Mode & syscall.S_IFMT {
	case syscall.S_IFBLK:
		m |= os.ModeDevice
	case syscall.S_IFCHR:
		m |= os.ModeDevice | os.ModeCharDevice
	case syscall.S_IFDIR:
		m |= os.ModeDir
	case syscall.S_IFIFO:
		m |= os.ModeNamedPipe
	case syscall.S_IFLNK:
		m |= os.ModeSymlink
	case syscall.S_IFSOCK:
		m |= os.ModeSocket
	}
	if fs.sys.Mode&syscall.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	if fs.sys.Mode&syscall.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if fs.sys.Mode&syscall.S_ISVTX != 0 {
		m |= os.ModeSticky
	}
	return m
}
