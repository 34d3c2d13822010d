package backend

import (
	"context"
	"crypto/tls"
	"log/slog"
	"runtime/debug"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/grpcauth"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// maxRecvMsgSize lets a WriteRequest carry the largest data content.proto
// allows (4 MiB) with its framing (a tag byte and a 4-byte varint length);
// gRPC's default limit is 4 MiB in all.
const maxRecvMsgSize = 4<<20 + 5

// Config configures the server made by [NewServer]. Its zero value serves
// without TLS or authentication and logs to slog.Default().
type Config struct {
	// Token, if not empty, is the bearer token every call must carry in
	// its "authorization: Bearer TOKEN" metadata; other calls fail with
	// UNAUTHENTICATED. It is compared in constant time. The health service
	// is exempt, so that load balancers can probe without it.
	Token string

	// TLS, if not nil, makes the server use TLS with this configuration.
	// Set ClientAuth to tls.RequireAndVerifyClientCert and ClientCAs for
	// mutual TLS.
	TLS *tls.Config

	// Logger receives one line per finished call ("finished call", with
	// the gRPC method, code and error, and for a Read or Write the path,
	// and a Read's offset when not zero) and every recovered panic;
	// slog.Default() if nil.
	Logger *slog.Logger

	// CallLevel, if not nil, is the level of a finished call's line, by
	// its status code. If nil: go-grpc-middleware's server default
	// (logging.DefaultServerCodeToLevel), INFO for OK, NOT_FOUND,
	// CANCELED and the like, WARN for PERMISSION_DENIED,
	// FAILED_PRECONDITION and the like, ERROR for INTERNAL and the like.
	CallLevel func(codes.Code) slog.Level

	// ChunkSize is the [Service.ChunkSize]; 64 KiB if zero.
	ChunkSize int

	// WriteHandler is the [Service.WriteHandler]: it stores the files
	// that clients upload. If nil, every Write fails with UNIMPLEMENTED
	// (the edge sends ERROR 2 "uploads not supported").
	WriteHandler gateway.WriteHandler

	// ServerOptions are appended to the options NewServer uses, for
	// example grpc.MaxConcurrentStreams or a stats handler.
	ServerOptions []grpc.ServerOption
}

// NewServer returns a gRPC server that serves h (and cfg.WriteHandler, for
// uploads) as the tftpgw.v1.ContentService, with the grpc.health.v1 health service
// reporting SERVING (for the whole server and for the ContentService) and
// the reflection service.
//
// Every call goes through these interceptors, the first being the
// outermost: logging of finished calls through cfg.Logger (naming the
// path a Read or Write is for, from its first message), bearer-token
// authentication when cfg.Token is set (except for the health service),
// and panic recovery, which turns a panic in the handler or its content
// into INTERNAL and logs it with its stack; the server keeps serving.
// [Service.Write] recovers a panic in the write handler or its upload
// itself, the same way, so that it can abort the upload first.
//
// Stop the server with GracefulStop or Stop.
func NewServer(h gateway.Handler, cfg Config) *grpc.Server {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logFunc := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		logger.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	recoveryOpt := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		logger.ErrorContext(ctx, "backend: panic serving call", "panic", p, "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	logOpts := append([]logging.Option{logging.WithLogOnEvents(logging.FinishCall)}, callLevels(cfg.CallLevel)...)

	unary := []grpc.UnaryServerInterceptor{logging.UnaryServerInterceptor(logFunc, logOpts...)}
	stream := []grpc.StreamServerInterceptor{logging.StreamServerInterceptor(logFunc, logOpts...), requestFields}
	if cfg.Token != "" {
		authFunc := grpcauth.BearerAuth(cfg.Token)
		notHealth := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
			return c.Service != healthpb.Health_ServiceDesc.ServiceName
		})
		unary = append(unary, selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(authFunc), notHealth))
		stream = append(stream, selector.StreamServerInterceptor(auth.StreamServerInterceptor(authFunc), notHealth))
	}
	unary = append(unary, recovery.UnaryServerInterceptor(recoveryOpt))
	stream = append(stream, recovery.StreamServerInterceptor(recoveryOpt))

	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	opts = append(opts, cfg.ServerOptions...)

	srv := grpc.NewServer(opts...)
	tftpgwv1.RegisterContentServiceServer(srv, &Service{Handler: h, ChunkSize: cfg.ChunkSize, WriteHandler: cfg.WriteHandler, log: logger})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(tftpgwv1.ContentService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv
}
