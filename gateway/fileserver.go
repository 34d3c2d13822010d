package gateway

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// FileServer returns a Handler that serves the regular files under root.
// The request's normalised path is opened with root, so ".." components,
// absolute paths and symbolic links cannot escape it (see os.Root).
// Directories, devices and pipes are refused with ERROR 2; missing files get
// ERROR 1 and unreadable ones ERROR 2, without the server's path in the
// message. Its content reports an ETag made of size and modification time.
func FileServer(root *os.Root) Handler {
	return HandlerFunc(func(ctx context.Context, req *Request) (Content, error) {
		// O_NONBLOCK keeps a FIFO from blocking the open; it is refused below.
		f, err := root.OpenFile(req.Path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
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
			return nil, fmt.Errorf("%w: %q is %s", ErrNotRegular, req.Path, fi.Mode().Type())
		}
		return &fileContent{f: f, size: fi.Size(), mtime: fi.ModTime()}, nil
	})
}

var errAccess = &Error{Code: ErrAccessViolation, Message: "access violation"}

type fileContent struct {
	f     *os.File
	size  int64
	mtime time.Time
}

func (c *fileContent) Read(p []byte) (int, error) { return c.f.Read(p) }
func (c *fileContent) Close() error               { return c.f.Close() }
func (c *fileContent) Size() int64                { return c.size }

// Seek lets a caller resume at an offset (the gRPC backend SDK does).
func (c *fileContent) Seek(off int64, whence int) (int64, error) { return c.f.Seek(off, whence) }

func (c *fileContent) Info() ContentInfo {
	return ContentInfo{ETag: fmt.Sprintf("%x-%x", c.size, c.mtime.UnixNano())}
}
