package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/remote"
)

// backendReady is the -backend handler's Ready, for /readyz; nil without
// -backend.
var backendReady func() bool

var (
	flagBackend = flag.String("backend", "",
		"read content from the gRPC ContentService at `target`: a gRPC target (\"dns:///name:port\" balances over every address)\n"+
			"or a comma-separated list of host:port, balanced round robin; unhealthy backends (grpc.health.v1) leave the rotation")
	flagBackendHeaderTimeout = flag.Duration("backend-header-timeout", remote.DefaultHeaderTimeout,
		"budget for a backend's header, including the wait for a ready backend; past it the client gets ERROR 0 \"backend timeout\"")
	flagBackendIdleTimeout = flag.Duration("backend-idle-timeout", remote.DefaultIdleTimeout,
		"a backend stream with no message for this long counts as broken (and is resumed when it can be)")
	flagBackendResumes = flag.Int("backend-resumes", remote.DefaultMaxResumes,
		"how many times a broken backend stream is resumed at its offset (only for content with an etag); 0 for never")
	flagBackendResumeTimeout = flag.Duration("backend-resume-timeout", remote.DefaultResumeTimeout,
		"time allowed for resuming one broken transfer")
	flagBackendTLS = flag.Bool("backend-tls", false,
		"use TLS to the backend, verified with the system's roots (implied by -backend-ca and -backend-cert)")
	flagBackendCA = flag.String("backend-ca", "",
		"PEM `file` of the CA certificates that verify the backend (enables TLS)")
	flagBackendCert = flag.String("backend-cert", "",
		"PEM `file` of this gateway's client certificate, for mutual TLS (needs -backend-key)")
	flagBackendKey = flag.String("backend-key", "",
		"PEM `file` of the private key of -backend-cert")
	flagBackendServerName = flag.String("backend-server-name", "",
		"`name` expected in the backend's certificate, if not the target's host")
	flagBackendTokenFile = flag.String("backend-token-file", "",
		"`file` holding a bearer token sent as \"authorization: Bearer TOKEN\"; re-read when it changes.\n"+
			"Sent only over TLS, or in plaintext to a loopback target (readable by anyone who can capture loopback traffic)")
	flagEdgeID = flag.String("edge-id", hostname(),
		"`id` of this edge, sent to the backend with every request")
)

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// remoteHandler returns the Handler that reads content from a gRPC
// ContentService when -backend is set, or nil when it is not. stop releases
// its connections.
func remoteHandler(ctx context.Context, logger *slog.Logger) (h gateway.Handler, stop func(), err error) {
	if *flagBackend == "" {
		return nil, func() {}, nil // checkFlags refused -backend-* flags without it
	}
	tlsConf, err := backendTLS()
	if err != nil {
		return nil, func() {}, err
	}
	resumes := *flagBackendResumes
	if resumes <= 0 {
		resumes = -1 // the flag's 0 means never; the field's 0 means the default
	}
	rh, err := remote.Dial(*flagBackend, remote.Config{
		HeaderTimeout: *flagBackendHeaderTimeout,
		IdleTimeout:   *flagBackendIdleTimeout,
		MaxResumes:    resumes,
		ResumeTimeout: *flagBackendResumeTimeout,
		EdgeID:        *flagEdgeID,
		TLS:           tlsConf,
		TokenFile:     *flagBackendTokenFile,
		Logger:        logger.With("component", "backend"),
		DialOptions:   backendDialOptions(), // Prometheus client metrics (stats.go)
	})
	if err != nil {
		return nil, func() {}, fmt.Errorf("-backend: %w", err)
	}
	backendReady = rh.Ready
	logger.Info("content from backend", "target", *flagBackend, "tls", tlsConf != nil,
		"mtls", tlsConf != nil && len(tlsConf.Certificates) > 0, "token", *flagBackendTokenFile != "",
		"header_timeout", *flagBackendHeaderTimeout, "edge_id", *flagEdgeID)
	return rh, func() { rh.Close() }, nil
}

// backendTLS builds the TLS configuration from the -backend-* flags, or
// returns nil for plaintext.
func backendTLS() (*tls.Config, error) {
	return clientTLS("backend", *flagBackendTLS, *flagBackendCA, *flagBackendCert, *flagBackendKey, *flagBackendServerName)
}
