// Package httpupstream serves files from an HTTP repository: a request for
// path P is answered with GET BASE/P.
//
// The content's size is the response's Content-Length (unknown if absent),
// its ETag the response's strong ETag header, or its Last-Modified header
// when there is no ETag and the response's Date shows it is strong (none
// for a weak validator: the edge then does not resume the content or
// reuse cached bytes by ETag), and its max age the max-age of
// Cache-Control (zero with no-store or no-cache). HTTP 404 and 410 become TFTP error 1, 401 and 403
// TFTP error 2, and any other failure TFTP error 0.
//
// The content implements io.Seeker, which the backend SDK uses to resume a
// transfer at an offset: seeking closes the current response and issues
// GET with "Range: bytes=OFFSET-" and "If-Range" set to the ETag (or
// Last-Modified date). When the response shows a different version, Seek
// fails with an error wrapping backend.ErrETagMismatch (FAILED_PRECONDITION
// to the edge). A server that ignores Range is read from the start and the
// bytes before the offset are discarded.
package httpupstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tftpgw/tftpgw/backend"
	"github.com/tftpgw/tftpgw/gateway"
)

// Handler serves the files under Base. Make one with [New].
type Handler struct {
	base   *url.URL
	client *http.Client
}

// New returns a Handler fetching from the repository at base (an http or
// https URL) with client, or http.DefaultClient if client is nil.
func New(base string, client *http.Client) (*Handler, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("httpupstream: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("httpupstream: %q is not an http or https URL", base)
	}
	if client == nil {
		client = http.DefaultClient
	}
	return &Handler{base: u, client: client}, nil
}

// ServeTFTP fetches req.Path. The content's reads and seeks use ctx, so
// cancelling it stops the download.
func (h *Handler) ServeTFTP(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
	// The path is a file name, not a URL path: every element is escaped,
	// so "%2e%2e" or "%2f" reach the upstream as the literal characters
	// and cannot climb out of the base there, and a "%" never drops the
	// path.
	var elems []string
	for elem := range strings.SplitSeq(req.Path, "/") {
		if elem == ".." {
			return nil, fmt.Errorf("httpupstream: %q: %w", req.Path, fs.ErrPermission)
		}
		elems = append(elems, url.PathEscape(elem))
	}
	c := &content{ctx: ctx, client: h.client, url: h.base.JoinPath(elems...).String()}
	resp, err := c.get(0, "")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, statusError(c.url, resp.StatusCode)
	}
	c.body = resp.Body
	c.size = resp.ContentLength // -1 if unknown
	c.etag = validator(resp.Header)
	c.id = identity(resp.Header)
	c.maxAge = maxAge(resp.Header.Get("Cache-Control"))
	return c, nil
}

type content struct {
	ctx    context.Context
	client *http.Client
	url    string

	// mu guards body and closed: the SDK may call Close while a Read or
	// Seek is in progress, when the call is cancelled.
	mu     sync.Mutex
	body   io.ReadCloser
	closed bool

	pos    int64 // used by Read and Seek only, which are never concurrent
	size   int64
	etag   string // the response's validator, for If-Range and comparisons
	id     string // the ETag the edge gets (identity)
	maxAge time.Duration
}

func (c *content) Read(p []byte) (int, error) {
	c.mu.Lock()
	body := c.body
	c.mu.Unlock()
	n, err := body.Read(p)
	c.pos += int64(n)
	return n, err
}

func (c *content) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return c.body.Close()
}

// setBody replaces the response being read, closing the old one.
func (c *content) setBody(b io.ReadCloser) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		b.Close()
		return fmt.Errorf("httpupstream: %w", os.ErrClosed)
	}
	c.body.Close()
	c.body = b
	return nil
}

func (c *content) Size() int64 { return c.size }

func (c *content) Info() gateway.ContentInfo {
	return gateway.ContentInfo{ETag: c.id, MaxAge: c.maxAge}
}

// Seek restarts the download at the new offset with a Range request.
func (c *content) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += c.pos
	case io.SeekEnd:
		if c.size < 0 {
			return 0, errors.New("httpupstream: seek from the end of content of unknown size")
		}
		offset += c.size
	default:
		return 0, errors.New("httpupstream: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("httpupstream: negative offset")
	}
	if offset == c.pos {
		return offset, nil
	}
	if err := c.setBody(http.NoBody); err != nil {
		return 0, err
	}
	if c.size >= 0 && offset >= c.size {
		c.pos = offset
		return offset, nil
	}
	ifRange := c.etag
	if strings.HasPrefix(ifRange, "W/") {
		ifRange = "" // If-Range needs a strong validator; compared below instead
	}
	resp, err := c.get(offset, ifRange)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && c.size >= 0 && offset < c.size {
		// Not past the end of the version read first: the file got
		// shorter, a new version (a weak validator sends no If-Range).
		resp.Body.Close()
		return 0, fmt.Errorf("httpupstream: %s: %w: range at %d not satisfiable", c.url, backend.ErrETagMismatch, offset)
	}
	if v := validator(resp.Header); v != c.etag && resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		resp.Body.Close()
		return 0, fmt.Errorf("httpupstream: %s: %w: was %q, is %q", c.url, backend.ErrETagMismatch, c.etag, v)
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if first, ok := rangeStart(resp.Header.Get("Content-Range")); !ok || first != offset {
			resp.Body.Close()
			return 0, fmt.Errorf("httpupstream: %s: unexpected Content-Range %q for offset %d", c.url, resp.Header.Get("Content-Range"), offset)
		}
		if err := c.setBody(resp.Body); err != nil {
			return 0, err
		}
	case http.StatusOK: // Range ignored: skip to the offset
		if err := c.setBody(resp.Body); err != nil {
			return 0, err
		}
		if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil && err != io.EOF {
			return 0, fmt.Errorf("httpupstream: %s: skip to %d: %w", c.url, offset, err)
		}
	case http.StatusRequestedRangeNotSatisfiable: // at or past the end
		resp.Body.Close()
	case http.StatusPreconditionFailed:
		resp.Body.Close()
		return 0, fmt.Errorf("httpupstream: %s: %w", c.url, backend.ErrETagMismatch)
	default:
		resp.Body.Close()
		return 0, statusError(c.url, resp.StatusCode)
	}
	c.pos = offset
	return offset, nil
}

// get issues GET for the content's URL, from offset if it is not zero.
func (c *content) get(offset int64, ifRange string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(c.ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, fmt.Errorf("httpupstream: %w", err)
	}
	// Without this the transport may decompress, and lengths and ranges
	// would no longer describe the bytes read.
	req.Header.Set("Accept-Encoding", "identity")
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
		if ifRange != "" {
			req.Header.Set("If-Range", ifRange)
		}
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("httpupstream: %w", err)
	}
	return resp, nil
}

// statusError maps an HTTP error status to an error that gateway.ErrorFor
// turns into the right TFTP error.
func statusError(u string, code int) error {
	switch code {
	case http.StatusNotFound, http.StatusGone:
		return fmt.Errorf("httpupstream: GET %s: %d: %w", u, code, fs.ErrNotExist)
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("httpupstream: GET %s: %d: %w", u, code, fs.ErrPermission)
	default:
		return fmt.Errorf("httpupstream: GET %s: unexpected status %d", u, code)
	}
}

// validator returns the ETag header, or the Last-Modified header if there
// is no ETag.
func validator(h http.Header) string {
	if v := h.Get("ETag"); v != "" {
		return v
	}
	return h.Get("Last-Modified")
}

// identity is the content's ETag for the edge, where the same ETag means
// the same bytes: a strong ETag, or a Last-Modified date that the
// response's Date shows to be strong (RFC 9110 section 8.8.2.2: at least a
// second older, so a later change would carry a later date). A weak ETag
// or a Last-Modified that may hide a change within its second gives "":
// the edge then neither reuses cached bytes by ETag nor resumes the
// content, rather than risk serving or splicing two versions.
func identity(h http.Header) string {
	if v := h.Get("ETag"); v != "" {
		if strings.HasPrefix(v, "W/") {
			return ""
		}
		return v
	}
	lm, err := http.ParseTime(h.Get("Last-Modified"))
	if err != nil {
		return ""
	}
	if date, err := http.ParseTime(h.Get("Date")); err != nil || date.Sub(lm) < time.Second {
		return ""
	}
	return h.Get("Last-Modified")
}

// maxAge returns the max-age of a Cache-Control header, or zero.
func maxAge(cc string) time.Duration {
	var age time.Duration
	for d := range strings.SplitSeq(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return 0
		case strings.HasPrefix(d, "max-age="):
			if n, err := strconv.ParseInt(d[len("max-age="):], 10, 64); err == nil && n > 0 && n < 1<<32 {
				age = time.Duration(n) * time.Second
			}
		}
	}
	return age
}

// rangeStart returns the first byte position of a Content-Range header
// "bytes FIRST-LAST/SIZE".
func rangeStart(cr string) (int64, bool) {
	rest, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return 0, false
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(first, 10, 64)
	return n, err == nil
}
