package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tftpgw/tftpgw/gateway"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// stats are the backend facts of one session; see BackendStats.
type stats struct {
	peer          string // backend that sent the last header
	headerLatency time.Duration
	resumes       int
}

// MaxChunkSize is the largest data chunk a backend may send in one
// ReadResponse (content.proto): 4 MiB. An edge holds a whole message in
// memory, so a larger one fails the call (RESOURCE_EXHAUSTED on the edge's
// side) and the client gets ERROR 0; the log names this limit.
const MaxChunkSize = 4 << 20

// maxRecvMsgSize is the gRPC receive limit: a ReadResponse carrying a
// chunk of MaxChunkSize bytes, with its framing (a tag byte and a 4-byte
// varint length), and not one byte more.
const maxRecvMsgSize = MaxChunkSize + 5

// content streams one file from backends. Read and Close follow the
// [gateway.Content] rules: Read on one goroutine, Close once.
type content struct {
	h   *Handler
	req *tftpgwv1.ReadRequest
	log *slog.Logger

	ctx    context.Context // the session's; cancelled by Close
	cancel context.CancelCauseFunc
	start0 time.Time

	// From the first header.
	size   int64
	etag   string
	maxAge time.Duration
	digest []byte    // SHA-256 of the whole content; nil if none
	mtime  time.Time // when the content last changed; zero if unknown
	hash   hash.Hash // of the bytes received so far, when digest is set

	// The current call.
	stream  grpc.ServerStreamingClient[tftpgwv1.ReadResponse]
	actx    context.Context
	acancel context.CancelCauseFunc
	idle    *time.Timer

	buf        []byte // received, not yet read
	received   int64  // bytes received from the backends
	err        error  // sticky; io.EOF at the end
	firstBreak time.Time
	resumes    int

	mu    sync.Mutex
	stats stats
}

var (
	_ gateway.InfoContent    = (*content)(nil)
	_ gateway.BackendContent = (*content)(nil)
)

func newContent(ctx context.Context, h *Handler, r *gateway.Request) *content {
	ctx, cancel := context.WithCancelCause(ctx)
	c := &content{
		h:      h,
		req:    readRequest(r, h.cfg.EdgeID),
		log:    h.log.With("session", r.SessionID, "path", r.Path),
		ctx:    ctx,
		cancel: cancel,
		start0: time.Now(),
		size:   -1,
	}
	return c
}

// readRequest builds the ReadRequest of r. Proto strings must be valid
// UTF-8 (gRPC refuses to send one that is not), but a filename or an
// option is whatever bytes the client sent: a PXE ROM pads its filename
// with 0xFF, an old system sends Latin-1. Each text field therefore has
// its invalid bytes replaced by U+FFFD, and its bytes twin carries the
// exact bytes.
func readRequest(r *gateway.Request, edgeID string) *tftpgwv1.ReadRequest {
	req := &tftpgwv1.ReadRequest{
		SessionId:    text(r.SessionID),
		RawPath:      text(r.RawPath),
		Path:         text(r.Path),
		Mode:         text(r.Mode),
		Client:       address(r.RemoteAddr),
		LocalAddress: address(r.LocalAddr),
		EdgeId:       text(edgeID),
		RawPathBytes: []byte(r.RawPath),
		PathBytes:    []byte(r.Path),
	}
	req.Options = options(r.Options)
	req.Protocol = tftpgwv1.Protocol_PROTOCOL_TFTP
	if r.Protocol == gateway.ProtocolHTTP {
		req.Protocol = tftpgwv1.Protocol_PROTOCOL_HTTP
	}
	return req
}

// options converts a request's options, with the exact bytes beside the
// text (see readRequest).
func options(opts []gateway.Option) []*tftpgwv1.Option {
	var out []*tftpgwv1.Option
	for _, o := range opts {
		out = append(out, &tftpgwv1.Option{
			Name: text(o.Name), Value: text(o.Value),
			NameBytes: []byte(o.Name), ValueBytes: []byte(o.Value),
		})
	}
	return out
}

// text returns s with each byte that is not part of valid UTF-8 replaced
// by U+FFFD (content.proto's rule for the text fields of a request).
func text(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		b.WriteRune(r) // an invalid byte ranges as utf8.RuneError, width 1
	}
	return b.String()
}

func address(ap netip.AddrPort) *tftpgwv1.Address {
	if !ap.IsValid() {
		return nil
	}
	return &tftpgwv1.Address{Ip: ap.Addr().Unmap().String(), Port: uint32(ap.Port())}
}

// start makes the first call and waits for its header.
func (c *content) start() error {
	hdr, err := c.open(0, c.h.cfg.HeaderTimeout)
	if err != nil {
		switch {
		case c.ctx.Err() != nil:
			return wrap(errBackend, fmt.Errorf("session ended before the header: %w", context.Cause(c.ctx)))
		case errors.Is(err, errHeaderBudget):
			c.h.watch.bad(keyReach, slog.LevelWarn, "no backend sent a header within the header budget; clients get ERROR 0 \"backend timeout\"", err.Error())
			return wrap(errTimeout, err)
		default:
			c.h.noteMisconfig(err)
		}
		c.log.Debug("backend call failed", "err", err)
		return wrap(tftpError(err), err)
	}
	c.h.watch.good(keyReach, "backends answer again")
	c.h.noteMisconfig(nil)
	c.size = headerSize(hdr)
	c.etag = hdr.GetEtag()
	if d := hdr.GetMaxAge(); d != nil && d.IsValid() {
		// A max_age present and zero is the backend saying that the
		// content must be asked for every time: no default freshness
		// (see gateway.ContentInfo.MaxAge).
		c.maxAge = max(d.AsDuration(), -1)
		if c.maxAge == 0 {
			c.maxAge = -1
		}
	}
	if m := hdr.GetModified(); m != nil && m.IsValid() {
		c.mtime = m.AsTime()
	}
	if d := hdr.GetSha256(); len(d) > 0 {
		c.digest = d
		c.hash = sha256.New()
	}
	lat := time.Since(c.start0)
	c.mu.Lock()
	c.stats.headerLatency = lat
	c.mu.Unlock()
	c.log.Debug("backend header", "peer", c.BackendStats().Target, "latency", lat, "size", c.size, "etag", c.etag)
	return nil
}

// open calls Read at offset and waits at most budget for the header. On
// success the call becomes the current one. A call failing with
// UNAVAILABLE (after gRPC's own retries) is made again while the budget
// lasts. An error wrapping errHeaderBudget means the budget ran out.
func (c *content) open(offset int64, budget time.Duration) (*tftpgwv1.Header, error) {
	req := proto.Clone(c.req).(*tftpgwv1.ReadRequest)
	req.Offset = uint64(offset)
	if offset > 0 {
		req.IfMatch = c.etag
	}
	deadline := time.Now().Add(budget)
	pause := 25 * time.Millisecond
	for {
		actx, acancel := context.WithCancelCause(c.ctx)
		timer := time.AfterFunc(time.Until(deadline), func() { acancel(errHeaderBudgetCause) })
		stream, err := c.h.client.Read(actx, req, grpc.WaitForReady(true))
		var msg *tftpgwv1.ReadResponse
		if err == nil {
			msg, err = stream.Recv()
		}
		timer.Stop()
		if err == nil {
			hdr := msg.GetHeader()
			if hdr == nil {
				acancel(errors.New("protocol error"))
				return nil, errors.New("backend sent data before the header")
			}
			if err := checkHeader(hdr, offset); err != nil {
				acancel(errors.New("protocol error"))
				return nil, err
			}
			c.stream, c.actx, c.acancel = stream, actx, acancel
			c.idle = time.AfterFunc(time.Hour, func() { acancel(errIdleCause) })
			c.idle.Stop()
			var addr string
			if p, ok := peer.FromContext(stream.Context()); ok && p.Addr != nil {
				addr = p.Addr.String()
			}
			c.mu.Lock()
			c.stats.peer = addr
			c.mu.Unlock()
			return hdr, nil
		}
		cause := context.Cause(actx)
		acancel(nil)
		switch {
		case c.ctx.Err() != nil:
			return nil, context.Cause(c.ctx)
		case errors.Is(cause, errHeaderBudget):
			return nil, fmt.Errorf("%w (%s): %w", errHeaderBudget, budget, err)
		case err == io.EOF:
			return nil, errors.New("backend ended the stream before the header")
		case tooLarge(err):
			return nil, chunkError(err)
		case status.Code(err) == codes.Unavailable && !hasTFTPError(err) && time.Until(deadline) > pause:
			select {
			case <-time.After(pause):
			case <-c.ctx.Done():
				return nil, context.Cause(c.ctx)
			}
			pause *= 2
			continue
		}
		return nil, err
	}
}

// endCall cancels the current call, if any.
func (c *content) endCall(cause error) {
	if c.acancel != nil {
		c.idle.Stop()
		c.acancel(cause)
		c.stream, c.actx, c.acancel, c.idle = nil, nil, nil, nil
	}
}

// Read implements io.Reader. It returns the bytes of the current chunk,
// receiving the next one when it is used up, and resumes a broken stream
// when it can.
func (c *content) Read(p []byte) (int, error) {
	if c.err == nil && c.ctx.Err() != nil { // closed, or the session ended
		c.fail(wrap(errBackend, context.Cause(c.ctx)))
	}
	for len(c.buf) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		c.fill()
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// fail ends the content with err.
func (c *content) fail(err error) {
	c.endCall(err)
	c.err = err
	c.buf = nil
	if c.ctx.Err() == nil {
		c.log.Warn("backend transfer failed", "received", c.received, "err", err)
	}
}

// fill receives the next message into buf, or sets err.
func (c *content) fill() {
	if c.stream == nil { // closed, or the session ended
		c.fail(wrap(errBackend, context.Cause(c.ctx)))
		return
	}
	c.idle.Reset(c.h.cfg.IdleTimeout)
	msg, err := c.stream.Recv()
	c.idle.Stop()
	switch {
	case err == nil:
		data, ok := msg.GetMsg().(*tftpgwv1.ReadResponse_Data)
		if !ok {
			c.fail(wrap(errBackend, errors.New("backend sent a second header")))
			return
		}
		c.received += int64(len(data.Data))
		if c.size >= 0 && c.received > c.size {
			c.fail(wrap(errBackend, fmt.Errorf("backend sent more than the header's size %d", c.size)))
			return
		}
		if c.hash != nil {
			c.hash.Write(data.Data)
		}
		c.buf = data.Data
	case err == io.EOF:
		if c.size >= 0 && c.received != c.size {
			c.fail(wrap(errBackend, fmt.Errorf("backend ended the stream at byte %d of %d", c.received, c.size)))
			return
		}
		if c.hash != nil {
			if sum := c.hash.Sum(nil); !bytes.Equal(sum, c.digest) {
				c.fail(wrap(gateway.ErrIntegrity, fmt.Errorf("the %d bytes received have SHA-256 %x, the header said %x (%d resumes)",
					c.received, sum, c.digest, c.resumes)))
				return
			}
		}
		c.endCall(io.EOF)
		c.err = io.EOF
	case tooLarge(err):
		c.fail(wrap(errBackend, chunkError(err)))
	default:
		if errors.Is(context.Cause(c.actx), errIdle) {
			err = fmt.Errorf("%w (%s): %w", errIdle, c.h.cfg.IdleTimeout, err)
		}
		c.broke(err)
	}
}

// broke handles a stream that failed with err after its header: it
// resumes the transfer on a new call if it may, or fails the content.
func (c *content) broke(err error) {
	switch {
	case c.ctx.Err() != nil:
		c.fail(wrap(errBackend, context.Cause(c.ctx)))
		return
	case !resumable(err):
		c.fail(wrap(tftpError(err), err))
		return
	case c.etag == "":
		c.fail(wrap(errBackend, fmt.Errorf("stream broke at byte %d; not resumed, the content has no etag: %w", c.received, err)))
		return
	}
	if c.firstBreak.IsZero() {
		c.firstBreak = time.Now()
	}
	for {
		left := c.h.cfg.ResumeTimeout - time.Since(c.firstBreak)
		if c.resumes >= c.h.cfg.MaxResumes || left <= 0 {
			c.fail(wrap(errBackend, fmt.Errorf("stream broke at byte %d; gave up after %d resumes in %s: %w",
				c.received, c.resumes, time.Since(c.firstBreak).Round(time.Millisecond), err)))
			return
		}
		c.endCall(err)
		c.resumes++
		c.mu.Lock()
		c.stats.resumes = c.resumes
		c.mu.Unlock()
		c.log.Info("backend stream broke; resuming", "offset", c.received, "resume", c.resumes, "err", err)
		hdr, oerr := c.open(c.received, min(left, c.h.cfg.HeaderTimeout))
		if oerr != nil {
			switch {
			case c.ctx.Err() != nil:
				c.fail(wrap(errBackend, context.Cause(c.ctx)))
				return
			case errors.Is(oerr, errSplice):
				c.fail(wrap(errChanged, fmt.Errorf("resume at byte %d: %w", c.received, oerr)))
				return
			case errors.Is(oerr, errHeaderBudget) || resumable(oerr):
				err = oerr
				continue
			case status.Code(oerr) == codes.FailedPrecondition && !hasTFTPError(oerr):
				c.fail(wrap(errChanged, fmt.Errorf("resume at byte %d refused: %w", c.received, oerr)))
				return
			}
			c.fail(wrap(tftpError(oerr), fmt.Errorf("resume at byte %d: %w", c.received, oerr)))
			return
		}
		if err := c.sameVersion(hdr, c.received); err != nil {
			c.fail(err)
		}
		return
	}
}

// sameVersion checks that the header of a call at offset describes the
// version of the first header.
func (c *content) sameVersion(hdr *tftpgwv1.Header, offset int64) error {
	size := headerSize(hdr)
	if hdr.GetEtag() != c.etag || size != c.size {
		return wrap(errChanged, fmt.Errorf("resume at byte %d: backend sent etag %q size %d, want etag %q size %d",
			offset, hdr.GetEtag(), size, c.etag, c.size))
	}
	if d := hdr.GetSha256(); len(d) > 0 && c.digest != nil && !bytes.Equal(d, c.digest) {
		return wrap(errChanged, fmt.Errorf("resume at byte %d: backend sent sha256 %x, want %x", offset, d, c.digest))
	}
	return nil
}

// Seek implements io.Seeker, for a range of the content (an HTTP range
// request, see gateway.Server.ServeHTTP): the content is read on from
// offset on a new call, which asks the backend for that offset with the
// first header's etag, as a resume does, and must be confirmed the same
// way (the offset echoed, the same etag and size), so that a range is
// never spliced from another version. Bytes already received are not
// asked for again. A content without an etag cannot seek. A range that
// does not reach the end of the content is not checked against its
// SHA-256 digest: after a seek, the digest is not checked at all.
func (c *content) Seek(offset int64, whence int) (int64, error) {
	pos := c.received - int64(len(c.buf))
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += pos
	case io.SeekEnd:
		if c.size < 0 {
			return 0, errors.New("remote: seek from the end of a content of unknown size")
		}
		offset += c.size
	default:
		return 0, errors.New("remote: seek: invalid whence")
	}
	switch {
	case offset == pos:
		return pos, nil
	case offset < 0 || c.size >= 0 && offset > c.size:
		return 0, fmt.Errorf("remote: seek to %d, outside the content's %d bytes", offset, c.size)
	case c.err != nil && c.err != io.EOF:
		return 0, c.err
	case c.etag == "":
		return 0, errors.New("remote: the content has no etag: it cannot be read from an offset")
	case offset > pos && offset <= c.received:
		c.buf = c.buf[offset-pos:]
		return offset, nil
	}
	c.endCall(errSeek)
	c.buf, c.err, c.hash = nil, nil, nil
	hdr, err := c.open(offset, c.h.cfg.HeaderTimeout)
	if err == nil {
		err = c.sameVersion(hdr, offset)
	} else {
		err = wrap(tftpError(err), fmt.Errorf("reading from byte %d: %w", offset, err))
	}
	if err != nil {
		c.fail(err)
		return 0, err
	}
	c.received = offset
	return offset, nil
}

// errSeek ends a call whose content was sought elsewhere.
var errSeek = errors.New("content read from another offset")

// Close cancels the call. It implements io.Closer.
func (c *content) Close() error {
	c.cancel(errClosed)
	return nil
}

// Size returns the size from the header, or -1 if it had none.
func (c *content) Size() int64 { return c.size }

// Info returns the etag, max age and digest from the header.
func (c *content) Info() gateway.ContentInfo {
	info := gateway.ContentInfo{ETag: c.etag, MaxAge: c.maxAge, ModTime: c.mtime}
	copy(info.SHA256[:], c.digest)
	return info
}

// BackendStats implements [gateway.BackendContent]: Target is the
// handler's target, Peer the address of the backend that sent the last
// header (empty if none did), HeaderLatency the time from the request to
// the first header, including the wait for a ready backend (zero if no
// header came), and Resumes the calls made to resume the transfer,
// successful or not. It may be called from any goroutine, also after
// Close.
func (c *content) BackendStats() gateway.BackendStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return gateway.BackendStats{Target: c.h.target, Peer: c.stats.peer, HeaderLatency: c.stats.headerLatency, Resumes: c.stats.resumes}
}

// errSplice is a resume whose header does not confirm the offset asked
// for: the backend may be sending the content from another byte.
var errSplice = errors.New("header does not confirm the offset")

// checkHeader checks a header against content.proto: its digest, if any,
// is a SHA-256, and it confirms the offset of a resume.
func checkHeader(hdr *tftpgwv1.Header, offset int64) error {
	if d := hdr.GetSha256(); len(d) != 0 && len(d) != sha256.Size {
		return fmt.Errorf("backend sent a sha256 of %d bytes, not %d", len(d), sha256.Size)
	}
	switch {
	case offset == 0 && hdr.GetOffset() != 0:
		return fmt.Errorf("backend answered offset 0 with a header at offset %d", hdr.GetOffset())
	case offset > 0 && hdr.Offset == nil:
		return fmt.Errorf("%w: the backend left Header.offset unset (it must echo ReadRequest.offset %d to resume; see content.proto)", errSplice, offset)
	case offset > 0 && hdr.GetOffset() != uint64(offset):
		return fmt.Errorf("%w: asked for %d, the header says %d", errSplice, offset, hdr.GetOffset())
	}
	return nil
}

// tooLarge reports whether err is gRPC refusing a message over the
// receive limit.
func tooLarge(err error) bool {
	return status.Code(err) == codes.ResourceExhausted && strings.Contains(status.Convert(err).Message(), "larger than max")
}

// chunkError explains a message refused for its size.
func chunkError(err error) error {
	return fmt.Errorf("backend sent a message larger than content.proto allows (data chunks of at most %d bytes, 4 MiB; send smaller chunks): %w", MaxChunkSize, err)
}

// headerSize returns the header's size, or -1 if it has none.
func headerSize(hdr *tftpgwv1.Header) int64 {
	if hdr.Size == nil || hdr.GetSize() < 0 {
		return -1
	}
	return hdr.GetSize()
}
