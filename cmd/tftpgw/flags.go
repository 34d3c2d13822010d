package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/cache"
	"github.com/tftpgw/tftpgw/gateway/policy"
	"github.com/tftpgw/tftpgw/gateway/remote"
	"github.com/tftpgw/tftpgw/gateway/rewrite"
	"github.com/tftpgw/tftpgw/gateway/upload"
	"github.com/tftpgw/tftpgw/internal/bytesize"
	"github.com/tftpgw/tftpgw/internal/grpcauth"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// parseFlags parses tftpgw's command line (without the program name) and,
// with -config, its configuration file, into options and checks them
// (see validate). Whatever it refuses it reports on stderr, as the flag
// package does (with the usage) for a malformed flag, or as "tftpgw: "
// and the reason; it then returns the error, or flag.ErrHelp for -h.
func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o, err := loadOptions(args, stderr)
	if err != nil && !errors.Is(err, flag.ErrHelp) && !errors.Is(err, errFlagSyntax) {
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintln(stderr, "tftpgw:", line)
		}
	}
	return o, err
}

// errFlagSyntax marks an error the flag package has reported already.
var errFlagSyntax = errors.New("invalid flags")

// loadOptions reads the options: the flags' defaults, the configuration
// file's keys over them, and the flags given over both; then validates
// them. The flag package reports a malformed flag on stderr itself.
func loadOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := o.flagSet(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", errFlagSyntax, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var fileErr error // what the file has wrong that validate does not see
	if path := o.ConfigFile; path != "" {
		// Again: the defaults, the file over them, the flags over both.
		o = &options{set: map[string]bool{}}
		fs = o.flagSet(io.Discard)
		f, err := loadConfigFile(path, o, o.set)
		if f == nil {
			return nil, err
		}
		o.file, fileErr = f, err
		if err := fs.Parse(args); err != nil {
			return nil, err // parsed once already
		}
		o.fromFile = map[string]bool{}
		for name := range o.set {
			if !given[name] {
				o.fromFile[name] = true
			}
		}
	} else {
		o.set = map[string]bool{}
	}
	for name := range given {
		o.set[name] = true
	}
	o.args = args
	// Either case, as -log-level (slog) takes it; an error quotes it as given.
	if f := strings.ToLower(o.Log.Format); f == "text" || f == "json" {
		o.Log.Format = f
	}
	if err := errors.Join(fileErr, o.nameKeys(o.validate())); err != nil {
		if o.Check {
			// -check reports every problem at once: those found by
			// opening what the options name too (checkOptions), which
			// main runs only for options that validate.
			err = errors.Join(err, checkOptions(o))
		}
		if o.file != nil {
			err = o.file.inFileOrder(err)
		}
		return nil, err
	}
	return o, nil
}

// flagSet returns the flags of tftpgw, each bound to its field of o, which
// it sets to the flag's default.
func (o *options) flagSet(stderr io.Writer) *flag.FlagSet {
	name := "tftpgw"
	if len(os.Args) > 0 {
		name = os.Args[0] // the usage line says "Usage of" the command as run
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)

	fs.StringVar(&o.ConfigFile, "config", "",
		"read the configuration from the YAML `file` (examples/tftpgw.yaml shows every key); flags given override it.\n"+
			"SIGHUP reloads its rewrite rules, policy, session limits, blksize and windowsize caps, refused options and log level")
	fs.BoolVar(&o.Check, "check", false, "check the configuration (flags and -config) and exit: 0 if it is valid, 2 if not")

	s := &o.Serving
	fs.StringVar(&s.Listen, "listen", ":69", "UDP `address`es to listen on, comma-separated; \":69\" and \"[::]:69\" alone serve IPv4 and IPv6")
	fs.StringVar(&s.Root, "root", "", "serve the files under `dir` (the embedded backend)")
	fs.DurationVar(&s.Timeout, "timeout", gateway.DefaultTimeout, "retransmission timeout when the client negotiates none")
	fs.IntVar(&s.Retries, "retries", gateway.DefaultRetries, "retransmissions of an unacknowledged packet before a session is given up")
	fs.IntVar(&s.MaxBlksize, "max-blksize", gateway.DefaultMaxBlockSize, "largest blksize granted (8..65464); lower it to your path MTU minus 32 to avoid IP fragments")
	fs.IntVar(&s.MaxWindowsize, "max-windowsize", gateway.DefaultMaxWindowSize, "largest windowsize granted (RFC 7440)")
	fs.Var(&s.RefuseOptions, "refuse-options", "`options` never granted, comma-separated: blksize, timeout, tsize, windowsize (for firmware that breaks with one)")
	fs.DurationVar(&s.MinTimeout, "min-timeout", gateway.DefaultMinTimeout, "floor of the adaptive retransmission timeout (RFC 6298 estimate from each session's round trips); >= -timeout makes the timer fixed")
	fs.BoolVar(&s.SinglePort, "single-port", false, "send every reply from the listening port, keying sessions by client address and port (for NAT, containers and firewalls)")
	fs.TextVar(&s.PortRange, "port-range", gateway.PortRange{},
		"send each session's packets from a port in `LO-HI` only (such as 50000-50999; one port: N), for firewalls and NAT that pass only those;\n"+
			"the range bounds the sessions running at once to its size (a request finding no free port gets ERROR 0 \"server busy\").\n"+
			"Empty: any port")
	fs.DurationVar(&s.DrainTimeout, "drain-timeout", 10*time.Second, "on SIGINT or SIGTERM, how long running sessions may finish before they are ended")

	l := &o.Limits
	fs.IntVar(&l.MaxSessions, "max-sessions", gateway.DefaultMaxSessions, "sessions running at once; over it requests get ERROR 0 \"server busy\" (-1: no limit)")
	fs.IntVar(&l.MaxSessionsPerClient, "max-sessions-per-client", gateway.DefaultMaxSessionsPerClient, "sessions at once per client IP address (-1: no limit)")
	fs.Float64Var(&l.ClientRate, "client-rate", gateway.DefaultClientRequestRate, "read requests per second accepted per client IP address, bursts of twice that (-1: no limit)")
	l.MaxWindowMemory, l.MaxWindowMemoryPerClient = gateway.DefaultMaxWindowMemory, 0
	fs.Var((*sizeValue)(&l.MaxWindowMemory), "max-window-memory",
		"`bytes` of window buffers for all sessions together, in use and kept for reuse (suffixes KiB, MiB, GiB; -1: no limit)")
	fs.Var((*sizeValue)(&l.MaxWindowMemoryPerClient), "max-window-memory-per-client",
		"`bytes` of window buffers one client (an IPv4 address or an IPv6 /64) may hold; 0: -max-window-memory / 8 (-1: no limit)")

	fs.StringVar(&o.Log.Format, "log-format", "text", "log format: text or json, in either case (json: durations in seconds)")
	fs.StringVar(&o.Log.Level, "log-level", "info", "log level: debug, info, warn or error")

	fs.StringVar(&o.User, "user", "",
		"after binding its sockets, run as user `name` (or uid), with its primary group and no supplementary groups;\n"+
			"needs tftpgw to start as root. (Run as root without -user, -root serves only the files anyone may read.)")
	fs.StringVar(&o.EdgeID, "edge-id", hostname(),
		"`id` of this edge, sent to the backend with every request")

	b := &o.Backend
	fs.StringVar(&b.Target, "backend", "",
		"read content from the gRPC ContentService at `target`: a gRPC target (\"dns:///name:port\" balances over every address)\n"+
			"or a comma-separated list of host:port, balanced round robin; unhealthy backends (grpc.health.v1) leave the rotation")
	fs.DurationVar(&b.HeaderTimeout, "backend-header-timeout", remote.DefaultHeaderTimeout,
		"budget for a backend's header, including the wait for a ready backend; past it the client gets ERROR 0 \"backend timeout\"")
	fs.DurationVar(&b.IdleTimeout, "backend-idle-timeout", remote.DefaultIdleTimeout,
		"a backend stream with no message for this long counts as broken (and is resumed when it can be)")
	fs.IntVar(&b.Resumes, "backend-resumes", remote.DefaultMaxResumes,
		"how many times a broken backend stream is resumed at its offset (only for content with an etag); 0 for never")
	fs.DurationVar(&b.ResumeTimeout, "backend-resume-timeout", remote.DefaultResumeTimeout,
		"time allowed for resuming one broken transfer")
	fs.BoolVar(&b.TLS, "backend-tls", false,
		"use TLS to the backend, verified with the system's roots (implied by -backend-ca and -backend-cert)")
	fs.StringVar(&b.CA, "backend-ca", "",
		"PEM `file` of the CA certificates that verify the backend (enables TLS)")
	fs.StringVar(&b.Cert, "backend-cert", "",
		"PEM `file` of this gateway's client certificate, for mutual TLS (needs -backend-key)")
	fs.StringVar(&b.Key, "backend-key", "",
		"PEM `file` of the private key of -backend-cert")
	fs.StringVar(&b.ServerName, "backend-server-name", "",
		"`name` expected in the backend's certificate, if not the target's host")
	fs.StringVar(&b.TokenFile, "backend-token-file", "",
		"`file` holding a bearer token sent as \"authorization: Bearer TOKEN\"; re-read when it changes.\n"+
			"Sent only over TLS, or in plaintext to a loopback target (readable by anyone who can capture loopback traffic)")

	st := &o.Stats
	fs.StringVar(&st.Sink.Target, "stats-sink", "", "gRPC `target` of a StatsSink (e.g. collector:7069) to stream session and server stats to; none if empty")
	fs.DurationVar(&st.Interval, "stats-interval", gateway.DefaultStatsInterval, "period of the server stats reports")
	fs.StringVar(&st.Metrics, "metrics", "", "HTTP `address` for /metrics, /healthz and /readyz; none if empty")
	fs.BoolVar(&st.Sink.TLS, "stats-sink-tls", false,
		"use TLS to the stats sink, verified with the system's roots (implied by -stats-sink-ca and -stats-sink-cert)")
	fs.StringVar(&st.Sink.CA, "stats-sink-ca", "",
		"PEM `file` of the CA certificates that verify the stats sink (enables TLS)")
	fs.StringVar(&st.Sink.Cert, "stats-sink-cert", "",
		"PEM `file` of this gateway's client certificate for the stats sink, for mutual TLS (needs -stats-sink-key)")
	fs.StringVar(&st.Sink.Key, "stats-sink-key", "",
		"PEM `file` of the private key of -stats-sink-cert")
	fs.StringVar(&st.Sink.ServerName, "stats-sink-server-name", "",
		"`name` expected in the stats sink's certificate, if not the target's host")
	fs.StringVar(&st.Sink.TokenFile, "stats-sink-token-file", "",
		"`file` holding a bearer token sent to the stats sink as \"authorization: Bearer TOKEN\"; re-read when it changes.\n"+
			"Sent only over TLS, or in plaintext to a loopback target (readable by anyone who can capture loopback traffic)")

	u := &o.Upload
	fs.Var(&u.Allow, "upload-allow",
		"accept uploads (write requests) of the paths matching these glob `patterns`, comma-separated: * within a\n"+
			"path element, ** across them (\"configs/**\", \"dumps/*.core\"); unset refuses every write request with ERROR 2.\n"+
			"Uploads go to -root, or to -backend's ContentService.Write; a policy rule of the -config file can refuse them per network")
	u.MaxSize = defaultUploadMaxSize
	fs.Var((*sizeValue)(&u.MaxSize), "upload-max-size",
		"largest upload in `bytes` (suffixes KiB, MiB, GiB); refused before the first ACK when the client declares more\n"+
			"(tsize), ended with ERROR 3 when it sends more; 0: no limit")
	fs.BoolVar(&u.Overwrite, "upload-overwrite", false,
		"with -root, let an upload replace an existing file; without it an existing file gets ERROR 6 \"file already exists\"\n"+
			"(with -backend the backend decides: tftp-backend -upload-overwrite)")
	fs.StringVar(&u.Path, "upload-path", "{path}",
		"where an upload is stored, a `template` over {path} (the path asked for), {client_ip} and {client_ip_hex}\n"+
			"(tftp-hpa's \\i and \\x): \"uploads/{client_ip}/{path}\" keeps each client's files apart")

	o.HTTP.flags(fs)
	fs.BoolVar(&o.Tracing.FilenameTraceparent, "trace-filename-traceparent", false,
		"accept a W3C traceparent appended to the filename, as Tinkerbell's smee does (\"ipxe.efi-00-TRACEID-SPANID-01\"):\n"+
			"the suffix is removed before the path is used, and the session's span continues that trace.\n"+
			"Tracing itself is set by the OTEL_* environment variables (off unless OTEL_TRACES_EXPORTER is set; see docs/operations.md)")

	o.Cache.Size = bytesize.Size(cache.DefaultMaxBytes)
	fs.Var((*sizeValue)(&o.Cache.Size), "cache-size",
		"memory for the edge cache of hot content, in `bytes` (suffixes KiB, MiB, GiB); 0 turns it off.\n"+
			"The bound is strict: it covers entries being fetched and buffers sessions still read, and content that\n"+
			"does not fit is served uncached. Files up to a quarter of it are cached, and concurrent sessions for one\n"+
			"file share a single read of it. On by default, as memory stays bounded: a fleet booting the same kernel\n"+
			"from -root, or from a backend that sends a max age, costs the source one read (see -cache-max-age)")
	fs.DurationVar(&o.Cache.MaxAge, "cache-max-age", 0,
		"serve cached content that has an etag but no max age (the files of -root, of tftp-backend -root) from memory for this long\n"+
			"without asking the source again; 0 asks on every request and reuses the cached bytes while the etag is unchanged.\n"+
			"Never applied to content whose header has a max_age present and zero (per-client content, such as tftp-backend's templates);\n"+
			"unsafe behind a backend that makes per-client content without saying so")
	return fs
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// validate rejects values the server would otherwise replace or clamp
// without a word (a zero that means "the default" to gateway.Server, a
// negative duration, a block size out of range), and flags that need
// another one, so that tftpgw never runs a configuration other than the
// one asked for. Each error names its flag; the ranges of the protocol
// are gateway.Server.Validate's.
func (o *options) validate() error {
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	limit := func(name string, v float64) error {
		if v == 0 || v < 0 && v != -1 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("-%s %v: want a positive number, or -1 for no limit", name, v)
		}
		return nil
	}
	positive := func(name string, d time.Duration) error {
		if d <= 0 {
			return fmt.Errorf("-%s %v: must be positive", name, d)
		}
		return nil
	}
	notNegative := func(name string, d time.Duration) error {
		if d < 0 {
			return fmt.Errorf("-%s %v: must be 0 or more", name, d)
		}
		return nil
	}
	check(positive("timeout", o.Serving.Timeout))
	check(positive("min-timeout", o.Serving.MinTimeout))
	check(limit("max-sessions", float64(o.Limits.MaxSessions)))
	check(limit("max-sessions-per-client", float64(o.Limits.MaxSessionsPerClient)))
	check(limit("client-rate", o.Limits.ClientRate))
	if v := o.Limits.MaxWindowMemory; v == 0 || v < -1 {
		check(fmt.Errorf("-max-window-memory %d: want a number of bytes such as 1GiB, or -1 for no limit", v))
	}
	check(notNegative("drain-timeout", o.Serving.DrainTimeout))
	check(notNegative("cache-max-age", o.Cache.MaxAge))
	check(positive("stats-interval", o.Stats.Interval))
	check(positive("backend-header-timeout", o.Backend.HeaderTimeout))
	check(positive("backend-idle-timeout", o.Backend.IdleTimeout))
	check(positive("backend-resume-timeout", o.Backend.ResumeTimeout))
	if v := o.Cache.Size; v < 0 {
		check(fmt.Errorf("-cache-size %d: want a number of bytes such as 512MiB, or 0 to turn the cache off", v))
	}
	if v := o.Upload.MaxSize; v < 0 {
		check(fmt.Errorf("-upload-max-size %d: want a number of bytes such as 16MiB, or 0 for no limit", v))
	}
	if v := o.Limits.MaxWindowMemoryPerClient; v < -1 {
		check(fmt.Errorf("-max-window-memory-per-client %d: want a number of bytes, 0 for -max-window-memory / 8, or -1 for no limit", v))
	}
	if v := o.Serving.Retries; v < 0 {
		check(fmt.Errorf("-retries %d: must be 0 (no retransmission) or more", v))
	}
	if v := o.Backend.Resumes; v < 0 {
		check(fmt.Errorf("-backend-resumes %d: must be 0 (never) or more", v))
	}
	if r := o.Serving.PortRange; !r.IsZero() {
		if o.Serving.SinglePort {
			check(fmt.Errorf("-port-range %v with -single-port: every reply then comes from the listening port; give one or the other", r))
		} else if _, p, err := net.SplitHostPort(o.Serving.Listen); err == nil {
			if n, err := strconv.ParseUint(p, 10, 16); err == nil && n != 0 && r.Contains(uint16(n)) {
				check(fmt.Errorf("-port-range %v holds port %d of -listen %s: no session could use the listening port", r, n, o.Serving.Listen))
			}
		}
	}
	// The server's ranges (gateway.Server.Validate's, but for its 0,
	// which means the default there and is refused here), each error
	// naming its flag.
	for _, f := range []struct {
		name        string
		v, min, max int
		why         string
	}{
		{"max-blksize", o.Serving.MaxBlksize, wire.MinBlockSize, wire.MaxBlockSize, "RFC 2348"},
		{"max-windowsize", o.Serving.MaxWindowsize, 1, maxWindowsize,
			"RFC 7440; block numbers are 16 bits: an ACK names one block of a window only while the window is under half their range"},
	} {
		if f.v < f.min || f.v > f.max {
			check(fmt.Errorf("-%s %d: want %d to %d (%s)", f.name, f.v, f.min, f.max, f.why))
		}
	}
	switch {
	case o.Serving.Root == "" && o.Backend.Target == "":
		check(errors.New("nothing to serve: give -root DIR or -backend TARGET"))
	case o.Serving.Root != "" && o.Backend.Target != "":
		check(errors.New("give -root or -backend, not both"))
	}
	needs := func(main string, names ...string) {
		if o.set[main] {
			return
		}
		for _, name := range names {
			if o.set[name] {
				check(fmt.Errorf("-%s needs -%s", name, main))
			}
		}
	}
	// -edge-id names the edge to stats sinks too: not listed.
	needs("backend", "backend-header-timeout", "backend-idle-timeout", "backend-resumes", "backend-resume-timeout",
		"backend-tls", "backend-ca", "backend-cert", "backend-key", "backend-server-name", "backend-token-file")
	needs("http", "http-cert", "http-key", "http-timeout", "http-max-conns")
	check(o.HTTP.validate())
	// The rule of grpcauth.NewTokenCreds, which would refuse the start.
	for _, c := range []struct {
		name string
		c    clientOptions
	}{{"backend", o.Backend.clientOptions}, {"stats-sink", o.Stats.Sink}} {
		if c.c.Target != "" && c.c.TokenFile != "" && c.c.plaintext() && !grpcauth.LoopbackTarget(c.c.Target) {
			check(fmt.Errorf("-%s-token-file: refusing to send a token in plaintext to -%s %q: give -%s-tls (or -%s-ca), or a loopback target",
				c.name, c.name, c.c.Target, c.name, c.name))
		}
	}
	needs("stats-sink", "stats-sink-tls", "stats-sink-ca", "stats-sink-cert", "stats-sink-key",
		"stats-sink-server-name", "stats-sink-token-file")
	if _, err := newLogger(io.Discard, o.Log.Format, "info", nil); err != nil {
		check(err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.Log.Level)); err != nil { // as newLogger, which says only "unknown name"
		check(fmt.Errorf("-log-level %q: want debug, info, warn or error", o.Log.Level))
	}
	for _, n := range o.Serving.RefuseOptions {
		if (&gateway.Limits{RefuseOptions: []string{n}}).Validate() != nil {
			check(fmt.Errorf("-refuse-options %s: want blksize, timeout, tsize or windowsize", n))
		}
	}
	if len(o.listenAddrs()) == 0 {
		check(errors.New("-listen: no address"))
	}
	for _, a := range o.listenAddrs() {
		if err := addrError("udp", a, ":69"); err != nil {
			check(fmt.Errorf("-listen %q: %w", a, err))
		}
	}
	if a := o.Stats.Metrics; a != "" {
		if err := addrError("tcp", a, "127.0.0.1:9369"); err != nil {
			check(fmt.Errorf("-metrics %q: %w", a, err))
		}
	}
	for _, t := range []struct {
		name, target string
		list         bool
	}{{"backend", o.Backend.Target, true}, {"stats-sink", o.Stats.Sink.Target, false}} {
		for _, err := range targetErrors(t.target, t.list) {
			check(fmt.Errorf("-%s %q: %w", t.name, t.target, err))
		}
	}
	if _, err := policy.New(gateway.Limits{}, o.Policy); err != nil { // the limits are checked above
		check(o.nameRules("policy", err))
	}
	if _, err := rewrite.New(o.Rewrite); err != nil {
		check(o.nameRules("rewrite", err))
	}
	// The upload policy, one field at a time so that an error names its
	// flag.
	for _, f := range []struct {
		name string
		p    upload.Policy
	}{
		{"upload-allow", upload.Policy{Allow: o.Upload.Allow, Path: "{path}"}},
		{"upload-path", upload.Policy{Path: o.Upload.Path}},
	} {
		if err := f.p.Validate(); err != nil {
			check(fmt.Errorf("-%s: %w", f.name, err))
		}
	}
	if o.Upload.Overwrite && o.Backend.Target != "" {
		check(errors.New("-upload-overwrite is for -root: with -backend the backend decides whether an upload may replace a file (tftp-backend has its own flag for it)"))
	}
	if len(errs) == 0 {
		// Whatever else the server checks, named by its field.
		check(o.server().Validate())
	}
	return errors.Join(errs...)
}

// maxWindowsize is the largest -max-windowsize, gateway.Server.Validate's
// (TestRangeMessagesSayWhatIsAccepted).
const maxWindowsize = 32767

// addrError is what a start would refuse in addr, an address to listen on
// over network ("udp" or "tcp"), as far as it can be known without
// binding or resolving: it must be HOST:PORT (example shows one), with a
// port from 0 to 65535 or a service name this machine knows (/etc/services).
// The host is not resolved.
func addrError(network, addr, example string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			err = errors.New(ae.Err) // without the address, which the caller names
		}
		return fmt.Errorf("%w; want HOST:PORT, such as %s", err, example)
	}
	return portError(network, port)
}

// portError refuses a port that is not a number from 0 to 65535 nor a
// service name this machine knows; an empty port is 0, any.
func portError(network, port string) error {
	if port == "" {
		return nil
	}
	if strings.Trim(port, "0123456789") == "" {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return fmt.Errorf("port %s: want 0 to 65535", port)
		}
		return nil
	}
	if _, err := net.LookupPort(network, port); err != nil {
		return fmt.Errorf("port %q: want a number from 0 to 65535 (or a service name of /etc/services): %w", port, err)
	}
	return nil
}

// targetErrors checks a gRPC target (-backend, -stats-sink) without
// resolving it. Each address of a comma-separated list (with list:
// -backend balances one itself) must be HOST:PORT. A single target is
// gRPC's to read (a scheme; a host without a port is port 443), so only
// the port of a HOST:PORT, bare or after "scheme:///", is checked.
func targetErrors(target string, list bool) []error {
	var errs []error
	if list && strings.Contains(target, ",") {
		for a := range strings.SplitSeq(target, ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			if err := addrError("tcp", a, "10.0.0.5:7070"); err != nil {
				errs = append(errs, fmt.Errorf("%q: %w", a, err))
			}
		}
		return errs
	}
	endpoint := target
	if _, rest, ok := strings.Cut(target, ":///"); ok {
		endpoint = rest
	}
	if _, port, err := net.SplitHostPort(endpoint); err == nil {
		if err := portError("tcp", port); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// sizeValue is the value of the size flags (-cache-size,
// -upload-max-size, -max-window-memory, -max-window-memory-per-client) and
// of the file's size keys: a number of bytes with an optional binary
// suffix (bytesize: 64MiB, 1GiB), or a negative one, which validate
// refuses or, by flag, takes as -1 for no limit. It prints as bytesize
// does.
type sizeValue int64

func (v *sizeValue) String() string {
	if *v < 0 {
		return strconv.FormatInt(int64(*v), 10)
	}
	b := bytesize.Size(*v)
	return b.String()
}

func (v *sizeValue) Set(s string) error {
	t, neg := strings.CutPrefix(strings.TrimSpace(s), "-")
	var b bytesize.Size
	if err := b.Set(t); err != nil {
		return fmt.Errorf("want a number of bytes such as 1073741824 or 1GiB (suffixes KiB, MiB, GiB), not %q", s)
	}
	*v = sizeValue(b)
	if neg {
		*v = -*v
	}
	return nil
}
