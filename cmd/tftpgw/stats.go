package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"

	"google.golang.org/grpc"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/stats"
)

var (
	flagStatsSink     = flag.String("stats-sink", "", "gRPC `target` of a StatsSink (e.g. collector:7069) to stream session and server stats to; none if empty")
	flagStatsInterval = flag.Duration("stats-interval", gateway.DefaultStatsInterval, "period of the server stats reports")
	flagMetrics       = flag.String("metrics", "", "HTTP `address` for /metrics, /healthz and /readyz; none if empty")

	flagStatsSinkTLS = flag.Bool("stats-sink-tls", false,
		"use TLS to the stats sink, verified with the system's roots (implied by -stats-sink-ca and -stats-sink-cert)")
	flagStatsSinkCA = flag.String("stats-sink-ca", "",
		"PEM `file` of the CA certificates that verify the stats sink (enables TLS)")
	flagStatsSinkCert = flag.String("stats-sink-cert", "",
		"PEM `file` of this gateway's client certificate for the stats sink, for mutual TLS (needs -stats-sink-key)")
	flagStatsSinkKey = flag.String("stats-sink-key", "",
		"PEM `file` of the private key of -stats-sink-cert")
	flagStatsSinkServerName = flag.String("stats-sink-server-name", "",
		"`name` expected in the stats sink's certificate, if not the target's host")
	flagStatsSinkTokenFile = flag.String("stats-sink-token-file", "",
		"`file` holding a bearer token sent to the stats sink as \"authorization: Bearer TOKEN\"; re-read when it changes.\n"+
			"Sent only over TLS, or in plaintext to a loopback target (readable by anyone who can capture loopback traffic)")
)

// statsSinkFlags are the flags that need -stats-sink (see checkFlags).
var statsSinkFlags = []string{"stats-sink-tls", "stats-sink-ca", "stats-sink-cert", "stats-sink-key",
	"stats-sink-server-name", "stats-sink-token-file"}

// edgeMetrics is the edge's Prometheus instrumentation. It exists before
// the flags are parsed so that the backend's client connection can take
// its interceptors (backendDialOptions) whatever the order of setup.
var edgeMetrics = stats.NewMetrics()

// statsHTTP is the -metrics server while it runs, for setStatsReady.
var statsHTTP atomic.Pointer[stats.HTTPServer]

// backendDialOptions returns the dial options that instrument the client
// connections to the content backends: go-grpc-middleware's grpc_client_*
// metrics, tftpgw_backend_header_latency_seconds and
// tftpgw_backend_errors_total, which also feed the backend errors of the
// stats sink's ServerStats.
func backendDialOptions() []grpc.DialOption { return edgeMetrics.GRPCDialOptions() }

// setStatsReady sets what /readyz answers: call it with true once the TFTP
// listener is up, and with false when draining starts.
func setStatsReady(ready bool) {
	if h := statsHTTP.Load(); h != nil {
		h.SetReady(ready)
	}
}

// edgeID is the -edge-id flag if it is defined and set, else the host name.
func edgeID() string {
	if f := flag.Lookup("edge-id"); f != nil && f.Value.String() != "" {
		return f.Value.String()
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "unknown"
}

// setupStats wires -stats-sink, -stats-interval and -metrics into srv,
// chaining onto SessionStatsFunc and ServerStatsFunc if already set. Call
// it before serving; stop, called after srv.Shutdown (which makes the last
// server report), flushes the stats to the sink and stops the HTTP server,
// within its context's deadline.
func setupStats(ctx context.Context, srv *gateway.Server, logger *slog.Logger) (stop func(context.Context), err error) {
	if *flagStatsInterval <= 0 {
		return nil, fmt.Errorf("-stats-interval: must be positive, not %v", *flagStatsInterval)
	}
	srv.StatsInterval = *flagStatsInterval
	grpcLog.SetLogger(logger) // gRPC's own log, in the server's format
	if *flagStatsSink == "" && *flagMetrics == "" {
		return func(context.Context) {}, nil
	}
	edgeMetrics.SetSource(srv.Stats)
	sessionFuncs := []func(gateway.SessionStats){edgeMetrics.ObserveSession}
	serverFuncs := []func(gateway.ServerStats){edgeMetrics.ObserveServer}
	var stops []func(context.Context) error

	if *flagMetrics != "" {
		h, err := stats.StartHTTP(*flagMetrics, edgeMetrics, logger)
		if err != nil {
			return nil, fmt.Errorf("-metrics: %w", err)
		}
		if backendReady != nil { // with -backend, not ready while no backend is
			h.SetReadyCheck(backendReady)
		}
		statsHTTP.Store(h)
		logger.Info("serving metrics", "addr", h.Addr().String())
		stops = append(stops, func(ctx context.Context) error {
			statsHTTP.Store(nil)
			return h.Shutdown(ctx)
		})
	}
	if *flagStatsSink != "" {
		p, err := statsPublisher(logger)
		if err != nil {
			for _, s := range stops {
				s(ctx)
			}
			return nil, err
		}
		sessionFuncs = append(sessionFuncs, p.SessionStats)
		serverFuncs = append(serverFuncs, p.ServerStats)
		// The publisher is stopped first, while /metrics still shows its
		// drops.
		stops = append([]func(context.Context) error{p.Close}, stops...)
	}

	if prev := srv.SessionStatsFunc; prev != nil {
		sessionFuncs = append([]func(gateway.SessionStats){prev}, sessionFuncs...)
	}
	if prev := srv.ServerStatsFunc; prev != nil {
		serverFuncs = append([]func(gateway.ServerStats){prev}, serverFuncs...)
	}
	srv.SessionStatsFunc = func(s gateway.SessionStats) {
		for _, f := range sessionFuncs {
			f(s)
		}
	}
	srv.ServerStatsFunc = func(s gateway.ServerStats) {
		for _, f := range serverFuncs {
			f(s)
		}
	}
	return func(ctx context.Context) {
		var errs []error
		for _, s := range stops {
			errs = append(errs, s(ctx))
		}
		if err := errors.Join(errs...); err != nil {
			logger.Warn("stopping stats", "err", err)
		}
	}, nil
}

// statsPublisher returns the publisher of -stats-sink and its credential
// flags, which follow the rules of the -backend-* flags.
func statsPublisher(logger *slog.Logger) (*stats.Publisher, error) {
	tlsConf, err := clientTLS("stats-sink", *flagStatsSinkTLS, *flagStatsSinkCA, *flagStatsSinkCert, *flagStatsSinkKey, *flagStatsSinkServerName)
	if err != nil {
		return nil, err
	}
	p, err := stats.NewPublisher(stats.PublisherConfig{
		Target:    *flagStatsSink,
		EdgeID:    edgeID(),
		TLS:       tlsConf,
		TokenFile: *flagStatsSinkTokenFile,
		Metrics:   edgeMetrics,
		Logger:    logger,
	})
	if err != nil {
		return nil, fmt.Errorf("-stats-sink: %w", err)
	}
	logger.Info("stats to sink", "target", *flagStatsSink, "tls", tlsConf != nil,
		"mtls", tlsConf != nil && len(tlsConf.Certificates) > 0, "token", *flagStatsSinkTokenFile != "",
		"instance", p.Instance())
	return p, nil
}

// clientTLS builds a client TLS configuration from the flags -NAME-tls,
// -NAME-ca, -NAME-cert, -NAME-key and -NAME-server-name, as backendTLS
// does for -backend, or returns nil for plaintext.
func clientTLS(name string, on bool, ca, cert, key, serverName string) (*tls.Config, error) {
	if !on && ca == "" && cert == "" && key == "" && serverName == "" {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("-%s-ca: %w", name, err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-%s-ca: no PEM certificate in %s", name, ca)
		}
	}
	if (cert == "") != (key == "") {
		return nil, fmt.Errorf("-%s-cert and -%s-key go together", name, name)
	}
	if cert != "" {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("-%s-cert: %w", name, err)
		}
		conf.Certificates = []tls.Certificate{c}
	}
	return conf, nil
}
