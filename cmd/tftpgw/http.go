package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"golang.org/x/net/netutil"

	"github.com/tftpgw/tftpgw/gateway"
)

// httpOptions are -http and the flags that need it: the same content over
// HTTP (gateway.Server.ServeHTTP).
type httpOptions struct {
	Listen   string        // -http: TCP address of the HTTP service; empty for none
	Cert     string        // -http-cert: PEM certificate chain; with Key, HTTPS
	Key      string        // -http-key: PEM private key of Cert
	Timeout  time.Duration // -http-timeout: how long a client may take for each 32 KiB of a body, and for its request's header
	MaxConns int           // -http-max-conns: connections served at once; more wait to be accepted
}

// Defaults of the HTTP service.
const (
	defaultHTTPMaxConns = 1024
	httpIdleTimeout     = 60 * time.Second
	httpMaxHeaderBytes  = 16 << 10
)

func (h *httpOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&h.Listen, "http", "",
		"also serve the content over HTTP on this TCP `address` (\":8080\"): GET and HEAD, ranges, ETag and conditional\n"+
			"requests, for iPXE chainloading and UEFI HTTP Boot; the same handler, cache, rewrite rules, policy and limits as TFTP")
	fs.StringVar(&h.Cert, "http-cert", "", "PEM `file` of the HTTP service's certificate chain: HTTPS (needs -http-key)")
	fs.StringVar(&h.Key, "http-key", "", "PEM `file` of the private key of -http-cert")
	fs.DurationVar(&h.Timeout, "http-timeout", gateway.DefaultHTTPTimeout,
		"an HTTP client must send its request's header, and take each 32 KiB of a response, within this time, or is cut off\n"+
			"(so that a client that stops reading holds no backend stream or cached content)")
	fs.IntVar(&h.MaxConns, "http-max-conns", defaultHTTPMaxConns,
		"HTTP connections served at once, idle ones included; more wait in the kernel's queue (-1: no limit)")
}

func (h *httpOptions) validate() error {
	var errs []error
	if (h.Cert == "") != (h.Key == "") {
		errs = append(errs, errors.New("-http-cert and -http-key go together"))
	}
	if h.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("-http-timeout %v: must be positive", h.Timeout))
	}
	if h.MaxConns == 0 || h.MaxConns < -1 {
		errs = append(errs, fmt.Errorf("-http-max-conns %d: want a positive number, or -1 for no limit", h.MaxConns))
	}
	if h.Listen != "" {
		if err := addrError("tcp", h.Listen, ":8080"); err != nil {
			errs = append(errs, fmt.Errorf("-http %q: %w", h.Listen, err))
		}
	}
	return errors.Join(errs...)
}

// certificate loads -http-cert and -http-key; nil without them.
func (h *httpOptions) certificate() (*tls.Certificate, error) {
	if h.Cert == "" {
		return nil, nil
	}
	c, err := tls.LoadX509KeyPair(h.Cert, h.Key)
	if err != nil {
		return nil, fmt.Errorf("-http-cert, -http-key: %w", err)
	}
	return &c, nil
}

// httpService is the HTTP side of a running edge.
type httpService struct {
	srv *http.Server
	ln  net.Listener
	tls bool
}

// listenHTTP binds -http (before tftpgw drops its privileges: port 80
// needs them) and loads the certificate; nil without -http.
func listenHTTP(o *httpOptions, h http.Handler, logger *slog.Logger) (*httpService, error) {
	if o.Listen == "" {
		return nil, nil
	}
	cert, err := o.certificate()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("-http: %w (ports below 1024 need root or CAP_NET_BIND_SERVICE)", err)
		}
		return nil, fmt.Errorf("-http: %w", err)
	}
	if o.MaxConns > 0 {
		ln = netutil.LimitListener(ln, o.MaxConns)
	}
	s := &httpService{ln: ln, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: o.Timeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}}
	if cert != nil {
		s.tls = true
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
	}
	return s, nil
}

// serve serves until shutdown; it returns nil then.
func (s *httpService) serve() error {
	var err error
	if s.tls {
		err = s.srv.ServeTLS(s.ln, "", "")
	} else {
		err = s.srv.Serve(s.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("-http: %w", err)
}

// shutdown stops taking connections and waits for the requests running
// until ctx ends, then closes every connection.
func (s *httpService) shutdown(ctx context.Context) {
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
}

// addr is the bound address, with its scheme.
func (s *httpService) url() string {
	if s.tls {
		return "https://" + s.ln.Addr().String()
	}
	return "http://" + s.ln.Addr().String()
}
