// Package remote provides a [gateway.Handler] that reads content from a
// gRPC ContentService (tftpgw.v1, see proto/tftpgw/v1/content.proto), and
// a [gateway.WriteHandler] that stores uploads with its Write.
//
// Each TFTP read request becomes one server-streaming Read call. The call
// must deliver its header within [Config.HeaderTimeout] (2 s by default),
// otherwise the client gets ERROR 0 "backend timeout"; a backend that is
// slow, dead or not yet started never leaves a client in silence. When no
// backend is ready the call waits for one (gRPC "wait for ready") until the
// header budget runs out, so a backend that comes back is used by the next
// request without restarting anything.
//
// The target is any gRPC target ("dns:///boot.example:7000" balances over
// every address the name resolves to) or a comma-separated list of
// host:port. Calls are balanced round robin, and the standard gRPC health
// service (grpc.health.v1, service name "") takes unhealthy backends out of
// rotation; a backend that does not implement it counts as healthy.
//
// # Read-ahead and cancellation
//
// The content's Read receives messages from the stream synchronously, on
// the caller's goroutine; there is no read-ahead goroutine. Read-ahead is
// bounded by gRPC flow control: the backend may run at most one HTTP/2
// stream window (256 KiB, fixed) ahead of the reader, so a stalled TFTP
// client stalls its backend stream instead of filling the edge's memory.
// The call is cancelled when the context passed to ServeTFTP is (the
// gateway cancels it when the session ends for any reason) and when the
// content is closed.
//
// # Resuming
//
// If the stream breaks after data has arrived (status UNAVAILABLE, ABORTED
// or INTERNAL, or no message for [Config.IdleTimeout]), the content issues
// the Read again with offset set to the bytes received so far and if_match
// set to the first header's etag; the new call may land on another backend.
// The reader only sees a pause. At most [Config.MaxResumes] resumes are made
// within [Config.ResumeTimeout]. A content whose header had no etag is never
// resumed, and a backend answering a resume with FAILED_PRECONDITION or with
// another etag or size ends the transfer with an error: two versions are
// never spliced. Breaks before the header are retried by gRPC itself
// (service-config retryPolicy on UNAVAILABLE, which never replays data).
//
// # Errors
//
// A failed call is mapped to the TFTP error the client receives: a TFTPError
// in the status details as it is; NOT_FOUND as 1 "file not found";
// PERMISSION_DENIED and UNAUTHENTICATED as 2 "access violation"; a header
// that misses its budget and DEADLINE_EXCEEDED as 0 "backend timeout"; any
// other failure as 0 "backend error". The status message is logged, never
// sent to the client.
//
// # Uploads
//
// Each TFTP write request becomes one bidirectional Write call, made on the
// same connections (balancing, credentials, token, interceptors) as the
// reads. [Handler.ReceiveTFTP] sends the request (WriteStart, with the
// declared size from the tsize option) and waits for the backend's
// accepted within [Config.HeaderTimeout]; the client is acknowledged only
// then, so a refusal reaches it before it sends data. Besides the read
// mapping, a refusal with ALREADY_EXISTS becomes ERROR 6 "file already
// exists", RESOURCE_EXHAUSTED ERROR 3 "disk full or allocation exceeded"
// and UNIMPLEMENTED (a backend without uploads) ERROR 2 "uploads not
// supported". The upload's Write sends the bytes in data messages of at
// most [WriteChunkSize] bytes, from a pooled buffer; a backend that fails
// the call mid-stream fails the next Write (or the Commit) with the mapped
// error. Commit sends end (size and SHA-256) and waits for stored within
// [Config.CommitTimeout]; Abort cancels the call, and the backend discards
// the file. A Write is never retried.
package remote

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/grpcauth"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// Defaults used for zero-valued [Config] fields.
const (
	DefaultHeaderTimeout = 2 * time.Second
	DefaultIdleTimeout   = 10 * time.Second
	DefaultMaxResumes    = 3
	DefaultResumeTimeout = 5 * time.Second
	DefaultCommitTimeout = 6 * time.Second
)

// streamWindow is the fixed HTTP/2 stream flow-control window: how far a
// backend may send ahead of the TFTP session reading the content. Setting
// it also turns off gRPC's dynamic (BDP) window growth.
const streamWindow = 256 << 10

// Config configures a [Handler]. The zero value is ready to use: plaintext,
// no token, the defaults below and the host name as edge ID.
type Config struct {
	// HeaderTimeout is the budget for the header of a call, including the
	// wait for a ready backend; 2 s if zero. A TFTP client needs an answer
	// (OACK, DATA or ERROR) within a few seconds.
	HeaderTimeout time.Duration

	// IdleTimeout is how long a started stream may go without a message
	// before it is treated as broken (and resumed, if it can be); 10 s if
	// zero.
	IdleTimeout time.Duration

	// MaxResumes is how many times one transfer may be resumed after its
	// stream broke; 3 if zero, none if negative.
	MaxResumes int

	// ResumeTimeout bounds the time spent resuming one transfer, counted
	// from the first break; 5 s if zero.
	ResumeTimeout time.Duration

	// CommitTimeout is the budget of an upload's commit: from the end of
	// its data until the backend has sent stored and ended the call; 6 s
	// if zero, the time the edge's default client waits for its last
	// acknowledgement ((retries + 1) x timeout). The accepted message of
	// an upload has HeaderTimeout, like a read's header.
	CommitTimeout time.Duration

	// EdgeID is sent to the backend as edge_id; the host name if empty.
	EdgeID string

	// TLS, if not nil, makes the connections use TLS with this
	// configuration (set Certificates for mutual TLS). If nil, the
	// connections are plaintext.
	TLS *tls.Config

	// Token, if not empty, is sent with every call as
	// "authorization: Bearer <Token>". TokenFile names a file holding the
	// token instead; it is read again when it changes (checked at most
	// once a second), so that rotated tokens are picked up. Set at most
	// one of them.
	//
	// A token is only sent over TLS, except to a target whose hosts are
	// all loopback addresses (or "localhost", or a unix socket), where it
	// may be sent in plaintext: anyone able to read loopback traffic on
	// that machine can read the token.
	Token     string
	TokenFile string

	// Logger receives the handler's log lines and the gRPC call log (at
	// debug level for expected outcomes); slog.Default() if nil.
	Logger *slog.Logger

	// DialOptions are appended to the handler's own options for
	// grpc.NewClient (for example a custom dialer or interceptors).
	DialOptions []grpc.DialOption
}

// Handler is a [gateway.Handler] that reads content from a gRPC
// ContentService, and a [gateway.WriteHandler] that stores uploads there
// ([Handler.ReceiveTFTP]). Create it with [Dial]; it is safe for
// concurrent use.
type Handler struct {
	target string
	cfg    Config
	log    *slog.Logger
	conn   *grpc.ClientConn
	client tftpgwv1.ContentServiceClient
	watch  *watcher
	closed atomic.Bool

	// probed is when Ready last made a probe call (Unix nanoseconds),
	// and probing is set while one runs.
	probed  atomic.Int64
	probing atomic.Bool
	// answered is when a call last found the backend taking this
	// gateway's calls (Unix nanoseconds): with several backends, one
	// misconfigured among good ones does not make the edge not ready.
	answered atomic.Int64
}

var _ gateway.Handler = (*Handler)(nil)

// listScheme is the resolver scheme of a comma-separated target. The
// resolver is registered with the connection only (grpc.WithResolvers).
const listScheme = "tftpgw-list"

// serviceConfig balances round robin over healthy backends and lets gRPC
// retry a Read that failed with UNAVAILABLE before its first message (it
// never retries after one, so data is never replayed).
const serviceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "healthCheckConfig": {"serviceName": ""},
  "methodConfig": [{
    "name": [{"service": "tftpgw.v1.ContentService", "method": "Read"}],
    "retryPolicy": {
      "maxAttempts": 3,
      "initialBackoff": "0.05s",
      "maxBackoff": "0.5s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// Dial returns a Handler reading from the ContentService at target: a gRPC
// target such as "dns:///boot.example:7000" or "10.0.0.5:7000", or a
// comma-separated list of host:port balanced round robin. Connections are
// made in the background, so Dial does not fail because a backend is down.
// Close releases the connections.
func Dial(target string, cfg Config) (*Handler, error) {
	if strings.TrimSpace(target) == "" {
		return nil, errors.New("remote: empty target")
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = DefaultHeaderTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxResumes == 0 {
		cfg.MaxResumes = DefaultMaxResumes
	}
	if cfg.ResumeTimeout <= 0 {
		cfg.ResumeTimeout = DefaultResumeTimeout
	}
	if cfg.CommitTimeout <= 0 {
		cfg.CommitTimeout = DefaultCommitTimeout
	}
	if cfg.EdgeID == "" {
		cfg.EdgeID, _ = os.Hostname()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{target: target, cfg: cfg, log: cfg.Logger}
	h.watch = &watcher{log: h.log, target: target, state: map[string]string{}}

	grpcTarget, res, err := parseTarget(target)
	if err != nil {
		return nil, err
	}

	opts := []grpc.DialOption{
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithDisableServiceConfig(), // ignore service configs from DNS
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   5 * time.Second,
			},
			MinConnectTimeout: cfg.HeaderTimeout,
		}),
		grpc.WithInitialWindowSize(streamWindow),
		grpc.WithInitialConnWindowSize(16 * streamWindow),
		grpc.WithUserAgent("tftpgw"),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
		grpc.WithChainStreamInterceptor(
			logging.StreamClientInterceptor(slogAdapter(h.log),
				logging.WithLogOnEvents(logging.FinishCall),
				logging.WithLevels(clientCodeToLevel)),
		),
		grpc.WithChainUnaryInterceptor(
			logging.UnaryClientInterceptor(slogAdapter(h.log),
				logging.WithLogOnEvents(logging.FinishCall),
				logging.WithLevels(clientCodeToLevel)),
		),
	}
	if res != nil {
		opts = append(opts, grpc.WithResolvers(res))
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.WithTransportCredentials(&watchCreds{
			TransportCredentials: credentials.NewTLS(cfg.TLS), w: h.watch,
		}))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if cfg.Token != "" || cfg.TokenFile != "" {
		tc, err := grpcauth.NewTokenCreds(cfg.Token, cfg.TokenFile, target, cfg.TLS == nil)
		if err != nil {
			return nil, fmt.Errorf("remote: %w", err)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(tc))
	}
	opts = append(opts, cfg.DialOptions...)

	conn, err := grpc.NewClient(grpcTarget, opts...)
	if err != nil {
		return nil, fmt.Errorf("remote: %w", err)
	}
	conn.Connect() // start connecting now, not at the first request
	h.conn = conn
	h.client = tftpgwv1.NewContentServiceClient(conn)
	return h, nil
}

// Target returns the target the handler was created with.
func (h *Handler) Target() string { return h.target }

// readyWait bounds how long Ready waits for an idle connection to
// connect.
const readyWait = time.Second

// Ready reports whether a backend can take calls now: the connection has
// a ready (and, with health checking, serving) backend, and the last call
// did not find the edge misconfigured for it (the backend refused this
// gateway's token, or does not serve ContentService: then every request
// fails), unless another call was answered in the last 10 s (several
// backends, not all misconfigured). An idle connection (no call for a while, or a backend lost
// since) is asked to connect and given up to a second to tell. While a
// misconfiguration is known, Ready makes a probe call (a Read of an empty
// path, at most one a second) to see it end, since an edge out of
// rotation gets no requests that would. For readiness probes (/readyz).
func (h *Handler) Ready() bool {
	if h.closed.Load() {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyWait)
	defer cancel()
	for {
		s := h.conn.GetState()
		switch s {
		case connectivity.Ready:
			if !h.misconfigured() {
				return true
			}
			h.probe(ctx)
			return !h.misconfigured()
		case connectivity.Idle:
			h.conn.Connect()
		case connectivity.Connecting:
		default: // TransientFailure, Shutdown
			return false
		}
		if !h.conn.WaitForStateChange(ctx, s) {
			return false
		}
	}
}

// answeredRecently is how recent an answered call keeps the edge ready
// while another call found a misconfiguration (several backends, one of
// them misconfigured).
const answeredRecently = 10 * time.Second

// misconfigured reports whether the last call found the edge
// misconfigured for its backend and none was answered recently.
func (h *Handler) misconfigured() bool {
	return h.watch.any(keyAuth, keyService) && time.Since(time.Unix(0, h.answered.Load())) > answeredRecently
}

// probeEvery bounds how often Ready makes a probe call.
const probeEvery = time.Second

// probe makes one Read of an empty path, whose answer (any, short of the
// misconfigurations noteMisconfig knows) shows the backend takes this
// gateway's calls again.
func (h *Handler) probe(ctx context.Context) {
	now := time.Now().UnixNano()
	if now-h.probed.Load() < int64(probeEvery) || !h.probing.CompareAndSwap(false, true) {
		return
	}
	defer h.probing.Store(false)
	h.probed.Store(now)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := h.client.Read(ctx, &tftpgwv1.ReadRequest{SessionId: "readiness-probe"})
	if err == nil {
		_, err = s.Recv()
	}
	if ctx.Err() != nil {
		return // no answer in time: nothing learnt
	}
	if err == io.EOF {
		err = nil
	}
	h.noteMisconfig(err)
}

// noteMisconfig records what a call's error (nil: an answer) says of the
// edge's configuration for its backends: refused credentials, or a
// backend that does not serve ContentService, make every request fail
// and the edge not ready until a call is answered again.
func (h *Handler) noteMisconfig(err error) {
	switch code := status.Code(err); {
	case err != nil && !hasTFTPError(err) && code == codes.Unauthenticated:
		h.watch.bad(keyAuth, slog.LevelError, "backend refused this gateway's credentials (token)", status.Convert(err).Message())
	case err != nil && !hasTFTPError(err) && code == codes.Unimplemented:
		h.watch.bad(keyService, slog.LevelError, "backend does not serve tftpgw.v1.ContentService (is -backend the right address?)", status.Convert(err).Message())
	case code == codes.Unavailable, code == codes.DeadlineExceeded, code == codes.Canceled:
		// no backend answered: nothing learnt about the configuration
	default:
		// an answer (data, or the backend's own error for the request):
		// the backend takes this gateway's calls
		h.answered.Store(time.Now().UnixNano())
		h.watch.good(keyAuth, "backend accepts this gateway's credentials again")
		h.watch.good(keyService, "backend serves ContentService again")
	}
}

// Close closes the handler's connections. Contents still being read fail.
func (h *Handler) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	return h.conn.Close()
}

// ServeTFTP implements [gateway.Handler]: it calls Read on a backend and
// waits for the header, at most [Config.HeaderTimeout]. The returned
// content implements [gateway.InfoContent] (etag and max age from the
// header) and [gateway.BackendContent] (backend address, header latency
// and resumes, for the session's stats).
//
// A failed call's error also has a method BackendStats() (found with
// errors.As), so that the session's stats say which backend failed.
func (h *Handler) ServeTFTP(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
	c := newContent(ctx, h, req)
	if err := c.start(); err != nil {
		c.Close()
		return nil, &statsError{err: err, stats: c.BackendStats()}
	}
	return c, nil
}

// statsError is a failed call's error (an *Error) with the call's
// backend stats.
type statsError struct {
	err   error
	stats gateway.BackendStats
}

func (e *statsError) Error() string { return e.err.Error() }

// Unwrap returns the *Error.
func (e *statsError) Unwrap() error { return e.err }

// BackendStats returns the stats of the failed call.
func (e *statsError) BackendStats() gateway.BackendStats { return e.stats }

// parseTarget returns the target to pass to grpc.NewClient, with the
// manual resolver serving it when target is a comma-separated list.
func parseTarget(target string) (string, *manual.Resolver, error) {
	if !strings.Contains(target, ",") {
		return target, nil, nil
	}
	var eps []resolver.Endpoint
	for a := range strings.SplitSeq(target, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return "", nil, fmt.Errorf("remote: target %q: %w", a, err)
		}
		eps = append(eps, resolver.Endpoint{Addresses: []resolver.Address{{Addr: a}}})
	}
	if len(eps) == 0 {
		return "", nil, fmt.Errorf("remote: target %q has no address", target)
	}
	r := manual.NewBuilderWithScheme(listScheme)
	r.InitialState(resolver.State{Endpoints: eps})
	return listScheme + ":///backends", r, nil
}

func slogAdapter(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, f ...any) {
		l.Log(ctx, slog.Level(lvl), msg, f...)
	})
}

// clientCodeToLevel logs the outcomes that happen in normal operation (and
// those that the handler reports itself, once, such as a refused token) at
// debug level, so that a down backend does not log a line per session.
func clientCodeToLevel(c codes.Code) logging.Level {
	switch c {
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented:
		return logging.LevelWarn
	default:
		return logging.LevelDebug
	}
}
