package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/stats"
)

// backendDialOptions returns the dial options that instrument the client
// connections to the content backends: go-grpc-middleware's grpc_client_*
// metrics, tftpgw_backend_header_latency_seconds and
// tftpgw_backend_errors_total, which also feed the backend errors of the
// stats sink's ServerStats; and, when tracing is on, otelgrpc's spans,
// which carry the session's trace to the backend (tracing.go).
func (e *edge) backendDialOptions() []grpc.DialOption {
	return append(e.metrics.GRPCDialOptions(), e.tracing.DialOptions()...)
}

// setReady sets what /readyz answers: call it with true once the TFTP
// listener is up, and with false when draining starts.
func (e *edge) setReady(ready bool) {
	if e.http != nil {
		e.http.SetReady(ready)
	}
}

// setupStats wires -stats-sink and -metrics into srv, chaining onto its
// SessionStatsFunc and ServerStatsFunc if already set. Call it before
// serving (after dialBackend: /readyz asks the backend); stop, called
// after srv.Shutdown (which makes the last server report), flushes the
// stats to the sink and stops the HTTP server, within its context's
// deadline. ctx bounds the stop of what it started if it fails.
func (e *edge) setupStats(ctx context.Context, srv *gateway.Server) (stop func(context.Context), err error) {
	o := &e.opts.Stats
	if o.Sink.Target == "" && o.Metrics == "" {
		return func(context.Context) {}, nil
	}
	e.metrics.SetSource(srv.Stats)
	sessionFuncs := []func(gateway.SessionStats){e.metrics.ObserveSession}
	serverFuncs := []func(gateway.ServerStats){e.metrics.ObserveServer}
	var stops []func(context.Context) error

	if o.Metrics != "" {
		h, err := stats.StartHTTP(o.Metrics, e.metrics, e.logger)
		if err != nil {
			return nil, fmt.Errorf("-metrics: %w", err)
		}
		if e.backend != nil { // with -backend, not ready while no backend is
			h.SetReadyCheck(e.backend.Ready)
		}
		e.http = h
		e.logger.Info("serving metrics", "addr", h.Addr().String())
		stops = append(stops, func(ctx context.Context) error {
			e.http = nil
			return h.Shutdown(ctx)
		})
	}
	if o.Sink.Target != "" {
		p, err := e.statsPublisher()
		if err != nil {
			for _, s := range stops {
				s(ctx)
			}
			return nil, err
		}
		e.publisher = p
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
			e.logger.Warn("stopping stats", "err", err)
		}
	}, nil
}

// statsPublisher returns the publisher of -stats-sink and its credential
// flags, which follow the rules of the -backend-* flags.
func (e *edge) statsPublisher() (*stats.Publisher, error) {
	sink := &e.opts.Stats.Sink
	tlsConf, err := clientTLS("stats-sink", *sink)
	if err != nil {
		return nil, err
	}
	p, err := stats.NewPublisher(stats.PublisherConfig{
		Target:    sink.Target,
		EdgeID:    e.opts.edgeID(),
		TLS:       tlsConf,
		TokenFile: sink.TokenFile,
		Metrics:   e.metrics,
		Logger:    e.logger,
	})
	if err != nil {
		return nil, fmt.Errorf("-stats-sink: %w", err)
	}
	e.logger.Info("stats to sink", "target", sink.Target, "tls", tlsConf != nil,
		"mtls", tlsConf != nil && len(tlsConf.Certificates) > 0, "token", sink.TokenFile != "",
		"instance", p.Instance())
	return p, nil
}

// clientTLS builds a client TLS configuration from c's -NAME-tls,
// -NAME-ca, -NAME-cert, -NAME-key and -NAME-server-name, NAME being
// backend or stats-sink, or returns nil for plaintext.
func clientTLS(name string, c clientOptions) (*tls.Config, error) {
	if c.plaintext() {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("-%s-ca: %w", name, err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-%s-ca: no PEM certificate in %s", name, c.CA)
		}
	}
	if (c.Cert == "") != (c.Key == "") {
		return nil, fmt.Errorf("-%s-cert and -%s-key go together", name, name)
	}
	if c.Cert != "" {
		pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("-%s-cert: %w", name, err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return conf, nil
}
