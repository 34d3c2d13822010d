package main

import (
	"os"
	"strings"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/policy"
	"github.com/tftpgw/tftpgw/gateway/rewrite"
	"github.com/tftpgw/tftpgw/gateway/upload"
	"github.com/tftpgw/tftpgw/internal/bytesize"
)

// options is tftpgw's configuration: every flag, in groups, and what only
// the configuration file sets. parseFlags fills it; each field names its
// flag, README.md's "tftpgw flags" says what the values mean, and
// config.go maps the file's keys onto the same fields.
type options struct {
	// ConfigFile is -config: the YAML file read before the flags, which
	// override it (config.go); Check is -check.
	ConfigFile string
	Check      bool

	Serving servingOptions
	Limits  limitOptions
	Backend backendOptions
	Stats   statsOptions
	Cache   cacheOptions
	Log     logOptions
	Upload  uploadOptions
	HTTP    httpOptions
	Tracing tracingOptions

	// User is -user: once its sockets are bound, tftpgw runs as this user
	// (a name or a uid).
	User string

	// EdgeID is -edge-id: this edge's identity, sent to backends and stats
	// sinks; the host name by default.
	EdgeID string

	// Rewrite and Policy are the file's rewrite rules and policy (no
	// flag sets them).
	Rewrite []rewrite.Rule
	Policy  []policy.Rule

	// set holds the names of the flags given explicitly or by a key of the
	// file, for the rules "-backend-* needs -backend" and "-stats-sink-*
	// needs -stats-sink"; fromFile those the file set and the command
	// line did not, whose errors name the key instead (file is the file).
	set, fromFile map[string]bool
	file          *configFile
	args          []string // the command line, read again by a reload
}

// servingOptions are the flags of the TFTP service itself.
type servingOptions struct {
	Listen     string // -listen: the UDP addresses, comma-separated
	Root       string // -root: serve the regular files under this directory
	SinglePort bool   // -single-port: every reply from the listening port

	PortRange gateway.PortRange // -port-range: the ports of the sessions' sockets; zero: any

	Timeout    time.Duration // -timeout: retransmission timeout when the client negotiates none
	MinTimeout time.Duration // -min-timeout: floor of the adaptive retransmission timer
	Retries    int           // -retries: retransmissions before a session is given up; 0: none

	MaxBlksize    int       // -max-blksize: largest blksize granted
	MaxWindowsize int       // -max-windowsize: largest windowsize granted
	RefuseOptions commaList // -refuse-options: options never granted

	DrainTimeout time.Duration // -drain-timeout: on SIGINT or SIGTERM, how long sessions may finish
}

// limitOptions are the admission limits; -1 lifts one.
type limitOptions struct {
	MaxSessions              int     // -max-sessions: sessions at once
	MaxSessionsPerClient     int     // -max-sessions-per-client: sessions at once per client IP address
	ClientRate               float64 // -client-rate: read requests per second per client IP address
	MaxWindowMemory          int64   // -max-window-memory: bytes of window buffers of all sessions
	MaxWindowMemoryPerClient int64   // -max-window-memory-per-client: bytes one client may hold; 0: MaxWindowMemory / 8
}

// clientOptions are a gRPC client connection's target and credentials:
// -backend and its -backend-* flags, -stats-sink and its -stats-sink-*
// flags.
type clientOptions struct {
	Target     string // -backend, -stats-sink: the gRPC target; empty for none
	TLS        bool   // -backend-tls, -stats-sink-tls: TLS with the system's roots
	CA         string // -backend-ca, -stats-sink-ca: PEM file of the CAs that verify the server (enables TLS)
	Cert       string // -backend-cert, -stats-sink-cert: PEM file of the client certificate, for mutual TLS
	Key        string // -backend-key, -stats-sink-key: PEM file of Cert's private key
	ServerName string // -backend-server-name, -stats-sink-server-name: name expected in the server's certificate
	TokenFile  string // -backend-token-file, -stats-sink-token-file: file of a bearer token, re-read when it changes
}

// plaintext reports whether c connects without TLS: none of the flags
// that enable it is set.
func (c clientOptions) plaintext() bool {
	return !c.TLS && c.CA == "" && c.Cert == "" && c.Key == "" && c.ServerName == ""
}

// backendOptions are -backend and the flags that need it.
type backendOptions struct {
	clientOptions

	HeaderTimeout time.Duration // -backend-header-timeout: budget for a backend's header
	IdleTimeout   time.Duration // -backend-idle-timeout: a stream silent this long is broken
	Resumes       int           // -backend-resumes: resumes of a broken stream; 0: never
	ResumeTimeout time.Duration // -backend-resume-timeout: time allowed for resuming one transfer
}

// statsOptions are the stats sink and the HTTP metrics endpoint.
type statsOptions struct {
	Sink     clientOptions // -stats-sink and its -stats-sink-* flags
	Interval time.Duration // -stats-interval: period of ServerStats
	Metrics  string        // -metrics: HTTP address of /metrics, /healthz and /readyz; empty for none
}

// cacheOptions are the edge cache's.
type cacheOptions struct {
	Size   bytesize.Size // -cache-size: memory of the cache; 0 turns it off
	MaxAge time.Duration // -cache-max-age: freshness of content that has an ETag and no max age
}

// uploadOptions are the uploads' (write requests); none allowed unless
// Allow has a pattern.
type uploadOptions struct {
	Allow     commaList     // -upload-allow: glob patterns of the paths that may be uploaded
	MaxSize   bytesize.Size // -upload-max-size: largest upload; 0: no limit
	Overwrite bool          // -upload-overwrite: with -root, an upload may replace an existing file
	Path      string        // -upload-path: where an upload is stored: a template over {path}, {client_ip}, {client_ip_hex}
}

// tracingOptions are the tracing flags; the OTEL_* environment variables
// set the rest (package tracing).
type tracingOptions struct {
	// FilenameTraceparent is -trace-filename-traceparent: a W3C
	// traceparent appended to a filename is removed, and the session's
	// span continues that trace.
	FilenameTraceparent bool
}

// logOptions are the log's.
type logOptions struct {
	Format string // -log-format: text or json
	Level  string // -log-level: debug, info, warn or error
}

// commaList is a flag.Value of comma-separated words.
type commaList []string

func (l *commaList) String() string { return strings.Join(*l, ",") }

func (l *commaList) Set(s string) error {
	*l = nil
	for w := range strings.SplitSeq(s, ",") {
		if w = strings.TrimSpace(w); w != "" {
			*l = append(*l, w)
		}
	}
	return nil
}

// listenAddrs are the addresses of -listen.
func (o *options) listenAddrs() []string {
	var out []string
	for a := range strings.SplitSeq(o.Serving.Listen, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// limits are the reloadable part of the options that the admission of
// every request carries (see policy): the session limits and the
// negotiation's caps and refusals.
func (o *options) limits() gateway.Limits {
	return gateway.Limits{
		MaxSessions:          o.Limits.MaxSessions,
		MaxSessionsPerClient: o.Limits.MaxSessionsPerClient,
		ClientRequestRate:    o.Limits.ClientRate,
		MaxBlockSize:         o.Serving.MaxBlksize,
		MaxWindowSize:        o.Serving.MaxWindowsize,
		RefuseOptions:        o.Serving.RefuseOptions,
	}
}

// defaultUploadMaxSize is -upload-max-size's default: bounded, and
// larger than any switch's configuration or a core dump of a small one.
const defaultUploadMaxSize = 1 << 30

// uploadPolicy is the policy of -upload-allow, -upload-max-size and
// -upload-path.
func (o *options) uploadPolicy() *upload.Policy {
	return &upload.Policy{Allow: o.Upload.Allow, MaxSize: int64(o.Upload.MaxSize), Path: o.Upload.Path}
}

// policy compiles the policy, with the limits as its defaults.
func (o *options) policy() (*policy.Policy, error) {
	return policy.New(o.limits(), o.Policy)
}

// server returns the gateway.Server the options describe, without a
// Handler, a Logger or an admission hook (run sets them). The refused
// options are not among its fields: the admission hook (see limits)
// carries them, so that a reload can change them.
func (o *options) server() *gateway.Server {
	s := &gateway.Server{
		Addr:          o.Serving.Listen,
		Timeout:       o.Serving.Timeout,
		MinTimeout:    o.Serving.MinTimeout,
		Retries:       o.Serving.Retries,
		MaxBlockSize:  o.Serving.MaxBlksize,
		MaxWindowSize: o.Serving.MaxWindowsize,
		SinglePort:    o.Serving.SinglePort,
		PortRange:     o.Serving.PortRange,
		StatsInterval: o.Stats.Interval,

		MaxSessions:              o.Limits.MaxSessions,
		MaxSessionsPerClient:     o.Limits.MaxSessionsPerClient,
		ClientRequestRate:        o.Limits.ClientRate,
		MaxWindowMemory:          o.Limits.MaxWindowMemory,
		MaxWindowMemoryPerClient: o.Limits.MaxWindowMemoryPerClient,
	}
	if o.Serving.Retries == 0 {
		s.Retries = -1 // the flag's 0 means none; the field's 0 means the default
	}
	return s
}

// edgeID is -edge-id, or the host name when it is empty.
func (o *options) edgeID() string {
	if o.EdgeID != "" {
		return o.EdgeID
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "unknown"
}
