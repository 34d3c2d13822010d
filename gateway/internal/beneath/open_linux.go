package beneath

import (
	"os"
	"path"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resolveCached is RESOLVE_CACHED (Linux 5.12, include/uapi/linux/openat2.h),
// which golang.org/x/sys/unix does not name.
const resolveCached = 0x20

// noCached is set once the kernel refused RESOLVE_CACHED (before Linux
// 5.12): Open then makes only the normal openat2.
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

// Open opens name, a slash-separated path relative to the directory, with
// flag (os.O_RDONLY and the like; O_CLOEXEC is added), in one openat2
// that refuses to resolve any component outside the directory (absolute
// symbolic links included) or through /proc's magic links. It returns
// the file, an *os.PathError wrapping ENOENT when the kernel found no
// such file below the directory, or ErrUnsure.
func (d *Dir) Open(name string, flag int) (*os.File, error) {
	if d == nil || !plain(name) {
		return nil, ErrUnsure
	}
	how := unix.OpenHow{
		Flags:   uint64(flag | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	if !noCached.Load() {
		if f, err, ok := d.openCached(name, how); ok {
			return f, err
		}
	}
	for {
		fd, err := unix.Openat2(d.fd, name, &how)
		switch err {
		case nil:
			return os.NewFile(uintptr(fd), d.name+"/"+name), nil
		case unix.EINTR:
			continue
		case unix.ENOENT:
			// As os.Root reports it.
			return nil, &os.PathError{Op: "openat", Path: name, Err: syscall.ENOENT}
		}
		return nil, ErrUnsure
	}
}

// openCached is Open for a path the kernel can resolve from its caches
// alone (RESOLVE_CACHED: no disk read and no remote revalidation can be
// needed), made as a raw system call: it cannot wait, so it spares the
// scheduler's bookkeeping and the wakeups of its monitor thread that a
// system call made after an idle spell costs. ok is false when the
// caches could not decide (then Open makes the normal call).
func (d *Dir) openCached(name string, how unix.OpenHow) (f *os.File, err error, ok bool) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return nil, ErrUnsure, true // a NUL in name: os.Root refuses it
	}
	how.Resolve |= resolveCached
	for {
		fd, _, e := unix.RawSyscall6(unix.SYS_OPENAT2, uintptr(d.fd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(&how)), unsafe.Sizeof(how), 0, 0)
		switch e {
		case 0:
			return os.NewFile(fd, d.name+"/"+name), nil, true
		case unix.EINTR:
			continue
		case unix.ENOENT:
			return nil, &os.PathError{Op: "openat", Path: name, Err: syscall.ENOENT}, true
		case unix.EAGAIN:
			return nil, nil, false
		case unix.EINVAL:
			noCached.Store(true) // RESOLVE_CACHED unknown: no use trying again
			return nil, nil, false
		}
		return nil, ErrUnsure, true
	}
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

// Stat returns the facts of name below the directory, of a final
// symbolic link itself when nofollow (as os.Root's Lstat), else of what
// it points to (as its Stat), with Sys a *syscall.Stat_t. It takes three
// raw system calls that cannot wait (an openat2 with O_PATH from the
// kernel's caches alone, fstat, close): a revalidation by stat, every
// request of a file the edge cache holds, then goes through neither the
// scheduler nor os.Root's walk. Any error but a file the kernel found
// missing (an *os.PathError wrapping ENOENT) is ErrUnsure, as for Open,
// and so is a path the caches cannot resolve.
func (d *Dir) Stat(name string, nofollow bool) (os.FileInfo, error) {
	if d == nil || noCached.Load() || !plain(name) {
		return nil, ErrUnsure
	}
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return nil, ErrUnsure
	}
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS | resolveCached,
	}
	if nofollow {
		how.Flags |= unix.O_NOFOLLOW
	}
	var fd uintptr
	for {
		var e syscall.Errno
		fd, _, e = unix.RawSyscall6(unix.SYS_OPENAT2, uintptr(d.fd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(&how)), unsafe.Sizeof(how), 0, 0)
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.ENOENT:
			return nil, &os.PathError{Op: "statat", Path: name, Err: syscall.ENOENT}
		case unix.EINVAL:
			noCached.Store(true)
			return nil, ErrUnsure
		default:
			return nil, ErrUnsure
		}
		break
	}
	fi := &fileStat{name: path.Base(name)}
	_, _, e := unix.RawSyscall(unix.SYS_FSTAT, fd, uintptr(unsafe.Pointer(&fi.sys)), 0)
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
