package backend

import (
	"log/slog"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// requestFields is a stream interceptor, inside the logging one, that
// adds what a call is about to its "finished call" line: the path of a
// Read or Write, and a Read's offset when it is not zero. They come from
// the call's first message, received by the handler, and reach the
// logging interceptor's fields with logging.AddFields (the handler runs,
// and receives, before the line is written, in the same goroutine).
func requestFields(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &firstMessageStream{WrappedServerStream: middleware.WrapServerStream(ss)})
}

// firstMessageStream passes the fields of the first message received to
// the call's log line.
type firstMessageStream struct {
	*middleware.WrappedServerStream
	seen bool
}

func (s *firstMessageStream) RecvMsg(m any) error {
	err := s.WrappedServerStream.RecvMsg(m)
	if err != nil || s.seen {
		return err
	}
	s.seen = true
	var f logging.Fields
	switch r := m.(type) {
	case *tftpgwv1.ReadRequest:
		f = logging.Fields{"path", r.GetPath()}
		if off := r.GetOffset(); off != 0 {
			f = append(f, "offset", off)
		}
	case *tftpgwv1.WriteRequest:
		if start := r.GetStart(); start != nil {
			f = logging.Fields{"path", start.GetPath()}
		}
	}
	if f != nil {
		logging.AddFields(s.Context(), f)
	}
	return nil
}

// callLevels returns the logging option for cfg.CallLevel, or nil for
// the middleware's default.
func callLevels(level func(codes.Code) slog.Level) []logging.Option {
	if level == nil {
		return nil
	}
	return []logging.Option{logging.WithLevels(func(c codes.Code) logging.Level { return logging.Level(level(c)) })}
}
