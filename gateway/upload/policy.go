package upload

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/internal/placeholder"
)

// Policy says which uploads a write handler receives, how large they may
// be and where they are stored (see the package documentation). Check it
// with [Policy.Validate], then put it in front of a handler with
// [Policy.Wrap].
type Policy struct {
	// Allow are the patterns of the paths that may be uploaded, matched
	// against the whole normalised path as the client asked for it
	// (before Path places it), with the syntax of
	// github.com/bmatcuk/doublestar/v4: * and ? within one path element,
	// ** across elements ("**" allows every path, "boot/**" every path
	// under boot/), [a-z] classes, {a,b} alternatives, \ to escape. A path
	// that matches none is refused with [gateway.ErrUploadRefused]: with
	// no pattern, every upload is.
	Allow []string

	// MaxSize is the largest upload, in bytes; 0 means no limit. A larger
	// one is refused with [gateway.ErrUploadTooLarge]: before the next
	// handler is called if its tsize option declares it, otherwise by the
	// Write that would pass the limit.
	MaxSize int64

	// Path is where an upload is stored, "{path}" if empty: text with the
	// placeholders
	//
	//   - {path}: the normalised path the client asked for;
	//   - {client_ip}: the client's address: IPv4 in dotted decimal (also
	//     when it arrived IPv4-mapped, ::ffff:192.0.2.1), IPv6 in its RFC
	//     5952 form (2001:db8::1, a valid file name on Linux), never with
	//     a zone;
	//   - {client_ip_hex}: the same address as upper-case hexadecimal
	//     digits, 8 for IPv4 (192.0.2.1 is C0000201) and 32 for IPv6, as
	//     tftp-hpa's \x;
	//
	// and {{ and }} for literal braces: the placeholders of package
	// rewrite, plus {path}. "{client_ip}/{path}" keeps each client's
	// uploads in a directory of its own. The result is cleaned with
	// [gateway.CleanPath]; one that climbs out of the root is refused
	// with [gateway.ErrUploadRefused]. Values are copied as they are, never
	// read again: a client that uploads "{client_ip}" gets a file of that
	// name.
	Path string
}

// Validate reports every problem of p, each naming its field: a pattern
// of Allow that is not valid doublestar syntax, a negative MaxSize, and a
// Path with an unknown placeholder, a stray brace, or one that climbs out
// of the root for a one-element path.
func (p *Policy) Validate() error {
	var errs []error
	for i, pat := range p.Allow {
		if !doublestar.ValidatePattern(pat) {
			errs = append(errs, fmt.Errorf("upload: Allow[%d] %q: bad pattern", i, pat))
		}
	}
	if p.MaxSize < 0 {
		errs = append(errs, fmt.Errorf("upload: MaxSize %d: must be 0 (no limit) or more", p.MaxSize))
	}
	if _, err := parseTemplate(p.Path); err != nil {
		errs = append(errs, fmt.Errorf("upload: Path %q: %w", p.Path, err))
	}
	return errors.Join(errs...)
}

// Wrap returns a write handler that applies p to each upload before
// passing it to next. Wrap copies p: changing p later changes nothing.
// A Policy that Validate refuses makes a handler that refuses every upload
// with [gateway.ErrUploadRefused] (its error, for the server's log, says
// why).
func (p *Policy) Wrap(next gateway.WriteHandler) gateway.WriteHandler {
	h := &policyHandler{next: next, allow: slices.Clone(p.Allow), max: p.MaxSize}
	if h.err = p.Validate(); h.err == nil {
		h.path, _ = parseTemplate(p.Path)
	}
	return h
}

type policyHandler struct {
	next  gateway.WriteHandler
	allow []string
	max   int64
	path  template
	err   error // from Validate: refuse everything
}

func (h *policyHandler) ReceiveTFTP(ctx context.Context, req *gateway.Request) (gateway.Upload, error) {
	if h.err != nil {
		return nil, fmt.Errorf("upload: invalid policy: %w: %w", h.err, gateway.ErrUploadRefused)
	}
	name, err := gateway.CleanPath(req.Path)
	if err != nil {
		return nil, fmt.Errorf("upload: %q: %w: %w", req.Path, err, gateway.ErrUploadRefused)
	}
	if !h.allowed(name) {
		return nil, fmt.Errorf("upload: %q matches no allowed pattern: %w", name, gateway.ErrUploadRefused)
	}
	if h.max > 0 {
		if size, ok := declaredSize(req); ok && size > h.max {
			return nil, fmt.Errorf("upload: %q declares %d bytes, over %d: %w", name, size, h.max, gateway.ErrUploadTooLarge)
		}
	}
	placed, err := h.path.expand(name, req.RemoteAddr.Addr())
	if err == nil {
		placed, err = cleanPath(placed)
	}
	if err != nil {
		return nil, fmt.Errorf("upload: placing %q: %w: %w", name, err, gateway.ErrUploadRefused)
	}
	req.Path = placed
	u, err := h.next.ReceiveTFTP(ctx, req)
	if err != nil || u == nil || h.max <= 0 {
		return u, err
	}
	return &limitedUpload{Upload: u, left: h.max}, nil
}

func (h *policyHandler) allowed(name string) bool {
	for _, pat := range h.allow {
		if doublestar.MatchUnvalidated(pat, name) {
			return true
		}
	}
	return false
}

// cleanPath is gateway.CleanPath, and refuses a result that CleanPath
// would change again: a template's backslash can leave a trailing control
// byte ("\t\\" is "\t", which CleanPath makes empty), a name that the
// server would never let a client read.
func cleanPath(s string) (string, error) {
	c, err := gateway.CleanPath(s)
	if err != nil {
		return "", err
	}
	if again, err := gateway.CleanPath(c); err != nil || again != c {
		return "", fmt.Errorf("%q is not stable under cleaning", s)
	}
	return c, nil
}

// declaredSize returns the request's tsize option if it is a decimal
// number; one too large for an int64 is returned as the largest int64.
func declaredSize(req *gateway.Request) (int64, bool) {
	v, ok := req.Option("tsize")
	if !ok || v == "" {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 1<<63 - 1, true // all digits: out of range
	}
	return n, true
}

// limitedUpload refuses the Write that would pass the limit, and every
// one after it; nothing of it reaches the Upload.
type limitedUpload struct {
	gateway.Upload
	left int64
	over bool
}

func (l *limitedUpload) Write(p []byte) (int, error) {
	if l.over || int64(len(p)) > l.left {
		l.over = true
		return 0, gateway.ErrUploadTooLarge
	}
	n, err := l.Upload.Write(p)
	l.left -= int64(n)
	return n, err
}

func (l *limitedUpload) Commit() error {
	if l.over {
		return gateway.ErrUploadTooLarge
	}
	return l.Upload.Commit()
}

// template is a parsed Policy.Path.
type template []piece

type piece struct {
	kind pieceKind
	lit  string // pieceLiteral
}

type pieceKind uint8

const (
	pieceLiteral pieceKind = iota
	piecePath
	pieceClientIP
	pieceClientIPHex
)

// placeholders are the {name}s of Policy.Path.
var placeholders = map[string]pieceKind{
	"path":          piecePath,
	"client_ip":     pieceClientIP,
	"client_ip_hex": pieceClientIPHex,
}

func isPlaceholder(name string) bool { _, ok := placeholders[name]; return ok }

var errNoAddr = errors.New("the request has no valid client address for a placeholder")

// parseTemplate parses a Policy.Path, "" meaning "{path}", and checks that
// it stays inside the root for a one-element path.
func parseTemplate(s string) (template, error) {
	if s == "" {
		s = "{path}"
	}
	var (
		t   template
		lit strings.Builder
	)
	flush := func() {
		if lit.Len() > 0 {
			t = append(t, piece{kind: pieceLiteral, lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		switch c := s[i]; c {
		case '{', '}':
			l, name, n, err := placeholder.Scan(s, i, isPlaceholder, "{path}, {client_ip}, {client_ip_hex}")
			if err != nil {
				return nil, err
			}
			if l != 0 {
				lit.WriteByte(l)
			} else {
				flush()
				t = append(t, piece{kind: placeholders[name]})
			}
			i += n
		default:
			lit.WriteByte(c)
			i++
		}
	}
	flush()
	const sample = "f"
	out, err := t.expand(sample, netip.AddrFrom4([4]byte{192, 0, 2, 1}))
	if err == nil {
		_, err = cleanPath(out)
	}
	if err != nil {
		return nil, fmt.Errorf("for the path %q it makes %q: %w", sample, out, err)
	}
	return t, nil
}

// expand returns the template's text for the path name and the client
// address a, as package rewrite writes its placeholders.
func (t template) expand(name string, a netip.Addr) (string, error) {
	if len(t) == 1 && t[0].kind == piecePath {
		return name, nil
	}
	b := make([]byte, 0, len(name)+64)
	for _, p := range t {
		switch p.kind {
		case pieceLiteral:
			b = append(b, p.lit...)
		case piecePath:
			b = append(b, name...)
		case pieceClientIP, pieceClientIPHex:
			if !a.IsValid() {
				return "", errNoAddr
			}
			if p.kind == pieceClientIP {
				b = placeholder.AppendClientIP(b, a)
			} else {
				b = placeholder.AppendClientIPHex(b, a)
			}
		}
	}
	return string(b), nil
}
