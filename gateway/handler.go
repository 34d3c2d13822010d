package gateway

import (
	"context"
	"net/netip"
	"time"
)

// A Handler answers a TFTP read request with the content to send.
//
// ServeTFTP is called once per session, on the session's own goroutine,
// after the request's path has been normalised (see [Request.Path]) and
// before any option is acknowledged, so that an error can still be sent
// in place of an OACK. The context is cancelled when the session ends for
// any reason (success, client error, probe, timeout or shutdown); content
// that streams from elsewhere should stop when it is.
//
// The returned Content is read block by block as the client acknowledges
// and is always closed by the server. If ServeTFTP returns an error the
// client receives an ERROR packet chosen by [ErrorFor]; the error's text is
// never sent unless it is an [*Error].
//
// A panic in ServeTFTP or in the Content ends that session with
// ERROR 0 and is logged; it does not stop the server.
type Handler interface {
	ServeTFTP(ctx context.Context, req *Request) (Content, error)
}

// HandlerFunc adapts an ordinary function to a [Handler].
type HandlerFunc func(ctx context.Context, req *Request) (Content, error)

// ServeTFTP calls f(ctx, req).
func (f HandlerFunc) ServeTFTP(ctx context.Context, req *Request) (Content, error) {
	return f(ctx, req)
}

// Option is one option name and value of a request, as sent by the client
// except that the name is lower-cased.
type Option struct {
	Name  string
	Value string
}

// Request is a read request (RRQ) as the handler sees it.
type Request struct {
	// SessionID identifies the session in logs and stats.
	SessionID string

	// RawPath is the filename exactly as the client sent it, less a
	// suffix the server's Tracer removed (a trace context appended to it;
	// see SessionTracer).
	RawPath string

	// Path is the normalised, relative, slash-separated path: backslashes
	// became slashes, repeated and leading separators were removed,
	// trailing NUL, 0xFF and control bytes were stripped, and "." and ".." were
	// resolved. A path that would escape upwards is refused before the
	// handler is called.
	//
	// A Middleware that rewrites the path (package rewrite) sets Path on
	// the Request it was given, cleaned the same way, and passes that
	// Request on: the server then reports the rewritten path in the
	// session's log line and SessionStats.RewrittenPath.
	Path string

	// Mode is "octet" or "netascii", lower-cased. The server does the
	// netascii conversion; the handler returns the file's bytes as they are.
	Mode string

	// Options are the options of the request in the order sent, names
	// lower-cased, including ones the server does not support.
	Options []Option

	// RemoteAddr is the client's address and port (its transfer ID).
	RemoteAddr netip.AddrPort

	// LocalAddr is the address the request was sent to and the port it
	// arrived on. Replies are sent from this address.
	LocalAddr netip.AddrPort

	// At is when the request reached the server: for TFTP the kernel's
	// receive time of the datagram (so a request that waited in the
	// socket's queue during a boot storm shows it), else the time it was
	// read; for HTTP when ServeHTTP was called. It carries the monotonic
	// clock's reading, so that it compares with [time.Now] without being
	// misled by a step of the wall clock. Zero when unknown (a Request
	// made by other code). Package cache serves a request from its entry
	// without a revalidation of its own when one of the same path began
	// after At (see [StatHandler]).
	At time.Time

	// Protocol is the protocol the request came by: TFTP, or HTTP when
	// the server answers it in [Server.ServeHTTP] (Mode is then "octet",
	// Options are empty and RawPath is the request target as sent: the
	// URL's path and query, escaped). A handler may
	// answer differently; a content that differs by protocol must not be
	// cached by path: its ContentInfo.MaxAge must be negative (content
	// that differs per request).
	Protocol Protocol
}

// Option returns the value of the named option (case-insensitive) and
// whether the client sent it.
func (r *Request) Option(name string) (string, bool) {
	for _, o := range r.Options {
		if equalFold(o.Name, name) {
			return o.Value, true
		}
	}
	return "", false
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// A Middleware wraps a Handler with behaviour of its own (caching,
// rewriting paths, per-client policy), as net/http's handler wrappers and
// CoreDNS's plugins do.
type Middleware func(Handler) Handler

// Chain returns h wrapped in the middleware m, the first of m the
// outermost: Chain(h, a, b) is a(b(h)), so a request meets a, then b,
// then h.
func Chain(h Handler, m ...Middleware) Handler {
	for i := len(m) - 1; i >= 0; i-- {
		h = m[i](h)
	}
	return h
}

// A StatHandler is a Handler that can also tell the size and version of a
// request's content without opening it, more cheaply than ServeTFTP (one
// stat of a local file instead of an open, a stat and a close). The edge
// cache (package cache) revalidates a cached copy with it. An error means
// only that the content must be opened to know: the caller then calls
// ServeTFTP. [FileServer]'s handler is one.
//
// Its content is the path's, whoever asks: the same version for every
// request of a path at a given moment (a content that differs per client
// says so with a negative [ContentInfo.MaxAge]). The edge cache relies on
// it to serve the requests that arrived before a stat or an open of the
// path began from what that found (see [Request.At]).
type StatHandler interface {
	Handler
	StatContent(ctx context.Context, req *Request) (size int64, info ContentInfo, err error)
}
