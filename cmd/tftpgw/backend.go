package main

import (
	"fmt"

	"github.com/tftpgw/tftpgw/gateway/remote"
)

// dialBackend sets e.backend to the Handler that reads content from the
// gRPC ContentService of -backend, configured by the -backend-* flags.
func (e *edge) dialBackend() error {
	b := &e.opts.Backend
	tlsConf, err := clientTLS("backend", b.clientOptions)
	if err != nil {
		return err
	}
	resumes := b.Resumes
	if resumes <= 0 {
		resumes = -1 // the flag's 0 means never; the field's 0 means the default
	}
	rh, err := remote.Dial(b.Target, remote.Config{
		HeaderTimeout: b.HeaderTimeout,
		IdleTimeout:   b.IdleTimeout,
		MaxResumes:    resumes,
		ResumeTimeout: b.ResumeTimeout,
		EdgeID:        e.opts.EdgeID,
		TLS:           tlsConf,
		TokenFile:     b.TokenFile,
		Logger:        e.logger.With("component", "backend"),
		DialOptions:   e.backendDialOptions(), // Prometheus client metrics (stats.go)
	})
	if err != nil {
		return fmt.Errorf("-backend: %w", err)
	}
	e.backend = rh
	e.logger.Info("content from backend", "target", b.Target, "tls", tlsConf != nil,
		"mtls", tlsConf != nil && len(tlsConf.Certificates) > 0, "token", b.TokenFile != "",
		"header_timeout", b.HeaderTimeout, "edge_id", e.opts.EdgeID)
	return nil
}
