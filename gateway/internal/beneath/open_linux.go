package beneath

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

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
	if d == nil {
		return nil, ErrUnsure
	}
	how := unix.OpenHow{
		Flags:   uint64(flag | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
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

// Close closes the directory.
func (d *Dir) Close() error {
	if d == nil {
		return nil
	}
	return d.f.Close()
}
