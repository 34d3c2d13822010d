package gateway

import (
	"errors"
	"log/slog"
	"time"
)

// Defaults used for zero-valued [Server] fields.
const (
	DefaultAddr          = ":69"
	DefaultTimeout       = time.Second
	DefaultRetries       = 5
	DefaultMaxBlockSize  = 65464
	DefaultMaxWindowSize = 64
	DefaultStatsInterval = 60 * time.Second
)

// ErrServerClosed is returned by [Server.Serve] and
// [Server.ListenAndServe] after [Server.Shutdown] or [Server.Close].
var ErrServerClosed = errors.New("gateway: server closed")

// Server is a TFTP read server. Its zero value is ready to use (it serves
// nothing until Handler is set: every request gets ERROR 1). Fields must
// not be changed after serving starts.
type Server struct {
	// Addr is the UDP address to listen on, ":69" if empty. "[::]:69"
	// and ":69" serve IPv4 and IPv6 (dual stack).
	Addr string

	// Handler answers read requests.
	Handler Handler

	// Timeout is the retransmission timeout used when the client does not
	// negotiate one (RFC 2349); 1 s if zero.
	Timeout time.Duration

	// Retries is how many times an unacknowledged packet is sent again
	// before the session is given up; 5 if zero, none if negative.
	Retries int

	// MaxBlockSize caps the blksize option (RFC 2348), 8..65464;
	// 65464 if zero.
	MaxBlockSize int

	// MaxWindowSize caps the windowsize option (RFC 7440); 64 if zero.
	MaxWindowSize int

	// Logger receives one line per finished session and the server's
	// errors; slog.Default() if nil.
	Logger *slog.Logger

	// SessionStatsFunc, if set, is called once for every session when it
	// ends, on the session's goroutine. It must not block.
	SessionStatsFunc func(SessionStats)

	// ServerStatsFunc, if set, is called every StatsInterval with the
	// server-wide counters, and once more when the server stops. It must
	// not block for long.
	ServerStatsFunc func(ServerStats)

	// StatsInterval is the period of ServerStatsFunc; 60 s if zero.
	StatsInterval time.Duration

	state serverState // guarded by its own mutex; see serve.go
}
