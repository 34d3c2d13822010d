package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tftpgw/tftpgw/gateway/internal/fileinfo"
)

// Content is what a [Handler] returns: the bytes of one file.
//
// Read is called from the session's goroutine only. A short read is not
// an end of file: the server reads until it has a full block or io.EOF.
// Close is called exactly once, when the session ends.
type Content interface {
	io.ReadCloser

	// Size returns the content's length in bytes, or -1 when it is not
	// known in advance; then the server omits tsize from its OACK. A
	// content that turns out shorter or longer than its size ends the
	// session with ERROR 0 "file changed while being sent" where it
	// differs: the client is never given a truncated file as complete.
	Size() int64
}

// NewContent returns a Content reading from r, with the given size (-1 if
// unknown). If r is an io.Closer its Close is called when the session ends.
func NewContent(r io.Reader, size int64) Content {
	return &readerContent{r: r, size: size}
}

type readerContent struct {
	r    io.Reader
	size int64
	base int64 // the offset in r of the first byte, if r is an io.Seeker
}

func (c *readerContent) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *readerContent) Size() int64                { return c.size }
func (c *readerContent) Close() error {
	if cl, ok := c.r.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// BytesContent returns a Content serving b. The slice must not be modified
// while a session reads it.
func BytesContent(b []byte) Content {
	return NewContent(bytes.NewReader(b), int64(len(b)))
}

// ReadSeekerContent returns a Content serving rs from its current offset to
// its end; the size is found by seeking. If rs is an io.Closer its Close is
// called when the session ends.
func ReadSeekerContent(rs io.ReadSeeker) (Content, error) {
	cur, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("gateway: seek: %w", err)
	}
	end, err := rs.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("gateway: seek: %w", err)
	}
	if _, err := rs.Seek(cur, io.SeekStart); err != nil {
		return nil, fmt.Errorf("gateway: seek: %w", err)
	}
	return &readerContent{r: rs, size: end - cur, base: cur}, nil
}

// ErrNotRegular is returned by [FileContent] for a directory or any other
// file that is not a regular file.
var ErrNotRegular = errors.New("gateway: not a regular file")

// FileContent returns a Content serving the regular file f from its
// current offset to its end, which it closes when the session ends. It
// refuses directories, devices and pipes with an error wrapping
// [ErrNotRegular]. The content is FileServer's: it has an ETag (see
// FileServer; none when f was not at its start), it is sent from the
// file's pages where FileServer's are, and a file changed under the
// transfer ends it with ERROR 0 "file changed while being sent".
func FileContent(f *os.File) (Content, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("gateway: stat: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s", ErrNotRegular, fileinfo.Kind(fi.Mode()))
	}
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("gateway: seek: %w", err)
	}
	return &fileContent{f: f, size: fi.Size() - off, version: fileETag(fi), modTime: fi.ModTime(), base: off}, nil
}

// ContentInfo describes a content's version for caching and resuming.
type ContentInfo struct {
	// ETag identifies this version of the content; empty if unknown.
	// Two contents with the same non-empty ETag have the same bytes.
	ETag string
	// MaxAge is how long the content may be cached; zero means it must
	// not be cached. Negative says the same, and also that an edge must
	// not give it a freshness of its own (package cache's DefaultMaxAge,
	// tftpgw -cache-max-age): the source said so explicitly, for content
	// that differs per client or per request. A gRPC backend says it with
	// a max_age of 0 (present, zero); the backend SDK sends a negative
	// MaxAge that way.
	MaxAge time.Duration
	// SHA256, if not all zero, is the SHA-256 digest of the whole content.
	// The backend SDK sends it in its header, and an edge reading the
	// content from a gRPC backend (package remote) hashes the bytes it
	// receives and fails the content with [ErrIntegrity] at its end if
	// they differ, before the session sends the final block. The server
	// does not hash contents of in-process handlers itself.
	SHA256 [32]byte
	// ModTime, if not zero, is when the content last changed: an HTTP
	// response's Last-Modified (see [Server.ServeHTTP]).
	ModTime time.Time
}

// InfoContent is implemented by a Content that knows its version. The
// server uses it for caching and the gRPC backend SDK sends it in its
// header, so that a resumed transfer never splices two versions.
type InfoContent interface {
	Content
	Info() ContentInfo
}

// AtHandContent is implemented by a Content that can give its next bytes
// without waiting when it has them at hand (in memory, as the edge
// cache's readers do). ReadAtHand fills all of p and reports true, or
// reads nothing and reports false; then the server calls Read. It must
// not block. It is called from the server's read loop rather than the
// session's goroutine, though never at the same time as Read or Close:
// in single-port mode the server answers a lock-step client's ACKs there
// and sends the next blocks of many sessions in one system call, without
// waking their goroutines.
type AtHandContent interface {
	Content
	ReadAtHand(p []byte) bool
}
