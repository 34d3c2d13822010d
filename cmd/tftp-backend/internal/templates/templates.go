// Package templates renders per-machine boot configurations (GRUB,
// PXELINUX, iPXE) from Go text/template files, one rendering per request.
//
// A request for path P is answered by the first of these template files,
// relative to the template directory, that exists:
//
//  1. P + ".tmpl", for example "pxelinux.cfg/default.tmpl" for
//     "pxelinux.cfg/default".
//  2. If P's base name contains a MAC address (see [ParseMAC]), the same
//     name with the MAC replaced by "{mac}", plus ".tmpl":
//     "pxelinux.cfg/01-{mac}.tmpl" for "pxelinux.cfg/01-aa-bb-cc-dd-ee-ff",
//     "grub.cfg-01-{mac}.tmpl" for "grub.cfg-01-aa-bb-cc-dd-ee-ff".
//  3. If P's base name contains a MAC address, "default.tmpl" in P's
//     directory.
//
// When none exists the request fails with fs.ErrNotExist (TFTP error 1),
// so that the next source can answer. A template that fails to parse or to
// execute fails the request with a generic error (TFTP error 0); the
// details are only logged.
//
// Templates are parsed on first use and cached; a cached template is parsed
// again when its file's modification time or size changes. Template files
// are opened through an os.Root, so neither ".." nor symbolic links reach
// outside the directory.
//
// The template's data is a [Data]. A missing key of .Options renders as an
// empty string. The output is rendered to memory first, so its size is
// known; its ETag is a hash of the output.
package templates

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
)

// Data is what a template renders.
type Data struct {
	ClientIP   string // the TFTP client's IP address, "192.0.2.7"
	ClientPort uint16 // the TFTP client's UDP port
	LocalIP    string // the address the request was sent to
	LocalPort  uint16 // the port the request arrived on
	// MAC is the MAC address in the requested file name, normalised to
	// lower-case "aa:bb:cc:dd:ee:ff"; empty if the name has none.
	MAC     string
	Path    string            // the normalised path requested
	RawPath string            // the path exactly as the client sent it
	Mode    string            // "octet" or "netascii"
	Options map[string]string // the request's options, by lower-case name
}

// Handler serves rendered templates. Make one with [New].
type Handler struct {
	root *os.Root

	mu    sync.Mutex
	cache map[string]*entry // by template file name
}

type entry struct {
	mtime time.Time
	size  int64
	tmpl  *template.Template
}

// New returns a Handler rendering the templates in dir. Close it when done.
func New(dir string) (*Handler, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	return &Handler{root: root, cache: make(map[string]*entry)}, nil
}

// Close releases the template directory.
func (h *Handler) Close() error { return h.root.Close() }

// ServeTFTP renders the template chosen for req.Path, as described in the
// package documentation.
func (h *Handler) ServeTFTP(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
	names, mac := Candidates(req.Path)
	for _, name := range names {
		t, err := h.load(name)
		if err != nil {
			if isMissing(err) {
				continue
			}
			return nil, err
		}
		data := Data{
			ClientPort: req.RemoteAddr.Port(),
			LocalPort:  req.LocalAddr.Port(),
			MAC:        mac,
			Path:       req.Path,
			RawPath:    req.RawPath,
			Mode:       req.Mode,
			Options:    make(map[string]string, len(req.Options)),
		}
		if req.RemoteAddr.Addr().IsValid() {
			data.ClientIP = req.RemoteAddr.Addr().String()
		}
		if req.LocalAddr.Addr().IsValid() {
			data.LocalIP = req.LocalAddr.Addr().String()
		}
		for _, o := range req.Options {
			data.Options[strings.ToLower(o.Name)] = o.Value
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return nil, fmt.Errorf("templates: render %s: %w", name, err)
		}
		return newContent(buf.Bytes()), nil
	}
	return nil, fmt.Errorf("templates: no template for %q: %w", req.Path, fs.ErrNotExist)
}

// isMissing reports whether a template file is absent: it does not exist,
// is not a regular file, a directory on its path is a file, or its name
// (the requested name plus ".tmpl") is too long to exist, while the
// requested name itself may still be a file of the root.
func isMissing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ENAMETOOLONG)
}

// load returns the parsed template file name, from the cache if the file
// has not changed.
func (h *Handler) load(name string) (*template.Template, error) {
	f, err := h.root.Open(name)
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("templates: stat %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("templates: %s is not a regular file: %w", name, fs.ErrNotExist)
	}
	h.mu.Lock()
	e := h.cache[name]
	h.mu.Unlock()
	if e != nil && e.mtime.Equal(fi.ModTime()) && e.size == fi.Size() {
		return e.tmpl, nil
	}
	src, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("templates: read %s: %w", name, err)
	}
	t, err := template.New(name).Option("missingkey=zero").Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("templates: parse: %w", err)
	}
	h.mu.Lock()
	h.cache[name] = &entry{mtime: fi.ModTime(), size: fi.Size(), tmpl: t}
	h.mu.Unlock()
	return t, nil
}

// Candidates returns the template file names tried for the request path p,
// in order, and the normalised MAC address found in p's base name ("" if
// none).
func Candidates(p string) (names []string, mac string) {
	dir, base := path.Split(p)
	names = []string{p + ".tmpl"}
	mac, start, end, ok := ParseMAC(base)
	if !ok {
		return names, ""
	}
	names = append(names,
		dir+base[:start]+"{mac}"+base[end:]+".tmpl",
		dir+"default.tmpl")
	return names, mac
}

// ParseMAC finds a MAC address in a file name. The name is split into
// tokens at "-", ":", "." and "_"; a MAC address is a run of exactly six
// two-hex-digit tokens joined by "-" or ":", or of seven, the first being
// the ARP hardware type, as in PXELINUX's "01-aa-bb-cc-dd-ee-ff" and GRUB's
// "grub.cfg-01-aa-bb-cc-dd-ee-ff". Longer or shorter runs are not
// addresses. It returns the first address, normalised to lower-case
// "aa:bb:cc:dd:ee:ff", and the byte range [start, end) it occupies in name.
func ParseMAC(name string) (mac string, start, end int, ok bool) {
	var run []int // offsets of the two-hex-digit tokens of the current run
	found := func() bool {
		switch len(run) {
		case 6:
			start = run[0]
		case 7:
			start = run[1]
		default:
			run = run[:0]
			return false
		}
		end = start + len("aa-bb-cc-dd-ee-ff")
		return true
	}
	for i := 0; i <= len(name); {
		j := i
		for j < len(name) && !isSep(name[j]) && name[j] != '.' && name[j] != '_' {
			j++
		}
		if j-i == 2 && isHex(name[i]) && isHex(name[i+1]) {
			run = append(run, i)
		} else if found() {
			break
		}
		if (j == len(name) || !isSep(name[j])) && found() {
			break
		}
		i = j + 1
	}
	if end == 0 {
		return "", 0, 0, false
	}
	b := []byte(strings.ToLower(name[start:end]))
	for k := 2; k < len(b); k += 3 {
		b[k] = ':'
	}
	return string(b), start, end, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isSep(c byte) bool { return c == '-' || c == ':' }

// content is a rendered template: seekable, with a known size and an ETag.
type content struct {
	*bytes.Reader
	size int64
	etag string
}

func newContent(b []byte) *content {
	sum := sha256.Sum256(b)
	return &content{Reader: bytes.NewReader(b), size: int64(len(b)), etag: hex.EncodeToString(sum[:16])}
}

func (c *content) Size() int64  { return c.size }
func (c *content) Close() error { return nil }

// Info says that a rendering is never fresh (MaxAge negative, sent as a
// max_age of 0): it is made per client, so an edge asks for every request
// whatever its own default freshness (tftpgw -cache-max-age).
func (c *content) Info() gateway.ContentInfo { return gateway.ContentInfo{ETag: c.etag, MaxAge: -1} }
