package collector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// Server serves a [Sink] over gRPC on one listener. It owns the goroutine
// that serves, which [Server.Stop] ends.
type Server struct {
	gs   *grpc.Server
	ln   net.Listener
	done chan struct{}
	err  error // of Serve, read after done
}

// Serve serves sink on ln in a new goroutine. The options are added to the
// gRPC server's; by default it lets edges send keepalive pings as often as
// every 10 s, even without a stream. Without options the server accepts
// stats from anyone who can reach ln: add grpc.Creds for TLS (with client
// certificates required, for mutual TLS) and an authentication interceptor
// for a bearer token, as tftp-collector does.
func Serve(ln net.Listener, sink *Sink, opts ...grpc.ServerOption) *Server {
	opts = append([]grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}, opts...)
	s := &Server{gs: grpc.NewServer(opts...), ln: ln, done: make(chan struct{})}
	tftpgwv1.RegisterStatsSinkServer(s.gs, sink)
	go func() {
		defer close(s.done)
		if err := s.gs.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.err = err
		}
	}()
	return s
}

// Addr returns the listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Stop stops accepting streams and waits for the open ones to be closed by
// their edges until ctx ends; then it breaks those left. Events already
// received are written either way. It returns the error Serve failed
// with, if any, or ctx's error if streams had to be broken.
func (s *Server) Stop(ctx context.Context) error {
	stopped := make(chan struct{})
	go func() {
		s.gs.GracefulStop()
		close(stopped)
	}()
	var err error
	select {
	case <-stopped:
	case <-ctx.Done():
		err = fmt.Errorf("collector: streams still open: %w", ctx.Err())
		s.gs.Stop()
		<-stopped
	}
	<-s.done
	if s.err != nil {
		return fmt.Errorf("collector: serve: %w", s.err)
	}
	return err
}
