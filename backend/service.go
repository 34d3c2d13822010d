package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tftpgw/tftpgw/gateway"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// DefaultChunkSize is the size of the data chunks [Service] sends when its
// ChunkSize is zero.
const DefaultChunkSize = 64 << 10

// MaxChunkSize is the largest chunk [Service] sends: ChunkSize is clamped
// to it so that a message stays well under gRPC's default 4 MiB limit.
const MaxChunkSize = 1 << 20

// ErrETagMismatch reports that the content is no longer the version the
// edge asked for with if_match. [Service] answers FAILED_PRECONDITION for an
// error wrapping it, whether the handler, a Seek or a Read returns it.
var ErrETagMismatch = errors.New("backend: content changed (etag mismatch)")

// Service serves a [gateway.Handler] as a tftpgw.v1.ContentService, and a
// [gateway.WriteHandler] as its Write. Its zero value is ready to use and
// answers NOT_FOUND to every Read until Handler is set, and UNIMPLEMENTED
// to every Write until WriteHandler is set. Fields must not be changed
// once the service is registered.
type Service struct {
	tftpgwv1.UnimplementedContentServiceServer

	// Handler answers the read requests.
	Handler gateway.Handler

	// WriteHandler, if not nil, stores the uploads (Write calls; see
	// [Service.Write]). If nil, Write fails with UNIMPLEMENTED, which the
	// edge sends as ERROR 2 "uploads not supported".
	WriteHandler gateway.WriteHandler

	// ChunkSize is the largest data chunk sent (a chunk is what one Read
	// of the content returns), up to MaxChunkSize; DefaultChunkSize
	// (64 KiB) if zero or negative.
	ChunkSize int

	pools sync.Map // chunk size -> *sync.Pool of *[]byte

	log *slog.Logger // for panics in Write; slog.Default() if nil
}

// NewContentService returns a [Service] serving h with the default chunk
// size, ready to be registered with
// tftpgwv1.RegisterContentServiceServer.
func NewContentService(h gateway.Handler) *Service {
	return &Service{Handler: h}
}

type edgeIDKey struct{}

// EdgeID returns the edge_id of the Read or Write call whose context ctx
// is (the context the handler receives), or "" if there is none.
func EdgeID(ctx context.Context) string {
	id, _ := ctx.Value(edgeIDKey{}).(string)
	return id
}

// Read implements tftpgwv1.ContentServiceServer.
func (s *Service) Read(in *tftpgwv1.ReadRequest, stream grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
	req, err := requestFrom(in)
	if err != nil {
		return err
	}
	if in.GetOffset() > 1<<62 {
		return status.Error(codes.InvalidArgument, "offset out of range")
	}
	offset := int64(in.GetOffset())
	ctx := stream.Context()
	if in.GetEdgeId() != "" {
		ctx = context.WithValue(ctx, edgeIDKey{}, in.GetEdgeId())
	}

	if s.Handler == nil {
		return Status(&gateway.Error{Code: gateway.ErrFileNotFound, Message: "file not found"})
	}
	c, err := s.Handler.ServeTFTP(ctx, req)
	if err != nil {
		return Status(err)
	}
	if c == nil {
		return Status(fmt.Errorf("backend: handler returned no content for %q", req.Path))
	}
	var closeOnce sync.Once
	closeContent := func() { closeOnce.Do(func() { c.Close() }) }
	defer closeContent()
	stop := context.AfterFunc(ctx, closeContent)
	defer stop()

	var info gateway.ContentInfo
	if ic, ok := c.(gateway.InfoContent); ok {
		info = ic.Info()
	}
	if m := in.GetIfMatch(); m != "" && m != info.ETag {
		return Status(fmt.Errorf("%w: want %q, have %q", ErrETagMismatch, m, info.ETag))
	}

	seeker, seekable := c.(io.Seeker)
	if offset > 0 && seekable {
		if _, err := seeker.Seek(offset, io.SeekStart); err != nil {
			return Status(ctxErr(ctx, fmt.Errorf("backend: seek to %d: %w", offset, err)))
		}
	}

	// Offset confirms where the data starts (content.proto): this service
	// always starts there, seeking or skipping.
	h := &tftpgwv1.Header{Etag: info.ETag, Offset: proto.Uint64(uint64(offset))}
	if size := c.Size(); size >= 0 {
		h.Size = &size
	}
	if info.SHA256 != [32]byte{} {
		h.Sha256 = info.SHA256[:]
	}
	switch {
	case info.MaxAge > 0:
		h.MaxAge = durationpb.New(info.MaxAge)
	case info.MaxAge < 0: // explicitly never fresh: a present, zero max_age
		h.MaxAge = durationpb.New(0)
	}
	if !info.ModTime.IsZero() {
		h.Modified = timestamppb.New(info.ModTime)
	}
	if err := stream.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Header{Header: h}}); err != nil {
		return err
	}

	if offset > 0 && !seekable {
		if _, err := io.CopyN(io.Discard, c, offset); err != nil && !errors.Is(err, io.EOF) {
			return Status(ctxErr(ctx, fmt.Errorf("backend: skip %d bytes: %w", offset, err)))
		}
	}
	return s.sendData(ctx, c, stream)
}

// sendData streams c until its end, a chunk per read: what a read
// returns is sent at once, since waiting to fill a chunk from a slow
// source (an HTTP upstream at a few KB/s) would hold back bytes the edge
// needs now, long enough for it to take the stream for stalled.
func (s *Service) sendData(ctx context.Context, c io.Reader, stream grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
	pool := s.pool()
	bp := pool.Get().(*[]byte)
	defer pool.Put(bp)
	buf := *bp
	data := &tftpgwv1.ReadResponse_Data{}
	msg := &tftpgwv1.ReadResponse{Msg: data}
	empty := 0
	for {
		n, err := c.Read(buf)
		if n == 0 && err == nil {
			if empty++; empty >= 100 { // bufio's rule for a reader that makes no progress
				return Status(fmt.Errorf("backend: read: %w", io.ErrNoProgress))
			}
			continue
		}
		empty = 0
		if n > 0 {
			// Send marshals msg before it returns, so buf can be reused.
			data.Data = buf[:n]
			if serr := stream.Send(msg); serr != nil {
				return serr
			}
		}
		switch {
		case err == nil:
		case err == io.EOF:
			return nil
		default:
			return Status(ctxErr(ctx, fmt.Errorf("backend: read: %w", err)))
		}
	}
}

// pool returns the buffer pool for the service's chunk size.
func (s *Service) pool() *sync.Pool {
	size := s.ChunkSize
	if size <= 0 {
		size = DefaultChunkSize
	}
	size = min(size, MaxChunkSize)
	if p, ok := s.pools.Load(size); ok {
		return p.(*sync.Pool)
	}
	p, _ := s.pools.LoadOrStore(size, &sync.Pool{New: func() any {
		b := make([]byte, size)
		return &b
	}})
	return p.(*sync.Pool)
}

// ctxErr prefers the context's error: once the call is cancelled, a read
// error is only the consequence of closing the content.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%w)", cerr, err)
	}
	return err
}

// requestFrom builds the gateway request of a ReadRequest. The handler
// sees the exact bytes the client sent (the bytes twins of the text
// fields, from an edge that sends them), as it would in-process.
func requestFrom(in *tftpgwv1.ReadRequest) (*gateway.Request, error) {
	p := orBytes(in.GetPath(), in.GetPathBytes())
	if strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\`) {
		return nil, status.Error(codes.InvalidArgument, "path is absolute")
	}
	for _, elem := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		if elem == ".." {
			return nil, status.Error(codes.InvalidArgument, `path has a ".." element`)
		}
	}
	req := &gateway.Request{
		SessionID:  in.GetSessionId(),
		RawPath:    orBytes(in.GetRawPath(), in.GetRawPathBytes()),
		Path:       p,
		Mode:       in.GetMode(),
		RemoteAddr: addrPort(in.GetClient()),
		LocalAddr:  addrPort(in.GetLocalAddress()),
	}
	if in.GetProtocol() == tftpgwv1.Protocol_PROTOCOL_HTTP {
		req.Protocol = gateway.ProtocolHTTP
	}
	if opts := in.GetOptions(); len(opts) > 0 {
		req.Options = make([]gateway.Option, len(opts))
		for i, o := range opts {
			req.Options[i] = gateway.Option{Name: orBytes(o.GetName(), o.GetNameBytes()), Value: orBytes(o.GetValue(), o.GetValueBytes())}
		}
	}
	return req, nil
}

// orBytes returns b as a string if it is set, else text: an edge that
// knows the bytes fields always sets them (an empty value has an empty
// text too).
func orBytes(text string, b []byte) string {
	if len(b) > 0 {
		return string(b)
	}
	return text
}

// addrPort converts an Address, leaving it zero when it is missing or
// invalid.
func addrPort(a *tftpgwv1.Address) netip.AddrPort {
	ip, err := netip.ParseAddr(a.GetIp())
	if err != nil || a.GetPort() > 0xffff {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(a.GetPort()))
}

// Status returns the gRPC status error for a handler's error err, with a
// tftpgw.v1.TFTPError detail holding the code and message of
// [gateway.ErrorFor](err), which the edge sends to the client as they are.
// The status code is NOT_FOUND for TFTP error 1, PERMISSION_DENIED for 2,
// RESOURCE_EXHAUSTED for 3 (such as [gateway.ErrUploadTooLarge]),
// ALREADY_EXISTS for 6 (fs.ErrExist too), FAILED_PRECONDITION for
// [ErrETagMismatch] (TFTP error 0 "file changed"), CANCELED or
// DEADLINE_EXCEEDED for the context errors, UNKNOWN for any other
// [*gateway.Error] and INTERNAL otherwise. The status message is err's text: the edge logs it
// but never sends it to the client. An err that already carries a gRPC
// status is returned as it is. Status(nil) is nil.
func Status(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	te := gateway.ErrorFor(err)
	if te.Code == gateway.ErrNotDefined && errors.Is(err, ErrETagMismatch) {
		te = &gateway.Error{Code: gateway.ErrNotDefined, Message: "file changed"}
	}
	var (
		code codes.Code
		ge   *gateway.Error
	)
	switch {
	case te.Code == gateway.ErrFileNotFound:
		code = codes.NotFound
	case te.Code == gateway.ErrAccessViolation:
		code = codes.PermissionDenied
	case te.Code == gateway.ErrDiskFull:
		code = codes.ResourceExhausted
	case te.Code == gateway.ErrFileExists:
		code = codes.AlreadyExists
	case errors.Is(err, ErrETagMismatch):
		code = codes.FailedPrecondition
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.As(err, &ge):
		code = codes.Unknown
	default:
		code = codes.Internal
	}
	st := status.New(code, err.Error())
	if ds, derr := st.WithDetails(&tftpgwv1.TFTPError{Code: uint32(te.Code), Message: te.Message}); derr == nil {
		st = ds
	}
	return st.Err()
}
