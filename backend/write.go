package backend

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/gateway"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// Write implements tftpgwv1.ContentServiceServer: it stores one upload
// with the WriteHandler. It receives start, builds the [gateway.Request]
// (with the exact bytes, as for a Read) and calls
// WriteHandler.ReceiveTFTP with the call's context; an error refuses the
// upload with [Status](err) before accepted. It then sends accepted,
// writes each data message to the [gateway.Upload] in order, and at end
// checks the size and SHA-256 against the bytes received (DATA_LOSS if
// they differ), calls Commit and sends stored.
//
// The upload's Abort is called, once, whenever the call ends without a
// Commit that returned nil: a Write or Commit error (the call fails with
// its Status), a check that failed, the call cancelled (the edge gave up)
// or ended without end, or a panic in the handler or the upload, which is
// logged and fails the call with INTERNAL.
func (s *Service) Write(stream grpc.BidiStreamingServer[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse]) (err error) {
	if s.WriteHandler == nil {
		return status.Error(codes.Unimplemented, "uploads not enabled")
	}
	ctx := stream.Context()
	msg, err := stream.Recv()
	if err == io.EOF {
		return status.Error(codes.InvalidArgument, "the call ended before start")
	}
	if err != nil {
		return recvErr(ctx, err)
	}
	start := msg.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "the first message is not start")
	}
	req, err := requestFrom(readRequestOf(start))
	if err != nil {
		return err
	}
	if _, ok := req.Option("tsize"); !ok && start.Size != nil {
		// The declared size, where handlers look for it, from an edge
		// that sends it without the tsize option (tftpgw sends both).
		req.Options = append(req.Options, gateway.Option{Name: "tsize", Value: strconv.FormatInt(start.GetSize(), 10)})
	}
	if id := start.GetEdgeId(); id != "" {
		ctx = context.WithValue(ctx, edgeIDKey{}, id)
	}

	var (
		up   gateway.Upload
		done bool // committed, or aborted
	)
	abort := func() {
		if up != nil && !done {
			done = true
			s.abort(ctx, up)
		}
	}
	defer func() {
		if p := recover(); p != nil {
			s.logger().ErrorContext(ctx, "backend: panic serving call", "panic", p, "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, "internal error")
		}
		abort()
	}()

	up, err = s.WriteHandler.ReceiveTFTP(ctx, req)
	if err != nil {
		up = nil // an upload returned with an error is not the caller's
		return Status(err)
	}
	if up == nil {
		return Status(fmt.Errorf("backend: write handler returned no upload for %q", req.Path))
	}
	if err := stream.Send(&tftpgwv1.WriteResponse{Msg: &tftpgwv1.WriteResponse_Accepted{Accepted: &tftpgwv1.WriteAccepted{}}}); err != nil {
		return err
	}

	h := sha256.New()
	var size int64
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return status.Errorf(codes.InvalidArgument, "the call ended without end, after %d bytes", size)
		}
		if err != nil {
			return recvErr(ctx, err)
		}
		switch m := msg.GetMsg().(type) {
		case *tftpgwv1.WriteRequest_Data:
			h.Write(m.Data)
			size += int64(len(m.Data))
			n, err := up.Write(m.Data)
			if err == nil && n < len(m.Data) {
				err = io.ErrShortWrite
			}
			if err != nil {
				return Status(ctxErr(ctx, fmt.Errorf("backend: write at byte %d: %w", size-int64(len(m.Data))+int64(n), err)))
			}
		case *tftpgwv1.WriteRequest_End:
			var sum [sha256.Size]byte
			if got := m.End.GetSize(); got != size {
				return status.Errorf(codes.DataLoss, "end says %d bytes, %d arrived", got, size)
			}
			if got := m.End.GetSha256(); !bytes.Equal(got, h.Sum(sum[:0])) {
				return status.Errorf(codes.DataLoss, "end says SHA-256 %x, the bytes that arrived have %x", got, sum)
			}
			if err := up.Commit(); err != nil {
				return Status(ctxErr(ctx, fmt.Errorf("backend: commit: %w", err)))
			}
			done = true
			return stream.Send(&tftpgwv1.WriteResponse{Msg: &tftpgwv1.WriteResponse_Stored{Stored: &tftpgwv1.WriteStored{Size: size}}})
		case *tftpgwv1.WriteRequest_Start:
			return status.Error(codes.InvalidArgument, "a second start")
		default:
			return status.Error(codes.InvalidArgument, "an empty message")
		}
	}
}

// abort calls up.Abort, logging a panic in it.
func (s *Service) abort(ctx context.Context, up gateway.Upload) {
	defer func() {
		if p := recover(); p != nil {
			s.logger().ErrorContext(ctx, "backend: panic in Upload.Abort", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	up.Abort()
}

func (s *Service) logger() *slog.Logger {
	if s.log != nil {
		return s.log
	}
	return slog.Default()
}

// recvErr is the error of a call whose Recv failed with err: the
// context's status once the edge cancelled the call.
func recvErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return err
}

// readRequestOf returns the ReadRequest with the fields of start, so that
// requestFrom builds an upload's Request as it builds a read's.
func readRequestOf(start *tftpgwv1.WriteStart) *tftpgwv1.ReadRequest {
	return &tftpgwv1.ReadRequest{
		SessionId:    start.GetSessionId(),
		RawPath:      start.GetRawPath(),
		Path:         start.GetPath(),
		Mode:         start.GetMode(),
		Options:      start.GetOptions(),
		Client:       start.GetClient(),
		LocalAddress: start.GetLocalAddress(),
		EdgeId:       start.GetEdgeId(),
		RawPathBytes: start.GetRawPathBytes(),
		PathBytes:    start.GetPathBytes(),
	}
}
