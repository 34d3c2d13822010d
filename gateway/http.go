package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Protocol is the protocol a request came by.
type Protocol uint8

const (
	// ProtocolTFTP is a TFTP request, the zero Protocol.
	ProtocolTFTP Protocol = iota
	// ProtocolHTTP is an HTTP GET or HEAD (see [Server.ServeHTTP]).
	ProtocolHTTP
)

func (p Protocol) String() string {
	if p == ProtocolHTTP {
		return "http"
	}
	return "tftp"
}

// DefaultHTTPTimeout is the HTTPTimeout of a Server that sets none.
const DefaultHTTPTimeout = 30 * time.Second

// httpChunk is the most a response write hands the client at once, and
// so the unit of HTTPTimeout: a client must take this much in time.
const httpChunk = 32 << 10

// ServeHTTP answers an HTTP GET or HEAD request for a file with the
// server's Handler, the one its TFTP read requests use (and so the same
// backend, cache, rewrite rules and templates): the URL's path is the
// filename, normalised as a TFTP filename is, and the handler sees a
// [Request] whose Protocol is ProtocolHTTP and whose Mode is "octet".
// Serve it with a net/http Server to boot over HTTP from the same edge
// (iPXE chainloading, UEFI HTTP Boot):
//
//	go http.ListenAndServe(":8080", tftpServer)
//
// The request meets the same admission hook (Admit; a drop closes the
// connection without an answer) and limits as a TFTP request: it counts
// as a session of its client while it runs. The response has
// Content-Length when the size is known, an ETag from the content's
// [ContentInfo] (and Last-Modified from its ModTime), and follows RFC
// 9110 for conditional requests (If-None-Match, If-Modified-Since, 304)
// and byte ranges (Range, If-Range; 206 and 416, several ranges as
// multipart/byteranges; more than 16 ranges, or ranges out of order or
// overlapping, get the whole content, as RFC 9110 14.2 lets a server do). A range of a content that can seek (FileServer's,
// cached content, and a gRPC backend's, which resumes at an offset) is
// read from its offset, without reading what is skipped; another content
// is read through from its start, and a request for several ranges of it
// gets the whole content (200), as RFC 9110 lets a server do. A content
// of unknown size is sent whole, chunked, without ranges.
//
// Errors map to statuses: file not found 404, access violation 403,
// illegal operation and option errors 400, busy, shutting down and
// backend timeouts 503 with Retry-After, anything else 500. A content
// that fails while being sent (a backend gone, a changed file, a failed
// integrity check) aborts the connection (with a TCP reset for an HTTP/1.0
// response of unknown size, which only the connection's end delimits), so
// that the client sees a truncated transfer and never a complete-looking
// wrong file. A client
// that takes longer than HTTPTimeout to accept part of the body is cut
// off, so that it cannot hold a backend stream or cached content.
//
// Every request ends in a [SessionStats] (Protocol, HTTPStatus,
// BytesSent) and a log line, and is counted apart from TFTP sessions in
// [ServerStats].
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	st := &s.state
	c := s.init()
	if r.ContentLength != 0 && r.ProtoMajor == 1 {
		// A GET or HEAD has no body; net/http would read one the client
		// announced, without a deadline, before the response header, and
		// a client that never sends it would hold the session (its limit,
		// the content) for as long as it likes. Closing the connection
		// after the response spares that read.
		w.Header().Set("Connection", "close")
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if c == nil {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	client, _ := netip.ParseAddrPort(r.RemoteAddr)
	client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
	var local netip.AddrPort
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local, _ = netip.ParseAddrPort(a.String())
		local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	}
	raw := r.RequestURI // as sent: the path and the query, escaped
	if raw == "" {
		raw = r.URL.RequestURI()
	}
	arrival := Arrival{Client: client, Local: local, RawPath: raw, Mode: "octet", At: at, Protocol: ProtocolHTTP}
	refused := false
	limits, ok := s.admit(c, arrival, func(e *Error) {
		refused = true
		writeError(w, e)
	})
	if !ok {
		if !refused {
			panic(http.ErrAbortHandler) // dropped: no answer at all
		}
		return
	}

	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		w.Header().Set("Retry-After", "1")
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	accepted, perClient, why := st.admit(c, c.limitsFor(limits), client.Addr(), at)
	if !accepted {
		st.mu.Unlock()
		st.refusedBusy(c, client, at, why)
		writeError(w, errBusy)
		return
	}
	st.sessions.Add(1)
	st.mu.Unlock()
	st.httpActive.Add(1)

	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	stop := context.AfterFunc(st.ctx, func() { cancel(errShuttingDown) })
	defer stop()

	id := st.idPrefix + "-" + strconv.FormatUint(st.nextID.Add(1), 10)
	req := &Request{SessionID: id, RawPath: raw, Mode: "octet", RemoteAddr: client, LocalAddr: local, Protocol: ProtocolHTTP, At: at}
	stats := SessionStats{
		SessionID: id, RemoteAddr: client, LocalAddr: local, RawPath: raw, Mode: "octet",
		Protocol: ProtocolHTTP, TransferSize: -1, Start: at,
	}
	ctx = traceStart(ctx, c, req, &stats) // tracer.go
	hw := &httpWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: c.httpTimeout}
	abort := false
	defer func() {
		stats.HTTPStatus = hw.status
		if stats.HTTPStatus == 0 {
			stats.HTTPStatus = http.StatusOK // net/http's, for a handler that wrote nothing
		}
		stats.BytesSent, stats.BytesAcked = hw.bytes, hw.bytes
		stats.Duration = time.Since(at)
		logSession(ctx, c.logger, &stats)
		traceEnd(ctx, c, &stats)
		st.httpDone(&stats, client.Addr(), perClient)
		if c.sessionStats != nil {
			reportSessionStats(c, &stats)
		}
		if abort {
			if !r.ProtoAtLeast(1, 1) && stats.TransferSize < 0 && resetConnection(hw.rc) {
				return
			}
			panic(http.ErrAbortHandler)
		}
	}()

	p, err := CleanPath(r.URL.Path)
	if err != nil {
		e, cause := refusePath(err, raw)
		stats.cause = cause
		stats.Outcome, stats.ErrorSent = OutcomeError, e
		writeError(hw, e)
		return
	}
	req.Path, stats.Path = p, p
	content, err := s.serve(ctx, c, req)
	if req.Path != p {
		stats.RewrittenPath = req.Path
	}
	if err != nil {
		e := ErrorFor(err)
		stats.cause, stats.Backend = err, backendStatsOf(err)
		stats.Outcome, stats.ErrorSent = OutcomeError, e
		writeError(hw, e)
		return
	}
	defer s.closeContent(c, id, content, &stats)
	stats.TransferSize = content.Size()
	body := newHTTPBody(content)
	stats.Outcome, stats.cause, abort = serveBody(hw, r, req.Path, body)
	if errors.Is(stats.cause, ErrIntegrity) {
		st.integrityFailures.Add(1)
	}
}

// resetConnection ends the connection of an HTTP/1 response with a TCP
// reset. An HTTP/1.0 response of unknown length ends where its
// connection does, so that closing it would make a truncated body look
// whole; a reset makes the client see the failure.
func resetConnection(rc *http.ResponseController) bool {
	conn, _, err := rc.Hijack()
	if err != nil {
		return false
	}
	if nc, ok := conn.(interface{ NetConn() net.Conn }); ok { // TLS
		conn = nc.NetConn()
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	conn.Close()
	return true
}

// serveBody sends the content b of the file at name, and says how it
// went: the outcome, the cause of a failure, and whether the connection
// must be aborted (the content failed after the header was sent).
func serveBody(w *httpWriter, r *http.Request, name string, b *httpBody) (Outcome, error, bool) {
	h := w.Header()
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	h.Set("Content-Type", ctype)
	var info ContentInfo
	if ic, ok := b.c.(InfoContent); ok {
		info = ic.Info()
	}
	if info.ETag != "" {
		h.Set("Etag", httpETag(info.ETag))
	}
	if info.MaxAge > 0 {
		h.Set("Cache-Control", "max-age="+strconv.FormatInt(int64(info.MaxAge/time.Second), 10))
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	if b.size < 0 {
		if info.ETag != "" && etagMatch(r.Header.Get("If-None-Match"), h.Get("Etag")) {
			w.WriteHeader(http.StatusNotModified)
			return OutcomeOK, nil, false
		}
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodHead {
			return OutcomeOK, nil, false
		}
		buf := make([]byte, httpChunk)
		_, err := io.CopyBuffer(onlyWriter{w}, onlyReader{b}, buf)
		return bodyOutcome(w, b.finish(), err)
	}
	if rng, ok := withoutEmptySuffixes(r.Header.Get("Range"), b.size); ok {
		r.Header.Set("Range", rng)
	}
	if rng := r.Header.Get("Range"); b.seeker == nil && strings.Contains(rng, ",") || unreasonableRanges(rng, b.size) {
		// Several ranges of a content that cannot seek back, or ranges
		// that would seek it once each (a new backend call each for a
		// gRPC backend's content): all of it, as RFC 9110 14.2 allows.
		r.Header.Del("Range")
	}
	http.ServeContent(w, r, name, info.ModTime, b)
	// ServeContent sends several ranges from a goroutine of its own,
	// which it does not wait for: finish waits for its read, if any, and
	// ends its reading.
	berr := b.finish()
	if w.status >= 400 {
		return OutcomeError, nil, false
	}
	if w.err != nil || berr != nil {
		return bodyOutcome(w, berr, nil)
	}
	if w.status == http.StatusOK && r.Method != http.MethodHead && w.bytes != b.size {
		return OutcomeError, fmt.Errorf("gateway: sent %d bytes of %d", w.bytes, b.size), true
	}
	return OutcomeOK, nil, false
}

// withoutEmptySuffixes returns the Range header h without its suffix
// ranges that select no byte of a content of size bytes ("-0", or any
// suffix of an empty content), and whether it dropped one. They are
// unsatisfiable (RFC 9110 14.1.1), but http.ServeContent answers them
// with a 206 whose Content-Range ends before it starts. A header left
// with no range asks for the byte after the end: a 416 (a 200 for an
// empty content, which ServeContent answers so for any range).
func withoutEmptySuffixes(h string, size int64) (string, bool) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || !strings.Contains(spec, "-") {
		return h, false
	}
	var kept []string
	dropped := false
	for ra := range strings.SplitSeq(spec, ",") {
		ra = textproto.TrimString(ra)
		if suffix, ok := strings.CutPrefix(ra, "-"); ok {
			n, err := strconv.ParseInt(textproto.TrimString(suffix), 10, 64)
			if err == nil && (n == 0 || size == 0) {
				dropped = true
				continue
			}
		}
		if ra != "" {
			kept = append(kept, ra)
		}
	}
	switch {
	case !dropped:
		return h, false
	case len(kept) == 0:
		return "bytes=" + strconv.FormatInt(size, 10) + "-", true
	}
	return "bytes=" + strings.Join(kept, ","), true
}

// maxRanges is the most ranges one request gets as ranges (see
// unreasonableRanges).
const maxRanges = 16

// unreasonableRanges reports whether the Range header h asks a content of
// size bytes for more than maxRanges ranges, or for ranges that are not
// in ascending order or that overlap: RFC 9110 14.2 names these signs of
// a broken client or of a denial-of-service attack, and lets a server
// ignore them. A header that does not parse is left to http.ServeContent.
func unreasonableRanges(h string, size int64) bool {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || !strings.Contains(spec, ",") {
		return false
	}
	n, prevEnd := 0, int64(-1)
	for ra := range strings.SplitSeq(spec, ",") {
		ra = textproto.TrimString(ra)
		if ra == "" {
			continue
		}
		if n++; n > maxRanges {
			return true
		}
		first, last, ok := strings.Cut(ra, "-")
		if !ok {
			return false
		}
		first, last = textproto.TrimString(first), textproto.TrimString(last)
		var start, end int64
		if first == "" {
			i, err := strconv.ParseInt(last, 10, 64)
			if err != nil || i < 0 {
				return false
			}
			start, end = max(size-i, 0), size-1
		} else {
			i, err := strconv.ParseInt(first, 10, 64)
			if err != nil || i < 0 {
				return false
			}
			start, end = i, size-1
			if last != "" {
				j, err := strconv.ParseInt(last, 10, 64)
				if err != nil || j < i {
					return false
				}
				end = min(j, size-1)
			}
		}
		if start >= size {
			continue // not satisfiable: ServeContent leaves it out
		}
		if start <= prevEnd {
			return true
		}
		prevEnd = end
	}
	return false
}

// bodyOutcome classifies a body whose content failed with berr (nil if it
// did not) and whose copy ended with err.
func bodyOutcome(w *httpWriter, berr, err error) (Outcome, error, bool) {
	switch {
	case berr != nil:
		return OutcomeError, berr, true
	case w.err != nil:
		return OutcomeAborted, fmt.Errorf("gateway: writing to the client: %w", w.err), true
	case err != nil:
		return OutcomeError, err, true
	}
	return OutcomeOK, nil, false
}

type onlyWriter struct{ io.Writer }
type onlyReader struct{ io.Reader }

// httpETag quotes a content's ETag for HTTP. One with characters an
// entity tag cannot hold (RFC 9110 8.8.3) is written with them escaped.
func httpETag(etag string) string {
	ok := true
	for i := 0; i < len(etag); i++ {
		if c := etag[i]; c < 0x21 || c == '"' || c == 0x7f {
			ok = false
			break
		}
	}
	if ok {
		return `"` + etag + `"`
	}
	q := strconv.QuoteToASCII(etag)
	q = strings.NewReplacer(`"`, "", `\`, "%", " ", "%20").Replace(q)
	return `"` + q + `"`
}

// etagMatch reports whether an If-None-Match header lists etag (weak
// comparison, as RFC 9110 13.1.2 asks) or is "*".
func etagMatch(header, etag string) bool {
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == strings.TrimPrefix(etag, "W/") {
			return true
		}
	}
	return false
}

// writeError answers with the HTTP status of a TFTP error.
func writeError(w http.ResponseWriter, e *Error) {
	code := httpStatus(e)
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, e.Message, code)
}

// httpStatus maps a TFTP error to an HTTP status.
func httpStatus(e *Error) int {
	switch e.Code {
	case ErrFileNotFound:
		return http.StatusNotFound
	case ErrAccessViolation, ErrNoSuchUser:
		return http.StatusForbidden
	case ErrIllegalOperation, ErrOptionNegotiation:
		return http.StatusBadRequest
	case ErrDiskFull:
		return http.StatusInsufficientStorage
	case ErrFileExists:
		return http.StatusConflict
	}
	switch e.Message {
	case errBusy.Message, errShuttingDown.Error(), "backend timeout", "backend unavailable", "timeout":
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// errShuttingDown ends HTTP requests still running when the server is
// closed.
var errShuttingDown = errors.New("server shutting down")

// httpWriter is the response writer of one request: it records the
// status and the body bytes written, and gives each write of the body
// HTTPTimeout to complete, so that a client that stops reading is cut
// off.
type httpWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	status  int
	bytes   int64
	err     error // the first write error
}

func (w *httpWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *httpWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.err != nil {
		return 0, w.err
	}
	var n int
	for len(p) > 0 {
		chunk := p[:min(len(p), httpChunk)]
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
		m, err := w.ResponseWriter.Write(chunk)
		n += m
		w.bytes += int64(m)
		if err != nil {
			w.err = err
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

// httpBody is a Content as the io.ReadSeeker that http.ServeContent
// reads: seeking only moves a mark, and the content is sought (or read
// forward) when it is read, so that ServeContent's seeks to learn the
// size cost nothing. Reading through to the content's end checks that it
// ends there, so that a content that fails at its end (a wrong digest, a
// file that grew) fails the response before its last bytes are sent.
type httpBody struct {
	mu     sync.Mutex // Read and Seek may run on ServeContent's goroutine
	done   bool       // finish was called: no more reads
	c      Content
	seeker io.Seeker // c's, if it can seek; nil otherwise
	base   int64     // the offset of c's first byte for seeker
	size   int64     // -1 if unknown
	pos    int64     // where the next Read reads, as the reader sees it
	at     int64     // where c's next Read reads
	err    error     // the content's failure
}

func newHTTPBody(c Content) *httpBody {
	b := &httpBody{c: c, size: c.Size()}
	switch v := c.(type) {
	case *readerContent:
		if s, ok := v.r.(io.Seeker); ok {
			b.seeker, b.base = s, v.base
		}
	case io.Seeker:
		b.seeker = v
	}
	return b
}

func (b *httpBody) Seek(off int64, whence int) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch whence {
	case io.SeekCurrent:
		off += b.pos
	case io.SeekEnd:
		off += b.size
	}
	if off < 0 {
		return 0, errors.New("gateway: seek before the start")
	}
	b.pos = off
	return off, nil
}

func (b *httpBody) Read(p []byte) (n int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// A panic of the content ends the request, not the server (see
	// Handler): several ranges are read on ServeContent's goroutine, where
	// nothing else would recover it.
	defer func() {
		if v := recover(); v != nil {
			b.err = fmt.Errorf("gateway: content panic: %v", v)
			n, err = 0, b.err
		}
	}()
	if b.done {
		return 0, errBodyDone
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.pos != b.at {
		if err := b.move(); err != nil {
			b.err = err
			return 0, err
		}
	}
	if b.size >= 0 {
		if b.pos >= b.size {
			return 0, io.EOF
		}
		if left := b.size - b.pos; int64(len(p)) > left {
			p = p[:left]
		}
	}
	n, err = b.c.Read(p)
	b.pos += int64(n)
	b.at += int64(n)
	switch {
	case err == io.EOF && b.size >= 0 && b.at < b.size:
		err = fmt.Errorf("%w: the content ended at byte %d of %d", errChangedHTTP, b.at, b.size)
	case err == nil && b.size >= 0 && b.at == b.size:
		err = b.confirmEnd()
	}
	if err != nil && err != io.EOF {
		b.err = err
		return 0, err // the last bytes are held back
	}
	return n, err
}

// finish ends the reading of the body, once a read under way has
// returned, and returns the content's failure, if any.
func (b *httpBody) finish() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = true
	return b.err
}

// errBodyDone is what a read after finish gets.
var errBodyDone = errors.New("gateway: response ended")

// errChangedHTTP fails a content that is not the size it said.
var errChangedHTTP = errors.New("gateway: file changed while being sent")

// confirmEnd reads past the content's declared end: it must end there.
func (b *httpBody) confirmEnd() error {
	var one [1]byte
	for range 100 {
		n, err := b.c.Read(one[:])
		switch {
		case n > 0:
			return fmt.Errorf("%w: the content is longer than its size %d", errChangedHTTP, b.size)
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		}
	}
	return fmt.Errorf("%w: the content does not end at its size %d", errChangedHTTP, b.size)
}

// move brings the content to the reader's mark.
func (b *httpBody) move() error {
	if b.seeker != nil {
		if _, err := b.seeker.Seek(b.base+b.pos, io.SeekStart); err != nil {
			return fmt.Errorf("gateway: seeking the content to %d: %w", b.pos, err)
		}
		b.at = b.pos
		return nil
	}
	if b.pos < b.at {
		return fmt.Errorf("gateway: the content cannot go back from %d to %d", b.at, b.pos)
	}
	n, err := io.CopyN(io.Discard, b.c, b.pos-b.at)
	b.at += n
	if err != nil {
		return fmt.Errorf("gateway: skipping to %d: %w", b.pos, err)
	}
	return nil
}

// httpDone counts a finished HTTP request and releases its limits.
func (st *serverState) httpDone(s *SessionStats, client netip.Addr, perClient bool) {
	st.httpActive.Add(-1)
	st.httpBytesSent.Add(s.BytesSent)
	st.httpMu.Lock()
	if st.httpStatus == nil {
		st.httpStatus = make(map[int]int64)
	}
	st.httpStatus[s.HTTPStatus]++
	st.httpMu.Unlock()
	st.mu.Lock()
	st.release(client, perClient, time.Now())
	st.mu.Unlock()
	st.sessions.Done()
}

// logAttrsHTTP are the log line's attributes of an HTTP request.
func logAttrsHTTP(attrs []slog.Attr, st *SessionStats) []slog.Attr {
	return append(attrs,
		slog.String("protocol", "http"),
		slog.Int("status", st.HTTPStatus),
		slog.Int64("bytes", st.BytesSent),
	)
}
