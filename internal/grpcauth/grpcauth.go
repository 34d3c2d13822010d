// Package grpcauth holds the bearer-token credentials of tftpgw's gRPC
// paths: the client side ([TokenCreds], sent with every call, re-read when
// its file changes), the server side ([BearerAuth] and
// [StreamServerOptions], go-grpc-middleware's auth interceptor with a
// constant-time comparison) and the rule that a token travels in plaintext
// only over loopback ([LoopbackTarget], [LoopbackListen]).
//
// The same rules are implemented in gateway/remote (the -backend client)
// and backend (tftp-backend's server); this package serves the stats path
// (tftpgw -stats-sink-token-file, tftp-collector -token-file).
package grpcauth

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// TokenCreds sends a bearer token with every call, as
// "authorization: Bearer TOKEN". Create it with [NewTokenCreds].
type TokenCreds struct {
	token    string // fixed token, or the last one read from file
	file     string
	insecure bool // allowed over plaintext (loopback target)

	mu      sync.Mutex
	checked time.Time
	mtime   time.Time
	size    int64
}

var _ credentials.PerRPCCredentials = (*TokenCreds)(nil)

// NewTokenCreds returns the credentials sending token, or the token held
// in file (set one of them). The file is read at once, and again when it
// changes (checked at most once a second), so that rotated tokens are
// picked up; while it is missing or empty the last good token is sent.
//
// plaintext says whether the connection has no TLS; then target must be a
// loopback target ([LoopbackTarget]), else NewTokenCreds refuses: anyone
// on the path could read the token.
func NewTokenCreds(token, file, target string, plaintext bool) (*TokenCreds, error) {
	switch {
	case token != "" && file != "":
		return nil, errors.New("grpcauth: both a token and a token file are set")
	case token == "" && file == "":
		return nil, errors.New("grpcauth: no token")
	case plaintext && !LoopbackTarget(target):
		return nil, fmt.Errorf("refusing to send a token in plaintext to %q: configure TLS, or use a loopback target", target)
	}
	t := &TokenCreds{token: token, file: file, insecure: plaintext}
	if file != "" {
		if _, err := t.get(); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t *TokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok, err := t.get()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: true
// unless the token was allowed in plaintext to a loopback target.
func (t *TokenCreds) RequireTransportSecurity() bool { return !t.insecure }

// get returns the token, reading the file again if it changed; checks are
// made at most once a second.
func (t *TokenCreds) get() (string, error) {
	if t.file == "" {
		return t.token, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if t.token != "" && now.Sub(t.checked) < time.Second {
		return t.token, nil
	}
	t.checked = now
	fi, err := os.Stat(t.file)
	if err != nil {
		if t.token != "" {
			return t.token, nil // keep the last good token
		}
		return "", fmt.Errorf("token file: %w", err)
	}
	if t.token != "" && fi.ModTime().Equal(t.mtime) && fi.Size() == t.size {
		return t.token, nil
	}
	b, err := os.ReadFile(t.file)
	if err != nil {
		if t.token != "" {
			return t.token, nil
		}
		return "", fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		if t.token != "" {
			return t.token, nil
		}
		return "", fmt.Errorf("token file %s is empty", t.file)
	}
	t.token, t.mtime, t.size = tok, fi.ModTime(), fi.Size()
	return tok, nil
}

// ReadTokenFile returns the token held in file, without surrounding
// white space; an empty file is an error.
func ReadTokenFile(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token: %s is empty", file)
	}
	return tok, nil
}

// BearerAuth returns a go-grpc-middleware auth function accepting only
// calls whose "authorization" metadata is "Bearer " + token, compared in
// constant time; other calls fail with UNAUTHENTICATED.
func BearerAuth(token string) auth.AuthFunc {
	want := []byte(token)
	return func(ctx context.Context) (context.Context, error) {
		got, err := auth.AuthFromMD(ctx, "bearer")
		if err != nil {
			return nil, err
		}
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			return nil, status.Error(codes.Unauthenticated, "invalid token")
		}
		return ctx, nil
	}
}

// ServerOptions returns the options that make a gRPC server require
// token ([BearerAuth]) on every unary and streaming call.
func ServerOptions(token string) []grpc.ServerOption {
	f := BearerAuth(token)
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(auth.UnaryServerInterceptor(f)),
		grpc.ChainStreamInterceptor(auth.StreamServerInterceptor(f)),
	}
}

// LoopbackTarget reports whether every host of a gRPC target (or of a
// comma-separated list of host:port) is a loopback address, "localhost"
// or a unix socket.
func LoopbackTarget(target string) bool {
	for t := range strings.SplitSeq(target, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if strings.HasPrefix(t, "unix:") || strings.HasPrefix(t, "unix-abstract:") {
			continue
		}
		if u, err := url.Parse(t); err == nil && u.Scheme != "" && u.Opaque == "" && (u.Host != "" || u.Path != "") {
			// scheme://[authority]/endpoint
			t = strings.TrimPrefix(u.Path, "/")
		}
		host, _, err := net.SplitHostPort(t)
		if err != nil {
			host = t
		}
		if !loopbackHost(host) {
			return false
		}
	}
	return true
}

// LoopbackListen reports whether a listen address ("127.0.0.1:7069",
// "[::1]:7069", "localhost:7069") only accepts connections from this
// machine. An empty host (":7069") listens on every interface.
func LoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	return loopbackHost(host)
}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// ServerTLS returns a gRPC server's TLS configuration: the certificate and
// key in certFile and keyFile (PEM), and, if clientCAFile is set, client
// certificates required and verified against the CAs in it (mutual TLS).
// It returns nil without certFile.
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA: no certificate in %s", clientCAFile)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return conf, nil
}
