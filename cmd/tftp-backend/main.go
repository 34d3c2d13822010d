// Command tftp-backend is the reference tftpgw content service: it serves
// the tftpgw.v1.ContentService over gRPC from a directory, from rendered
// per-machine templates, or from an HTTP repository.
//
// Usage:
//
//	tftp-backend [flags]
//
// Sources, tried in this order for every request; a source that does not
// have the file (TFTP error 1) passes the request to the next one, any
// other error is final:
//
//	-templates DIR      render DIR's Go text/template files for per-machine
//	                    GRUB, PXELINUX or iPXE configs (see below)
//	-root DIR           serve the regular files under DIR (symbolic links
//	                    and ".." cannot leave it)
//	-http-upstream URL  stream URL/PATH from an HTTP repository, resuming
//	                    with Range requests
//
// At least one source is required (-upload-dir alone makes a backend that
// only takes uploads). A request for P uses the template
// P.tmpl; if P's base name holds a MAC address (pxelinux.cfg/01-aa-bb-...,
// grub.cfg-01-aa-bb-...), the same name with the MAC replaced by "{mac}"
// (pxelinux.cfg/01-{mac}.tmpl), then default.tmpl in P's directory.
// Templates see .ClientIP, .ClientPort, .LocalIP, .LocalPort, .MAC
// ("aa:bb:cc:dd:ee:ff"), .Path, .RawPath, .Mode and .Options.
//
// Server flags:
//
//	-listen ADDR       TCP address to serve gRPC on (default 127.0.0.1:50051)
//	-tls-cert FILE     serve TLS with this certificate (PEM) ...
//	-tls-key FILE      ... and key
//	-client-ca FILE    require client certificates signed by these CAs (mTLS)
//	-token-file FILE   require "authorization: Bearer TOKEN" with the token
//	                   in FILE (the health service is exempt)
//	-log-format FMT    text or json (default text); json writes durations
//	                   as float seconds
//	-log-level L       debug, info, warn or error (default info); each
//	                   call's line names its path (and offset) and code,
//	                   at debug when it succeeded, at info, warn or error
//	                   when it failed
//
// On a non-loopback -listen, a token needs TLS, and without -client-ca
// or -token-file it warns at start that anyone who can reach the address
// can read every file.
//
// -root flags:
//
//	-max-age D           how long edges may cache a file (default 10s)
//	-digest              send each file's SHA-256 in its header, so that the
//	                     edge checks what it received (default true;
//	                     -digest=false: never)
//	-digest-sync-max B   hash a file of at most B bytes (suffixes KiB, MiB,
//	                     GiB) before its first header; a larger one is
//	                     hashed in the background, and its headers carry
//	                     the digest once it is known (default 64MiB)
//	-digest-wait D       the longest a header waits for a digest (default
//	                     1s, within the edge's 2 s header budget); then it
//	                     goes without and the hash goes on; 0: never wait
//
// The digest of a file is computed once per version (its ETag: size,
// mtime, ctime and inode) and cached (4096 versions at most), and
// concurrent requests for a version share one hash.
//
// Upload flags (TFTP write requests, forwarded by tftpgw's Write calls):
//
//	-upload-dir DIR          take uploads and store them under DIR: each
//	                         is written to a temporary file
//	                         (.NAME.RANDOM.tftpgw-upload) and gets its name
//	                         only once every byte is on disk, so a name
//	                         never holds part of a file; symbolic links and
//	                         ".." cannot leave DIR
//	-upload-allow GLOB,...   the paths that may be uploaded (* within a path
//	                         element, ** across elements, {a,b}, [a-z]);
//	                         others get TFTP error 2 (default **: every
//	                         path, as the edge already chose what to
//	                         forward with its own -upload-allow)
//	-upload-max-size B       refuse uploads of more than B bytes (suffixes
//	                         KiB, MiB, GiB) with TFTP error 3, at once if
//	                         the client declared its size (default 0: no
//	                         limit)
//	-upload-overwrite        let an upload replace an existing file, by an
//	                         atomic rename; by default a name that exists
//	                         is refused with TFTP error 6
//	-upload-path TEMPLATE    where an upload is stored under DIR: {path},
//	                         {client_ip}, {client_ip_hex} (default {path};
//	                         {client_ip}/{path}: a directory per client)
//	-upload-serve            serve reads from DIR for the paths not found
//	                         under -root (tried right after -root), so
//	                         stored uploads can be read back; when DIR is
//	                         -root they already are
//
// It also serves grpc.health.v1 and reflection. SIGINT or SIGTERM stop it
// gracefully: running calls get 10 seconds to finish. SIGHUP is logged
// and changes nothing: there is no configuration to reload.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc/codes"

	"github.com/tftpgw/tftpgw/backend"
	"github.com/tftpgw/tftpgw/cmd/tftp-backend/internal/httpupstream"
	"github.com/tftpgw/tftpgw/cmd/tftp-backend/internal/templates"
	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/upload"
	"github.com/tftpgw/tftpgw/internal/bytesize"
	"github.com/tftpgw/tftpgw/internal/grpcauth"
	"github.com/tftpgw/tftpgw/internal/jsonlog"
)

// stopTimeout is how long a graceful stop waits for running calls.
const stopTimeout = 10 * time.Second

func main() {
	// SIGHUP first: its default action would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil, hup); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0) // -h: the flag package printed the usage
		}
		fmt.Fprintln(os.Stderr, "tftp-backend:", err)
		os.Exit(2)
	}
}

// config is the parsed command line.
type config struct {
	listen, root, templates, httpUpstream string
	tlsCert, tlsKey, clientCA, tokenFile  string
	logFormat                             string
	logLevel                              slog.Level
	maxAge                                time.Duration
	digest                                bool
	digestSyncMax                         bytesize.Size
	digestWait                            time.Duration

	uploadDir, uploadAllow, uploadPath string
	uploadMaxSize                      bytesize.Size
	uploadOverwrite, uploadServe       bool
	// uploadPolicy is made of the -upload- flags when -upload-dir is set.
	uploadPolicy *upload.Policy
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	var c config
	fs := flag.NewFlagSet("tftp-backend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:50051", "TCP `address` to serve gRPC on")
	fs.StringVar(&c.root, "root", "", "serve the files under `dir`")
	fs.StringVar(&c.templates, "templates", "", "render the Go templates in `dir` (tried before -root)")
	fs.StringVar(&c.httpUpstream, "http-upstream", "", "stream files from the HTTP repository at `url` (tried after -root)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate `file` (PEM)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS key `file` (PEM)")
	fs.StringVar(&c.clientCA, "client-ca", "", "require client certificates signed by the CAs in `file` (mTLS)")
	fs.StringVar(&c.tokenFile, "token-file", "", "require the bearer token in `file`")
	fs.StringVar(&c.logFormat, "log-format", "text", "log `format`: text or json")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error; a call that succeeded is logged at debug")
	fs.DurationVar(&c.maxAge, "max-age", 10*time.Second, "how long edges may cache a -root file without asking again (its ETag follows size, mtime, ctime and inode, so a change shows within this); 0: ask every time")
	fs.BoolVar(&c.digest, "digest", true, "send the SHA-256 of each -root file in its header (computed once per version and cached), so that edges check the bytes they receive")
	c.digestSyncMax = defaultDigestSyncMax
	fs.Var(&c.digestSyncMax, "digest-sync-max", "hash -root files of at most this many `bytes` (suffixes KiB, MiB, GiB) before their first header (waiting at most -digest-wait); larger ones are hashed in the background, their headers carrying the digest once it is known")
	fs.DurationVar(&c.digestWait, "digest-wait", defaultDigestWait, "how long a header may wait for the digest of a file under -digest-sync-max (keep it under the edges' -backend-header-timeout); then it goes without, and the hash goes on for later headers; 0: never wait")
	fs.StringVar(&c.uploadDir, "upload-dir", "", "take uploads (TFTP write requests) and store them under `dir`, each complete or not at all, never outside it")
	fs.StringVar(&c.uploadAllow, "upload-allow", "**", "comma-separated `globs` of the paths that may be uploaded (* within a path element, ** across elements, {a,b}); the default allows every path, the edge having chosen what to forward with its own -upload-allow")
	fs.Var(&c.uploadMaxSize, "upload-max-size", "refuse uploads of more than this many `bytes` (suffixes KiB, MiB, GiB) with TFTP error 3; 0: no limit")
	fs.BoolVar(&c.uploadOverwrite, "upload-overwrite", false, "let an upload replace an existing file (atomically); otherwise an existing name is refused with TFTP error 6")
	fs.StringVar(&c.uploadPath, "upload-path", "{path}", "where an upload is stored under -upload-dir: a `template` with {path}, {client_ip} and {client_ip_hex}, e.g. {client_ip}/{path}")
	fs.BoolVar(&c.uploadServe, "upload-serve", false, "also serve reads from -upload-dir, for paths not found under -root, so that stored uploads can be read back (not needed when -upload-dir is -root)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := c.parseUploadFlags(fs); err != nil {
		return nil, err
	}
	if err := c.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err) // as tftpgw says it
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case c.root == "" && c.templates == "" && c.httpUpstream == "" && c.uploadDir == "":
		return nil, errors.New("no source: set -templates, -root, -http-upstream or -upload-dir")
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return nil, errors.New("-tls-cert and -tls-key go together")
	case c.clientCA != "" && c.tlsCert == "":
		return nil, errors.New("-client-ca needs -tls-cert and -tls-key")
	case c.tokenFile != "" && c.tlsCert == "" && !grpcauth.LoopbackListen(c.listen):
		// Anyone on the path could read the token, and then read every
		// file (the rule of tftp-collector and of tftpgw's clients).
		return nil, fmt.Errorf("refusing to accept a token in plaintext on %s: set -tls-cert and -tls-key, or listen on a loopback address", c.listen)
	case c.logFormat != "text" && c.logFormat != "json":
		return nil, fmt.Errorf("-log-format %q: want text or json", c.logFormat)
	case c.maxAge < 0:
		return nil, fmt.Errorf("-max-age %v: must be 0 or more", c.maxAge)
	case c.digestWait < 0:
		return nil, fmt.Errorf("-digest-wait %v: must be 0 or more", c.digestWait)
	}
	return &c, nil
}

// run serves until ctx is cancelled. If ready is not nil it is called with
// the listening address once the server accepts calls. A value from hup
// (SIGHUP) is logged, as there is nothing to reload, and serving goes on.
func run(ctx context.Context, args []string, stderr io.Writer, ready func(net.Addr), hup <-chan os.Signal) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	var logger *slog.Logger
	if c.logFormat == "json" {
		logger = slog.New(slog.NewJSONHandler(jsonlog.Escaping(stderr), &slog.HandlerOptions{Level: c.logLevel, ReplaceAttr: jsonlog.DurationsInSeconds}))
	} else {
		logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: c.logLevel}))
	}
	grpcLog.SetLogger(logger) // gRPC's own log, in the same format

	h, closeSources, err := sources(c, logger)
	if err != nil {
		return err
	}
	defer closeSources()

	cfg := backend.Config{Logger: logger, CallLevel: callLevel}
	if c.uploadDir != "" {
		if cfg.WriteHandler, err = uploads(c, logger); err != nil {
			return err
		}
	}
	if cfg.TLS, err = grpcauth.ServerTLS(c.tlsCert, c.tlsKey, c.clientCA); err != nil {
		return err
	}
	if c.tokenFile != "" {
		if cfg.Token, err = grpcauth.ReadTokenFile(c.tokenFile); err != nil {
			return err
		}
	}

	lis, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	srv := backend.NewServer(h, cfg)
	logger.Info("tftp-backend serving", "addr", lis.Addr().String(), "templates", c.templates, "root", c.root,
		"http_upstream", c.httpUpstream, "tls", cfg.TLS != nil, "mtls", c.clientCA != "", "token", cfg.Token != "")
	if w := exposureWarning(c); w != "" {
		logger.Warn(w, "addr", lis.Addr().String())
	}
	if ready != nil {
		ready(lis.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	for serving := true; serving; {
		select {
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		case <-hup:
			// It reads its flags and files at start only: a restart
			// changes them. Not dying matters: systemd's
			// Restart=on-failure would not start it again.
			logger.Info("SIGHUP: nothing to reload; restart tftp-backend to change its flags")
		case <-ctx.Done():
			serving = false
		}
	}
	logger.Info("tftp-backend stopping")
	timer := time.AfterFunc(stopTimeout, srv.Stop)
	defer timer.Stop()
	srv.GracefulStop()
	<-errc
	return nil
}

// exposureWarning returns what to warn of when c listens where other
// machines connect and authenticates none of them (neither -client-ca nor
// -token-file; TLS alone only encrypts), or "" if there is nothing to say.
// The advice names every flag it takes: off loopback, client certificates
// and tokens both need -tls-cert and -tls-key (see parseFlags).
func exposureWarning(c *config) string {
	if grpcauth.LoopbackListen(c.listen) || c.clientCA != "" || c.tokenFile != "" {
		return ""
	}
	what := "read every file it serves"
	if c.uploadDir != "" {
		what = "read every file it serves and upload files"
	}
	advice := "set -client-ca or -token-file"
	if c.tlsCert == "" {
		advice = "set -tls-cert and -tls-key, with -client-ca or -token-file"
	}
	return "anyone who can reach this address can " + what + ": " + advice
}

// callLevel is the level of a call's "finished call" line: DEBUG when it
// succeeded (a boot storm makes thousands, and the edge logs each
// session), else go-grpc-middleware's server default: INFO for NOT_FOUND
// (a PXE client probing for its config), CANCELED, INVALID_ARGUMENT,
// UNAUTHENTICATED and ALREADY_EXISTS; WARN for PERMISSION_DENIED,
// FAILED_PRECONDITION (the file changed under a resume), DEADLINE_EXCEEDED
// and RESOURCE_EXHAUSTED; ERROR for INTERNAL, UNKNOWN, DATA_LOSS and
// UNIMPLEMENTED.
func callLevel(code codes.Code) slog.Level {
	if code == codes.OK {
		return slog.LevelDebug
	}
	return slog.Level(logging.DefaultServerCodeToLevel(code))
}

// sources builds the handler trying -templates, -root and -http-upstream
// in that order. closeAll releases them.
func sources(c *config, logger *slog.Logger) (h gateway.Handler, closeAll func(), err error) {
	var (
		hs      []gateway.Handler
		closers []func() error
	)
	closeAll = func() {
		for _, f := range closers {
			f()
		}
	}
	if c.templates != "" {
		t, err := templates.New(c.templates)
		if err != nil {
			return nil, nil, err
		}
		hs, closers = append(hs, t), append(closers, t.Close)
	}
	// dir serves the files under a directory, as -root says.
	dir := func(name, flag string) error {
		root, err := os.OpenRoot(name)
		if err != nil {
			return fmt.Errorf("%s: %w", flag, err)
		}
		files := gateway.FileServer(root)
		closers = append(closers, root.Close)
		if c.digest {
			d := newDigester(files, int64(c.digestSyncMax), c.digestWait, logger)
			// First in closers' order: the hashes stop before the root closes.
			closers = append([]func() error{func() error { d.close(); return nil }}, closers...)
			files = d.handler(files)
		}
		hs = append(hs, withMaxAge(files, c.maxAge))
		return nil
	}
	if c.root != "" {
		if err := dir(c.root, "root"); err != nil {
			closeAll()
			return nil, nil, err
		}
	}
	if c.uploadServe && !sameDir(c.uploadDir, c.root) {
		// After -root: its files win.
		if err := dir(c.uploadDir, "-upload-dir"); err != nil {
			closeAll()
			return nil, nil, err
		}
	}
	if c.httpUpstream != "" {
		u, err := httpupstream.New(c.httpUpstream, nil)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		hs = append(hs, u)
	}
	return firstFound(hs), closeAll, nil
}

// withMaxAge makes h's contents cacheable by edges for maxAge.
func withMaxAge(h gateway.Handler, maxAge time.Duration) gateway.Handler {
	if maxAge <= 0 {
		return h
	}
	return gateway.HandlerFunc(func(ctx context.Context, r *gateway.Request) (gateway.Content, error) {
		c, err := h.ServeTFTP(ctx, r)
		if err != nil {
			return c, err
		}
		ic, ok := c.(gateway.InfoContent)
		rs, seeks := c.(io.Seeker)
		if !ok || !seeks || ic.Info().ETag == "" {
			return c, nil
		}
		info := ic.Info()
		info.MaxAge = maxAge
		return &infoContent{Content: c, Seeker: rs, info: info}, nil
	})
}

// firstFound returns a handler asking each of hs in turn until one has the
// file: a handler's error other than TFTP error 1 is returned at once.
func firstFound(hs []gateway.Handler) gateway.Handler {
	if len(hs) == 1 {
		return hs[0]
	}
	if len(hs) == 0 { // -upload-dir alone: nothing to read
		return gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
			return nil, &gateway.Error{Code: gateway.ErrFileNotFound, Message: "file not found"}
		})
	}
	return gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		var err error
		for _, h := range hs {
			var c gateway.Content
			c, err = h.ServeTFTP(ctx, req)
			if err == nil || gateway.ErrorFor(err).Code != gateway.ErrFileNotFound {
				return c, err
			}
		}
		return nil, err
	})
}
