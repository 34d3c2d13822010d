package remote

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/gateway"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

var _ gateway.WriteHandler = (*Handler)(nil)

// WriteChunkSize is the largest data message an upload sends: its Write
// buffers the bytes it is given and sends them in messages of this size
// (the last one shorter).
const WriteChunkSize = 32 << 10

// chunkPool holds the send buffers of uploads: a pointer to an array, so
// that Put does not allocate.
var chunkPool = sync.Pool{New: func() any { return new([WriteChunkSize]byte) }}

// ReceiveTFTP implements [gateway.WriteHandler]: it calls Write on a
// backend, sends the request as WriteStart and waits for accepted, at
// most [Config.HeaderTimeout]. The returned upload sends the bytes it is
// given in data messages of at most [WriteChunkSize] bytes; its Commit
// sends end (the size and SHA-256 of every byte sent) and waits, at most
// [Config.CommitTimeout], for stored and the call's OK. Abort cancels the
// call, so the backend discards what it received. The upload also has a
// method BackendStats() gateway.BackendStats (Target, Peer and, as
// HeaderLatency, the time until accepted).
//
// A refusal (the call failing before accepted) is mapped like a read's
// error, and besides: ALREADY_EXISTS to ERROR 6 "file already exists",
// RESOURCE_EXHAUSTED to 3 "disk full or allocation exceeded" and
// UNIMPLEMENTED (a backend without uploads) to 2 "uploads not supported".
// A missed budget is ERROR 0 "backend timeout" and wraps
// context.DeadlineExceeded. The error has a method BackendStats, as a
// read's.
func (h *Handler) ReceiveTFTP(ctx context.Context, req *gateway.Request) (gateway.Upload, error) {
	u := newUpload(ctx, h, req)
	if err := u.start(); err != nil {
		u.err = err
		u.Abort()
		return nil, &statsError{err: err, stats: u.BackendStats()}
	}
	return u, nil
}

// upload sends one file to a backend's Write. Its methods follow the
// [gateway.Upload] rules: called one at a time; BackendStats from any
// goroutine.
type upload struct {
	h   *Handler
	req *tftpgwv1.WriteStart
	log *slog.Logger

	ctx    context.Context // the session's; cancelled on failure, by Abort and after Commit
	cancel context.CancelCauseFunc
	start0 time.Time
	stream grpc.BidiStreamingClient[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse]

	buf  *[WriteChunkSize]byte // pooled; nil once released
	n    int                   // bytes in buf
	data *tftpgwv1.WriteRequest_Data
	msg  *tftpgwv1.WriteRequest // carries data; reused for every data message

	size      int64     // bytes given to Write
	hash      hash.Hash // of those bytes
	err       error     // sticky
	committed bool

	mu    sync.Mutex
	stats stats
}

func newUpload(ctx context.Context, h *Handler, r *gateway.Request) *upload {
	ctx, cancel := context.WithCancelCause(ctx)
	data := &tftpgwv1.WriteRequest_Data{}
	return &upload{
		h:      h,
		req:    writeStart(r, h.cfg.EdgeID),
		log:    h.log.With("session", r.SessionID, "path", r.Path),
		ctx:    ctx,
		cancel: cancel,
		start0: time.Now(),
		data:   data,
		msg:    &tftpgwv1.WriteRequest{Msg: data},
		hash:   sha256.New(),
	}
}

// writeStart builds the WriteStart of r, as readRequest builds a
// ReadRequest; size is the tsize option when it is a non-negative
// integer.
func writeStart(r *gateway.Request, edgeID string) *tftpgwv1.WriteStart {
	ws := &tftpgwv1.WriteStart{
		SessionId:    text(r.SessionID),
		RawPath:      text(r.RawPath),
		Path:         text(r.Path),
		Mode:         text(r.Mode),
		Options:      options(r.Options),
		Client:       address(r.RemoteAddr),
		LocalAddress: address(r.LocalAddr),
		EdgeId:       text(edgeID),
		RawPathBytes: []byte(r.RawPath),
		PathBytes:    []byte(r.Path),
	}
	if v, ok := r.Option("tsize"); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			ws.Size = &n
		}
	}
	return ws
}

// start opens the call, sends start and waits for accepted within the
// header budget.
func (u *upload) start() error {
	budget := u.h.cfg.HeaderTimeout
	timer := time.AfterFunc(budget, func() { u.cancel(errAcceptBudget) })
	msg, err := u.open()
	expired := !timer.Stop()
	if err == nil && (expired || u.ctx.Err() != nil) { // the budget ran out as accepted arrived
		err = errors.New("accepted came too late")
	}
	if err != nil {
		cause := context.Cause(u.ctx)
		switch {
		case expired || errors.Is(cause, errAcceptBudget):
			u.h.watch.bad(keyReach, slog.LevelWarn, "no backend accepted an upload within the header budget; clients get ERROR 0 \"backend timeout\"", err.Error())
			return wrap(errTimeout, fmt.Errorf("%w (%s): %w", errAcceptBudget, budget, err))
		case u.ctx.Err() != nil:
			return wrap(errBackend, fmt.Errorf("session ended before the upload was accepted: %w", cause))
		case status.Code(err) == codes.Unauthenticated && !hasTFTPError(err):
			u.h.watch.bad(keyAuth, slog.LevelError, "backend refused this gateway's credentials (token)", status.Convert(err).Message())
		}
		if _, ok := status.FromError(err); !ok {
			return wrap(errBackend, err) // a protocol error
		}
		u.log.Debug("backend refused the upload", "err", err)
		return wrap(tftpWriteError(err), err)
	}
	if _, ok := msg.GetMsg().(*tftpgwv1.WriteResponse_Accepted); !ok {
		return wrap(errBackend, fmt.Errorf("backend sent %s before accepted", msgName(msg)))
	}
	u.h.watch.good(keyReach, "backends answer again")
	u.h.watch.good(keyAuth, "backend accepts this gateway's credentials again")
	lat := time.Since(u.start0)
	u.mu.Lock()
	u.stats.headerLatency = lat
	u.mu.Unlock()
	u.log.Debug("backend accepted the upload", "peer", u.BackendStats().Peer, "latency", lat)
	return nil
}

// open makes the call, sends start and receives the first response.
func (u *upload) open() (*tftpgwv1.WriteResponse, error) {
	stream, err := u.h.client.Write(u.ctx, grpc.WaitForReady(true))
	if err != nil {
		return nil, err
	}
	u.stream = stream
	if p, ok := peer.FromContext(stream.Context()); ok && p.Addr != nil {
		u.mu.Lock()
		u.stats.peer = p.Addr.String()
		u.mu.Unlock()
	}
	err = stream.Send(&tftpgwv1.WriteRequest{Msg: &tftpgwv1.WriteRequest_Start{Start: u.req}})
	if err != nil && err != io.EOF {
		return nil, err
	}
	// After io.EOF, the backend ended the call: Recv returns its status.
	msg, err := stream.Recv()
	if err == io.EOF {
		return nil, errors.New("backend ended the call with OK before accepted")
	}
	return msg, err
}

// Write buffers p and sends every full chunk. It returns the error of a
// call that failed (the backend refused the rest, or the session ended).
func (u *upload) Write(p []byte) (int, error) {
	if u.err == nil && u.ctx.Err() != nil {
		u.fail(u.ctxError())
	}
	if u.err != nil {
		return 0, u.err
	}
	u.hash.Write(p)
	u.size += int64(len(p))
	for rest := p; len(rest) > 0; {
		if u.buf == nil {
			u.buf = chunkPool.Get().(*[WriteChunkSize]byte)
		}
		c := copy(u.buf[u.n:], rest)
		u.n += c
		rest = rest[c:]
		if u.n == len(u.buf) {
			if err := u.flush(); err != nil {
				return 0, err
			}
		}
	}
	return len(p), nil
}

// flush sends the buffered bytes as one data message.
func (u *upload) flush() error {
	if u.n == 0 {
		return nil
	}
	// Send marshals the message before it returns, so buf can be reused.
	u.data.Data = u.buf[:u.n]
	err := u.stream.Send(u.msg)
	u.data.Data = nil
	u.n = 0
	if err != nil {
		return u.sendFailed(err)
	}
	return nil
}

// sendFailed fails the upload after Send returned err: io.EOF means the
// backend ended the call, and Recv returns its status.
func (u *upload) sendFailed(err error) error {
	if u.ctx.Err() != nil {
		return u.fail(u.ctxError())
	}
	if err != io.EOF {
		return u.fail(wrap(errBackend, err))
	}
	return u.fail(u.recvError(u.stream.Recv()))
}

// recvError is the error of a Recv that did not return the message the
// upload waited for.
func (u *upload) recvError(msg *tftpgwv1.WriteResponse, err error) error {
	switch {
	case u.ctx.Err() != nil:
		return u.ctxError()
	case err == io.EOF:
		return wrap(errBackend, fmt.Errorf("backend ended the call with OK at byte %d, before stored", u.size))
	case err != nil:
		return wrap(tftpWriteError(err), err)
	default:
		return wrap(errBackend, fmt.Errorf("backend sent %s at byte %d", msgName(msg), u.size))
	}
}

// ctxError is the error of an upload whose context is done.
func (u *upload) ctxError() error {
	cause := context.Cause(u.ctx)
	if errors.Is(cause, errCommitBudget) {
		return wrap(errTimeout, fmt.Errorf("%w (%s)", cause, u.h.cfg.CommitTimeout))
	}
	return wrap(errBackend, cause)
}

// fail ends the upload with err, cancelling the call, and returns err.
func (u *upload) fail(err error) error {
	if u.ctx.Err() == nil || errors.Is(context.Cause(u.ctx), errCommitBudget) {
		u.log.Warn("backend upload failed", "sent", u.size, "err", err)
	}
	u.err = err
	u.cancel(err)
	u.release()
	return err
}

// release returns the send buffer to the pool.
func (u *upload) release() {
	if u.buf != nil {
		u.n = 0
		chunkPool.Put(u.buf)
		u.buf = nil
	}
}

// Commit sends the rest of the bytes and end, then waits for stored and
// the call's OK, at most [Config.CommitTimeout].
func (u *upload) Commit() error {
	if u.err == nil && u.committed {
		return errors.New("remote: upload already committed")
	}
	if u.err == nil && u.ctx.Err() != nil {
		u.fail(u.ctxError())
	}
	if u.err != nil {
		return u.err
	}
	timer := time.AfterFunc(u.h.cfg.CommitTimeout, func() { u.cancel(errCommitBudget) })
	defer timer.Stop()
	if err := u.flush(); err != nil {
		return err
	}
	u.release()
	var sum [sha256.Size]byte
	end := &tftpgwv1.WriteEnd{Size: u.size, Sha256: u.hash.Sum(sum[:0])}
	if err := u.stream.Send(&tftpgwv1.WriteRequest{Msg: &tftpgwv1.WriteRequest_End{End: end}}); err != nil {
		return u.sendFailed(err)
	}
	if err := u.stream.CloseSend(); err != nil {
		return u.fail(wrap(errBackend, err))
	}
	msg, err := u.stream.Recv()
	st, ok := msg.GetMsg().(*tftpgwv1.WriteResponse_Stored)
	if err != nil || !ok {
		return u.fail(u.recvError(msg, err))
	}
	if got := st.Stored.GetSize(); got != u.size {
		u.log.Error("backend stored another size than it was sent", "sent", u.size, "stored", got)
		return u.fail(wrap(errBackend, fmt.Errorf("backend stored %d bytes, the edge sent %d", got, u.size)))
	}
	switch msg, err := u.stream.Recv(); {
	case err == io.EOF:
	case err == nil:
		return u.fail(wrap(errBackend, fmt.Errorf("backend sent %s after stored", msgName(msg))))
	default:
		return u.fail(u.recvError(nil, err))
	}
	if u.ctx.Err() != nil { // the budget ran out as the call ended
		return u.fail(u.ctxError())
	}
	u.committed = true
	u.cancel(nil) // the call has ended; release the context
	u.log.Debug("backend stored the upload", "size", u.size)
	return nil
}

// Abort cancels the call, if it has not ended with Commit: the backend
// sees it cancelled and discards what it received. It may be called more
// than once, and after a failed Commit.
func (u *upload) Abort() {
	if u.committed {
		return
	}
	if u.err == nil {
		u.err = wrap(errBackend, errAborted)
	}
	u.cancel(errAborted)
	u.release()
}

// BackendStats returns the stats of the call: Target is the handler's
// target, Peer the backend's address (empty if no call was made),
// HeaderLatency the time from the request to accepted (zero if it did not
// come). It may be called from any goroutine.
func (u *upload) BackendStats() gateway.BackendStats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return gateway.BackendStats{Target: u.h.target, Peer: u.stats.peer, HeaderLatency: u.stats.headerLatency}
}

// msgName names the kind of a WriteResponse, for errors.
func msgName(m *tftpgwv1.WriteResponse) string {
	switch m.GetMsg().(type) {
	case *tftpgwv1.WriteResponse_Accepted:
		return "accepted"
	case *tftpgwv1.WriteResponse_Stored:
		return "stored"
	default:
		return "an empty message"
	}
}
