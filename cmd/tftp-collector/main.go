// Command tftp-collector is a reference StatsSink for tftpgw edges. It
// writes every event it receives as one line of protojson and, with
// -metrics, serves the events of all edges aggregated for Prometheus.
//
// Usage:
//
//	tftp-collector -listen 10.0.0.9:7069 -tls-cert c.pem -tls-key k.pem -client-ca edges-ca.pem \
//	    -token-file token -out /var/log/tftpgw/stats.jsonl -metrics 127.0.0.1:9169
//
// Point the edges at it with tftpgw -stats-sink HOST:7069 and the
// -stats-sink-* credential flags. It listens on 127.0.0.1:7069 by default;
// on another address, use TLS (-tls-cert, -tls-key) with mutual TLS
// (-client-ca) or a token (-token-file, which it refuses to accept in
// plaintext except on a loopback address), else anyone who can reach it
// can write events, which it warns of at start.
//
// It drops the copies of events an edge sent again and counts the gaps in
// each edge's sequence. At most -max-edges edges get series of their own
// in /metrics, whose label values come from fixed sets, so the series
// stay bounded whatever edges send.
//
// SIGINT or SIGTERM stop it gracefully: it waits up to -grace for the
// edges to close their streams, then breaks them. SIGHUP reopens the -out
// file at its path, for logrotate: once the file is renamed, the events
// that follow go to a new file at the path (if that cannot be opened, it
// logs an error and goes on writing to the old one).
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

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tftpgw/tftpgw/gateway/stats"
	"github.com/tftpgw/tftpgw/gateway/stats/collector"
	"github.com/tftpgw/tftpgw/internal/grpcauth"
	"github.com/tftpgw/tftpgw/internal/jsonlog"
)

func main() {
	// SIGHUP first: its default action would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	c, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0) // -h: the flag package printed the usage
		}
		fmt.Fprintln(os.Stderr, "tftp-collector:", err)
		os.Exit(2)
	}
	logger := newLogger(os.Stderr, c.logFormat, c.logLevel)
	grpcLog.SetLogger(logger)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, logger, c, hup); err != nil {
		logger.Error("tftp-collector failed", "err", err)
		os.Exit(1)
	}
}

// config is the parsed command line.
type config struct {
	listen, out, metrics                 string
	expiry, grace                        time.Duration
	maxEdges                             int
	tlsCert, tlsKey, clientCA, tokenFile string
	logFormat                            string
	logLevel                             slog.Level
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	var c config
	fs := flag.NewFlagSet("tftp-collector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:7069", "gRPC `address` to receive stats on")
	fs.StringVar(&c.out, "out", "-", "`file` to append events to as protojson lines; - for stdout")
	fs.StringVar(&c.metrics, "metrics", "", "HTTP `address` for /metrics, /healthz and /readyz; none if empty")
	fs.DurationVar(&c.expiry, "edge-expiry", collector.DefaultEdgeExpiry, "forget the metrics of an edge silent for this `duration`")
	fs.DurationVar(&c.grace, "grace", 5*time.Second, "on SIGINT/SIGTERM, wait this `duration` for edges to close their streams")
	fs.IntVar(&c.maxEdges, "max-edges", collector.DefaultMaxEdges, "edges given series of their own in /metrics; the events of further edges are written and counted only")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate `file` (PEM)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS key `file` (PEM)")
	fs.StringVar(&c.clientCA, "client-ca", "", "require client certificates signed by the CAs in `file` (mTLS)")
	fs.StringVar(&c.tokenFile, "token-file", "", "require the bearer token in `file` (\"authorization: Bearer TOKEN\")")
	fs.StringVar(&c.logFormat, "log-format", "text", "log `format`: text or json (json: durations in seconds)")
	fs.TextVar(&c.logLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case c.expiry <= 0:
		return nil, fmt.Errorf("-edge-expiry %v: must be positive", c.expiry)
	case c.grace < 0:
		return nil, fmt.Errorf("-grace %v: must be 0 or more", c.grace)
	case c.maxEdges <= 0:
		return nil, fmt.Errorf("-max-edges %d: must be positive", c.maxEdges)
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return nil, errors.New("-tls-cert and -tls-key go together")
	case c.clientCA != "" && c.tlsCert == "":
		return nil, errors.New("-client-ca needs -tls-cert and -tls-key")
	case c.tokenFile != "" && c.tlsCert == "" && !grpcauth.LoopbackListen(c.listen):
		return nil, fmt.Errorf("refusing to accept a token in plaintext on %s: set -tls-cert and -tls-key, or listen on a loopback address", c.listen)
	case c.logFormat != "text" && c.logFormat != "json":
		return nil, fmt.Errorf("-log-format %q: want text or json", c.logFormat)
	}
	return &c, nil
}

func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		opts.ReplaceAttr = jsonlog.DurationsInSeconds
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// run serves until ctx ends. A value from hup (SIGHUP) reopens the -out
// file (see outFile).
func run(ctx context.Context, logger *slog.Logger, c *config, hup <-chan os.Signal) error {
	opts, err := serverOptions(c)
	if err != nil {
		return err
	}
	var (
		w   io.Writer = os.Stdout
		out *outFile  // nil for stdout
	)
	if c.out != "-" {
		if out, err = openOut(c.out); err != nil {
			return err
		}
		defer out.Close() // after the streams stopped (srv.Stop below)
		w = out
	}
	sink := collector.New(collector.Config{Out: w, EdgeExpiry: c.expiry, MaxEdges: c.maxEdges, Logger: logger})

	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := collector.Serve(ln, sink, opts...)
	logger.Info("collecting stats", "addr", srv.Addr().String(), "out", c.out,
		"tls", c.tlsCert != "", "mtls", c.clientCA != "", "token", c.tokenFile != "")
	if w := exposureWarning(c); w != "" {
		logger.Warn(w, "addr", srv.Addr().String())
	}

	var hs *stats.HTTPServer
	if c.metrics != "" {
		if hs, err = stats.StartHTTPHandler(c.metrics, sink.MetricsHandler(), logger); err != nil {
			srv.Stop(ctx)
			return fmt.Errorf("-metrics: %w", err)
		}
		hs.SetReady(true)
		logger.Info("serving metrics", "addr", hs.Addr().String())
	}

	for serving := true; serving; {
		select {
		case <-hup:
			if out == nil {
				logger.Info("SIGHUP: nothing to reopen: the events go to stdout")
			} else {
				out.reopen(logger)
			}
		case <-ctx.Done():
			serving = false
		}
	}
	logger.Info("stopping")
	sctx, cancel := context.WithTimeout(context.Background(), c.grace)
	defer cancel()
	err = srv.Stop(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		logger.Warn("edges did not close their streams in time; broke them", "grace", c.grace)
		err = nil
	}
	if hs != nil {
		if herr := hs.Shutdown(sctx); herr != nil {
			err = errors.Join(err, herr)
		}
	}
	return err
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
	if c.tlsCert == "" {
		return "accepting stats from anyone who can reach this address: set -tls-cert and -tls-key, with -client-ca or -token-file"
	}
	return "accepting stats from anyone who can reach this address: set -client-ca or -token-file"
}

// serverOptions returns the gRPC server's credentials and authentication:
// TLS with -tls-cert, client certificates with -client-ca, the bearer
// token of -token-file.
func serverOptions(c *config) ([]grpc.ServerOption, error) {
	var opts []grpc.ServerOption
	conf, err := grpcauth.ServerTLS(c.tlsCert, c.tlsKey, c.clientCA)
	if err != nil {
		return nil, err
	}
	if conf != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(conf)))
	}
	if c.tokenFile != "" {
		tok, err := grpcauth.ReadTokenFile(c.tokenFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpcauth.ServerOptions(tok)...)
	}
	return opts, nil
}
