package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tftpgw/tftpgw/gateway/internal/beneath"
	"github.com/tftpgw/tftpgw/gateway/internal/fileinfo"
	"github.com/tftpgw/tftpgw/gateway/internal/session"
)

// FileServer returns a Handler that serves the regular files under root.
// The request's normalised path is opened with root, so ".." components,
// absolute paths and symbolic links cannot escape it (see os.Root).
// Directories, devices and pipes are refused with ERROR 2; missing files get
// ERROR 1 and unreadable ones ERROR 2, without the server's path in the
// message.
//
// A TFTP client has no account, so FileServer never uses root's power to
// read what its owner keeps private: when the process can read files
// whatever their permissions (it runs as root, or holds CAP_DAC_OVERRIDE
// or CAP_DAC_READ_SEARCH), it serves a file only if anyone may read it,
// as BSD's tftpd and tftpd-hpa do: the file's mode lets others read it,
// and every directory between the root and the file lets others search
// it. Anything else (a mode-000 file, a 0600 key, a file in a 0700
// directory) gets ERROR 2. A process without that power (tftpgw -user) is
// held to the kernel's own checks. Its content reports an ETag made of the file's size,
// modification time and, on Linux, its change time and inode number:
// copies that keep the modification time (cp -p, rsync -a, reproducible
// builds) and same-length edits still change the ETag, since the change
// time cannot be set and a renamed-in file is another inode.
//
// On Linux, blocks larger than 32496 bytes (too large for UDP segmentation
// to send several at once) of its files are sent straight from the file's
// pages, copied once by the kernel instead of twice. A file that shrinks,
// grows or is rewritten in place while a transfer runs (its ETag changes)
// ends it with ERROR 0 "file changed while being sent" before the final
// block, whatever the block size (see Content); one replaced by a rename
// is served whole from the file that was opened.
//
// On Linux the handler keeps a descriptor of root's directory of its own,
// to open a path through no symbolic link in one openat2 (os.Root takes
// one system call per directory): closing root does not stop it.
func FileServer(root *os.Root) Handler {
	h := fileServer{root: root, dir: beneath.OpenDir(root)}
	if real, err := filepath.EvalSymlinks(root.Name()); err == nil {
		h.realRoot, _ = filepath.Abs(real)
	}
	h.dev, h.statOK = fileinfo.LocalDevice(root)
	return h
}

type fileServer struct {
	root *os.Root
	// dir opens a path in one system call where the kernel can keep it
	// below the root (Linux); root decides what it leaves open.
	dir *beneath.Dir
	// statOK: the root is on a local filesystem, of device dev, where a
	// stat shows a file's current version (see StatContent).
	statOK bool
	dev    uint64
	// realRoot is the root's absolute path without symbolic links, where
	// the directories of a file's real path start; "" if unknown.
	realRoot string
}

// errStatUntrusted is StatContent's answer where only an open is sure to
// see the file's current version.
var errStatUntrusted = errors.New("gateway: a stat may not show this file's current version")

func (h fileServer) ServeTFTP(_ context.Context, req *Request) (Content, error) {
	// O_NONBLOCK keeps a FIFO from blocking the open; it is refused below.
	f, err := h.dir.Open(req.Path, os.O_RDONLY|syscall.O_NONBLOCK)
	if err == beneath.ErrUnsure {
		f, err = h.root.OpenFile(req.Path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		// Escapes (".." or symbolic links leaving the root), loops
		// and permission errors are all access violations.
		return nil, fmt.Errorf("%w: %w", errAccess, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("gateway: stat %q: %w", req.Path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %q is %s", ErrNotRegular, req.Path, fileinfo.Kind(fi.Mode()))
	}
	if err := h.readableByAnyone(req.Path, fi, f); err != nil {
		f.Close()
		return nil, err
	}
	return &fileContent{f: f, size: fi.Size(), version: fileETag(fi), modTime: fi.ModTime()}, nil
}

// StatContent reports the size and ETag that ServeTFTP's content for req
// would have, from one stat of the file instead of an open, a stat and a
// close: the edge cache (gateway/cache) revalidates an entry with it. An
// error says nothing about what ServeTFTP would answer, only that the
// file must be opened to know.
//
// It answers only for files on the root's own filesystem when that is a
// local one (ext4, XFS, btrfs, tmpfs, overlay, ZFS, ...), on Linux. An
// NFS client answers a stat from attributes it may have cached for up to
// a minute and asks the server when a file is opened, so a kernel
// replaced on the filer by another host would be served in its old
// version until then; SMB and FUSE are treated alike.
func (h fileServer) StatContent(_ context.Context, req *Request) (int64, ContentInfo, error) {
	if !h.statOK {
		return 0, ContentInfo{}, errStatUntrusted
	}
	// Where readableByAnyone walks the path (see it), the file's own
	// Lstat is its last step: take the file's facts from it rather than
	// resolve the path twice; a symbolic link is then opened instead.
	var fi os.FileInfo
	var err error
	if fileinfo.OverridesReadPermission() {
		fi, err = h.lstat(req.Path)
		if err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return 0, ContentInfo{}, errStatUntrusted
		}
	} else {
		fi, err = h.dir.Stat(req.Path, false)
		if err == beneath.ErrUnsure {
			fi, err = h.root.Stat(req.Path)
		}
	}
	if err != nil {
		return 0, ContentInfo{}, err
	}
	if dev, ok := fileinfo.Dev(fi); !ok || dev != h.dev {
		return 0, ContentInfo{}, errStatUntrusted // another filesystem mounted below the root
	}
	if !fi.Mode().IsRegular() {
		return 0, ContentInfo{}, fmt.Errorf("%w: %q is %s", ErrNotRegular, req.Path, fileinfo.Kind(fi.Mode()))
	}
	if err := h.readableByAnyone(req.Path, fi, nil); err != nil {
		return 0, ContentInfo{}, err
	}
	return fi.Size(), ContentInfo{ETag: fileETag(fi), ModTime: fi.ModTime()}, nil
}

// readableByAnyone refuses, with an access violation, a file that only the
// process's power to override permissions could read (see FileServer):
// one that others may not read, or below a directory (under the root)
// that others may not search. fi is the file's, f the file if it is open
// (nil from StatContent).
//
// The directories are those the file really is in: a symbolic link to a
// file in a directory closed to others must not open it. With the file
// open they come from its real path (Linux: /proc/self/fd); otherwise a
// name that goes through a symbolic link is refused as untrusted, so that
// StatContent's caller opens it.
func (h fileServer) readableByAnyone(name string, fi os.FileInfo, f *os.File) error {
	if !fileinfo.OverridesReadPermission() {
		return nil // the kernel checked
	}
	if fi.Mode().Perm()&0o004 == 0 {
		return fmt.Errorf("%w: %q (mode %v) is not readable by others, and a client is anyone", errAccess, name, fi.Mode().Perm())
	}
	if f != nil && h.realRoot != "" {
		if real, ok := fileinfo.RealPath(f); ok {
			return h.searchableDirs(name, real)
		}
	}
	for i := range len(name) + 1 {
		if i < len(name) && name[i] != '/' {
			continue
		}
		if i == len(name) && f == nil {
			break // StatContent's fi is the file's Lstat, not a link
		}
		st, err := h.lstat(name[:i])
		if err != nil {
			return fmt.Errorf("%w: %w", errAccess, err)
		}
		switch {
		case st.Mode()&os.ModeSymlink != 0 && f == nil:
			return errStatUntrusted // open it: its real directories tell
		case st.Mode()&os.ModeSymlink != 0:
			return fmt.Errorf("%w: %q goes through the symbolic link %q, whose directories cannot be checked here", errAccess, name, name[:i])
		case i < len(name) && st.Mode().Perm()&0o001 == 0:
			return fmt.Errorf("%w: directory %q (mode %v) is not searchable by others, and a client is anyone", errAccess, name[:i], st.Mode().Perm())
		}
	}
	return nil
}

// lstat is the root's Lstat, taken without os.Root's walk where the
// kernel can decide it (see beneath.Dir.Stat).
func (h fileServer) lstat(name string) (os.FileInfo, error) {
	fi, err := h.dir.Stat(name, true)
	if err == beneath.ErrUnsure {
		return h.root.Lstat(name)
	}
	return fi, err
}

// searchableDirs checks the directories between the root and real, the
// real path of the file asked for as name.
func (h fileServer) searchableDirs(name, real string) error {
	root := h.realRoot
	rel, err := filepath.Rel(root, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		// The root directory may have been renamed since it was opened
		// (a tree published by renaming directories): where it is now.
		if now, ok := h.rootRealPath(); ok && now != root {
			root = now
			rel, err = filepath.Rel(root, real)
		}
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return fmt.Errorf("%w: %q is %s, outside the root", errAccess, name, real)
		}
	}
	for i := range len(rel) {
		if rel[i] != '/' {
			continue
		}
		dir := filepath.Join(root, rel[:i])
		st, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("%w: %w", errAccess, err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%w: %q is in directory %s (mode %v), not searchable by others, and a client is anyone", errAccess, name, dir, st.Mode().Perm())
		}
	}
	return nil
}

// rootRealPath returns the root directory's real path now, from an open
// descriptor of it (Linux), which follows a rename of the directory.
func (h fileServer) rootRealPath() (string, bool) {
	d, err := h.root.Open(".")
	if err != nil {
		return "", false
	}
	defer d.Close()
	return fileinfo.RealPath(d)
}

var errAccess = &Error{Code: ErrAccessViolation, Message: "access violation"}

// fileContent is FileServer's content, and FileContent's.
type fileContent struct {
	f       *os.File
	size    int64     // the bytes to send: from the offset to the end
	version string    // the file's ETag when opened (see fileETag)
	modTime time.Time // the file's modification time when opened
	base    int64     // the offset of the content's first byte: not 0 for FileContent of a file read or seeked, which has no ETag
}

func (c *fileContent) Read(p []byte) (int, error) { return c.f.Read(p) }
func (c *fileContent) Close() error               { return c.f.Close() }
func (c *fileContent) Size() int64                { return c.size }

// Seek lets a caller resume at an offset (the gRPC backend SDK does, and
// an HTTP range request). Offsets are the content's, from its first byte.
func (c *fileContent) Seek(off int64, whence int) (int64, error) {
	if whence == io.SeekStart {
		off += c.base
	}
	n, err := c.f.Seek(off, whence)
	return n - c.base, err
}

// Info returns the file's ETag, none for a content that does not start at
// the file's start (its bytes are not the version's).
func (c *fileContent) Info() ContentInfo {
	if c.base != 0 {
		return ContentInfo{}
	}
	return ContentInfo{ETag: c.version, ModTime: c.modTime}
}

// File returns the file (the session sends large blocks from its pages).
func (c *fileContent) File() *os.File { return c.f }

// Unchanged reports, with an error wrapping session.ErrFileChanged, a file
// that is no longer the one opened: another size, modification or change
// time (a rewrite in place, even of the same length, or a chmod).
func (c *fileContent) Unchanged() error {
	fi, err := c.f.Stat()
	if err != nil {
		return fmt.Errorf("gateway: stat: %w", err)
	}
	if now := fileETag(fi); now != c.version {
		return fmt.Errorf("%w: version %s, %s when opened", session.ErrFileChanged, now, c.version)
	}
	return nil
}

// fileETag is "<size>-<mtime ns>", in hex, followed where the system tells
// them by "-<ctime ns>-<inode>" (see FileServer).
// It is built in one buffer: every request a cache revalidates makes one.
func fileETag(fi os.FileInfo) string {
	var b [4 * 17]byte
	e := strconv.AppendInt(b[:0], fi.Size(), 16)
	e = append(e, '-')
	e = strconv.AppendInt(e, fi.ModTime().UnixNano(), 16)
	if ctime, ino, ok := fileinfo.ChangeID(fi); ok {
		e = append(e, '-')
		e = strconv.AppendInt(e, ctime, 16)
		e = append(e, '-')
		e = strconv.AppendUint(e, ino, 16)
	}
	return string(e)
}
