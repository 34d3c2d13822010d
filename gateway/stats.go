package gateway

import (
	"net/netip"
	"time"
)

// Outcome classifies how a session ended.
type Outcome int

const (
	// OutcomeUnknown is the zero Outcome, which no finished session has:
	// a zero SessionStats never reads as a success.
	OutcomeUnknown Outcome = iota
	// OutcomeOK: the final block was acknowledged (an ERROR from the
	// client after that still counts as success), or the client sent
	// ERROR 0 once it had been sent (PXELINUX's close, its final ACK lost).
	OutcomeOK
	// OutcomeError: the server ended the session with an ERROR (not found,
	// access, backend failure, busy, shutdown).
	OutcomeError
	// OutcomeProbe: the client ended the session right after the OACK or
	// DATA 1, as UEFI's size query and the Raspberry Pi boot ROM do.
	OutcomeProbe
	// OutcomeAborted: the client ended the session with an ERROR later on.
	OutcomeAborted
	// OutcomeTimeout: the client stopped answering.
	OutcomeTimeout

	numOutcomes = iota // outcomes, OutcomeUnknown included
)

var outcomeNames = [numOutcomes]string{"unknown", "ok", "error", "probe", "aborted", "timeout"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) && o >= 0 {
		return outcomeNames[o]
	}
	return "unknown"
}

// SessionStats describes one finished session. It is passed to
// [Server.SessionStatsFunc] once per session, including sessions refused with
// an ERROR before any data was sent.
type SessionStats struct {
	SessionID  string
	RemoteAddr netip.AddrPort
	LocalAddr  netip.AddrPort

	// Write is set for an upload (a write request, WRQ); a read's stats
	// leave it false.
	Write bool

	// Protocol is the protocol of the request. An HTTP request (see
	// [Server.ServeHTTP]) has its status in HTTPStatus and the body bytes
	// written in BytesSent and BytesAcked; its BlockSize, WindowSize,
	// options and packet counts are zero.
	Protocol   Protocol
	HTTPStatus int

	RawPath string // as Request.RawPath: as sent, less a suffix the Tracer removed
	Path    string // normalised, as requested
	// RewrittenPath is the path the handler served, when a middleware
	// (rewrite rules) changed Request.Path; empty otherwise.
	RewrittenPath string
	Mode          string

	// RequestedOptions are the options of the RRQ; NegotiatedOptions are
	// those acknowledged in the OACK (empty when no OACK was sent).
	RequestedOptions  []Option
	NegotiatedOptions []Option

	BlockSize    int
	WindowSize   int
	TransferSize int64 // content size, -1 if unknown

	Outcome Outcome

	// ErrorSent is the ERROR the server sent, if any; ErrorReceived is the
	// ERROR the client sent, if any.
	ErrorSent     *Error
	ErrorReceived *Error

	BytesSent     int64 // payload bytes of all DATA packets, retransmits included
	BytesAcked    int64 // payload bytes the client acknowledged
	PacketsSent   int64 // every packet sent: OACK, DATA and ERROR
	Retransmits   int64 // packets sent again: after a timeout, restarting a window after a gap, or at the client's timer
	DuplicateAcks int64 // ACKs that acknowledged nothing new; for an upload, DATA blocks received again

	// BytesReceived are the payload bytes of an upload's DATA packets
	// received in order, each block once, before netascii conversion.
	BytesReceived int64

	// Start is when the request reached the listening socket (the
	// kernel's receive timestamp on Linux, so time spent in a backlog
	// counts), else when the server read it. Duration and TimeToFirstData
	// are measured from it.
	Start           time.Time
	Duration        time.Duration
	TimeToFirstData time.Duration // from the RRQ to the first DATA sent; 0 if none

	cause error // the internal cause of a failure, for the log line

	// Backend describes the backend calls: from the content, if it
	// implements BackendContent, or, when the handler failed, from its
	// error, if the error (or one it wraps, see errors.As) has a method
	// BackendStats() BackendStats, as package remote's errors do. Nil
	// otherwise.
	Backend *BackendStats
}

// ServerStats are the server-wide counters passed to [Server.ServerStatsFunc]
// every [Server.StatsInterval]. Counters are totals since the server
// started; Interval-scoped deltas are the difference of two reports.
type ServerStats struct {
	Time     time.Time
	Interval time.Duration

	ActiveSessions int64
	// Sessions counts the finished sessions by outcome; an outcome no
	// session has had is absent.
	Sessions    map[Outcome]int64
	BytesSent   int64
	PacketsSent int64
	Retransmits int64
	ErrorsSent  map[ErrorCode]int64

	MalformedPackets  int64 // dropped on the listening port
	UnknownTIDPackets int64 // reaching a session's port from another transfer ID; those answered with ERROR 5 are in ErrorsSent
	WriteRequests     int64 // refused with ERROR 2: no WriteHandler, or it returned ErrUploadRefused (a path not allowed)
	DuplicateRequests int64 // RRQs ignored because their session runs
	BusyRefusals      int64 // RRQs refused with "server busy" (over a limit, or no free port in the PortRange)
	IgnoredBroadcasts int64 // requests sent to a broadcast or multicast address
	DuplicateAcks     int64 // ACKs that acknowledged nothing new, summed over finished sessions
	IntegrityFailures int64 // sessions ended by [ErrIntegrity]
	PolicyRefusals    int64 // requests Server.Admit refused with an ERROR
	PolicyDrops       int64 // requests Server.Admit dropped without a word
	PortsExhausted    int64 // RRQs refused with "server busy" because no port of Server.PortRange was free (or could be bound); also in BusyRefusals

	// Uploads counts the finished uploads (write requests) by outcome,
	// also counted in Sessions; an outcome no upload has had is absent.
	Uploads map[Outcome]int64
	// BytesReceived are the payload bytes uploads received in order.
	BytesReceived int64

	// HTTP requests (see [Server.ServeHTTP]) are counted here and in
	// BusyRefusals, PolicyRefusals, PolicyDrops and IntegrityFailures,
	// never in the TFTP counters above: HTTPActive are those running,
	// HTTPRequests the finished ones by status, HTTPBytesSent the body
	// bytes written.
	HTTPActive    int64
	HTTPRequests  map[int]int64
	HTTPBytesSent int64

	// Final is set on the last report, made when the server stops.
	Final bool
}

// BackendStats describes the backend calls behind a session's content.
type BackendStats struct {
	Target        string        // the target the edge calls (its -backend)
	Peer          string        // the replica that sent the last header; empty if none did
	HeaderLatency time.Duration // from the call to its header; zero if none came
	Resumes       int           // calls re-issued at an offset after a break
}

// BackendContent is implemented by a [Content] read from a remote
// backend; the server copies its stats into [SessionStats.Backend].
type BackendContent interface {
	Content
	BackendStats() BackendStats
}
