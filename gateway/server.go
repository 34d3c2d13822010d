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
	DefaultMinTimeout    = 20 * time.Millisecond // floor of the adaptive retransmission timeout
	DefaultRetries       = 5
	DefaultMaxBlockSize  = 65464
	DefaultMaxWindowSize = 64
	DefaultStatsInterval = 60 * time.Second

	DefaultMaxSessions          = 4096
	DefaultMaxSessionsPerClient = 256
	DefaultClientRequestRate    = 200 // read requests per second per client address
	DefaultMaxWindowMemory      = 1 << 30
)

// ErrServerClosed is returned by [Server.Serve] and
// [Server.ListenAndServe] after [Server.Shutdown] or [Server.Close].
var ErrServerClosed = errors.New("gateway: server closed")

// Server is a TFTP server. Its zero value is ready to use (it serves
// nothing until Handler is set: every read request gets ERROR 1; write
// requests get ERROR 2 until WriteHandler is set). Fields must not be
// changed after serving starts.
type Server struct {
	// Addr is the UDP address to listen on, ":69" if empty. "[::]:69"
	// and ":69" serve IPv4 and IPv6 (dual stack).
	Addr string

	// Handler answers read requests.
	Handler Handler

	// WriteHandler, if not nil, takes uploads (write requests, WRQ); nil
	// refuses every write request with ERROR 2 "read-only server". Uploads
	// are sessions like reads: the admission hook and the session limits
	// apply to them.
	WriteHandler WriteHandler

	// Timeout is the retransmission timeout used when the client does not
	// negotiate one (RFC 2349); 1 s if zero.
	Timeout time.Duration

	// MinTimeout is the floor of the adaptive retransmission timeout, used
	// when the client negotiates none: the server measures each session's
	// round-trip time and retransmits after RFC 6298's estimate, between
	// MinTimeout and Timeout, so a lost packet on a LAN costs milliseconds
	// rather than a second. 20 ms if zero; a value >= Timeout makes the
	// timer fixed at Timeout.
	MinTimeout time.Duration

	// Retries is how many times an unacknowledged packet is sent again
	// before the session is given up; 5 if zero, none if negative.
	Retries int

	// MaxBlockSize caps the blksize option (RFC 2348), 8..65464;
	// 65464 if zero.
	MaxBlockSize int

	// MaxWindowSize caps the windowsize option (RFC 7440); 64 if zero.
	MaxWindowSize int

	// RefuseOptions are options the server never grants, for firmware
	// that breaks with them (tftp-hpa's -r, dnsmasq's
	// --tftp-no-blocksize): "blksize", "timeout", "tsize" or
	// "windowsize". They are left out of the OACK, so the transfer uses
	// the RFC 1350 default for them.
	RefuseOptions []string

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

	// Tracer, if set, follows every session from its start to its end
	// (see SessionTracer); package tracing traces them with OpenTelemetry.
	// Nil costs nothing.
	Tracer SessionTracer

	// MaxSessions caps the sessions running at once; 4096 if zero, no
	// limit if negative. A request over any limit gets ERROR 0 "server
	// busy" and is counted in ServerStats.BusyRefusals.
	MaxSessions int

	// MaxSessionsPerClient caps the sessions of one client IP address;
	// 256 if zero, no limit if negative.
	MaxSessionsPerClient int

	// ClientRequestRate limits the read requests accepted from one client
	// IP address, per second, with bursts of twice as many; 200 if zero,
	// no limit if negative.
	ClientRequestRate float64

	// MaxWindowMemory bounds the bytes of the window buffers of all
	// sessions (about windowsize x blksize each, less for small files,
	// rounded up to a size class at most a quarter larger), those in use
	// and those kept for reuse; 1 GiB if zero, no limit if negative. A
	// session takes its window only once the client has answered its
	// OACK, and its OACK offers the windowsize that fits; one that cannot
	// have a single block gets ERROR 0 "server busy". Sessions that send
	// large blocks of FileServer files from the files' pages (see
	// FileServer) hold no window: their blocks are the page cache's,
	// counted by the kernel.
	MaxWindowMemory int64

	// MaxWindowMemoryPerClient bounds the window memory of one client (an
	// IPv4 address, or an IPv6 /64), so that a few clients cannot take
	// all of MaxWindowMemory; MaxWindowMemory/8 if zero, no limit if
	// negative. A client also never holds more than stays free after its
	// window is taken, so that there is always room for a newcomer.
	MaxWindowMemoryPerClient int64

	// Admit, if set, decides about every request as it arrives at a
	// listening socket, before the server spends anything on it (a
	// session slot, a socket, a goroutine): it accepts it, refuses it
	// with an ERROR, or drops it without a word. A refusal is sent from
	// the listening port and, like every reply there, is never longer than
	// the request (its message is cut), so that a spoofed source cannot
	// use it to amplify traffic; refusals and drops are counted in
	// ServerStats.PolicyRefusals and PolicyDrops. A request it accepts
	// still meets the built-in limits (MaxSessions, MaxSessionsPerClient,
	// ClientRequestRate), the default policy behind it. It runs on the
	// listener's goroutine, for every request, duplicates included: it
	// must be quick and must not block. A panic refuses the request with
	// ERROR 2 and is logged.
	Admit func(Arrival) Admission

	// SinglePort, if set, sends every reply from the listening socket and
	// keys sessions by client address and port, for clients behind NAT,
	// in containers or behind firewalls that only pass the server port.
	SinglePort bool

	// PortRange, if set, holds the ports of the sessions' own sockets
	// (their transfer IDs, RFC 1350), for firewalls and NAT that pass
	// only those, as tftpd-hpa's -R and dnsmasq's --tftp-port-range do.
	// The zero value lets the kernel pick any port. A port is reserved
	// when a request is admitted; with every port taken, the request gets
	// ERROR 0 "server busy" from the listening port, counted in
	// ServerStats.BusyRefusals and PortsExhausted. One range serves every
	// listening socket, IPv4 and IPv6: it bounds the sessions running at
	// once to its size. A port another program holds is skipped (a
	// session that can bind none is refused and counted the same way). A
	// port is free again once its session's socket is closed, and is
	// reused only after others, so that a late datagram of an old session
	// does not reach a new one.
	//
	// It has no use with SinglePort, where every reply comes from the
	// listening port. Validate refuses that, a range that starts at port
	// 0 or is inverted, and one that holds the port of Addr; Serve ignores
	// the range with SinglePort, and otherwise reads port 0 as 1 and swaps
	// inverted ends.
	PortRange PortRange

	// HTTPTimeout bounds how long an HTTP client (see [Server.ServeHTTP])
	// may take to accept each part of a response body, at most 32 KiB: a
	// client that stops reading is cut off after it, so that it cannot
	// hold a backend stream or cached content. 30 s if zero. The net/http
	// Server's own timeouts bound the rest (reading the request, idle
	// connections).
	HTTPTimeout time.Duration

	state serverState // guarded by its own mutex; see serve.go
}
