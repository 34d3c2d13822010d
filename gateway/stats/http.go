package stats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/net/netutil"
)

// HTTPServer serves an edge's operational endpoints:
//
//   - /metrics: the [Metrics] registry;
//   - /healthz: 200 "ok" while the HTTP server runs (liveness);
//   - /readyz: 200 "ready" once [HTTPServer.SetReady](true) was called (the
//     TFTP listener is up) and until SetReady(false) or Shutdown, while
//     the check of [HTTPServer.SetReadyCheck], if any, reports true (the
//     edge can reach a content backend); 503 otherwise.
//
// It never holds more than [HTTPMaxConns] connections, so that HTTP
// clients cannot take the file descriptors the TFTP server needs: further
// connections wait in the kernel's accept queue (which holds no
// descriptor of this process) until one closes. A connection must send
// its request header within [HTTPReadHeaderTimeout] and its whole request
// within [HTTPReadTimeout], the response must be written within
// [HTTPWriteTimeout], and a keep-alive connection idle for
// [HTTPIdleTimeout] is closed.
//
// It owns its goroutine, which [HTTPServer.Shutdown] stops.
type HTTPServer struct {
	srv     *http.Server
	ln      net.Listener
	ready   atomic.Bool
	check   atomic.Pointer[func() bool]
	closing atomic.Bool
	done    chan struct{}
	err     error // of Serve, read after done
}

// Limits of the servers started by [StartHTTP] and [StartHTTPHandler].
const (
	HTTPMaxConns          = 16
	HTTPReadHeaderTimeout = 5 * time.Second
	HTTPReadTimeout       = 10 * time.Second
	HTTPWriteTimeout      = 30 * time.Second
	HTTPIdleTimeout       = 10 * time.Second
	httpMaxHeaderBytes    = 16 << 10
)

// httpLimits are the limits of an HTTP server; tests shorten them.
type httpLimits struct {
	maxConns                                                  int
	readHeaderTimeout, readTimeout, writeTimeout, idleTimeout time.Duration
}

var defaultHTTPLimits = httpLimits{HTTPMaxConns, HTTPReadHeaderTimeout, HTTPReadTimeout, HTTPWriteTimeout, HTTPIdleTimeout}

// StartHTTP listens on addr (":9100", "127.0.0.1:0", ...) and serves the
// endpoints of m in a goroutine until Shutdown. Errors of the HTTP server
// are logged to logger (slog.Default() if nil).
func StartHTTP(addr string, m *Metrics, logger *slog.Logger) (*HTTPServer, error) {
	return startHTTP(addr, m.Handler(), logger, defaultHTTPLimits)
}

// StartHTTPHandler is [StartHTTP] serving metrics, any Prometheus
// handler, at /metrics: for a collector, whose registry is not a
// [Metrics].
func StartHTTPHandler(addr string, metrics http.Handler, logger *slog.Logger) (*HTTPServer, error) {
	return startHTTP(addr, metrics, logger, defaultHTTPLimits)
}

func startHTTP(addr string, metrics http.Handler, logger *slog.Logger, lim httpLimits) (*HTTPServer, error) {
	if logger == nil {
		logger = slog.Default()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("stats: metrics listener: %w", err)
	}
	h := &HTTPServer{ln: ln, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if h.closing.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !h.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	h.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: lim.readHeaderTimeout,
		ReadTimeout:       lim.readTimeout,
		WriteTimeout:      lim.writeTimeout,
		IdleTimeout:       lim.idleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	limited := netutil.LimitListener(ln, lim.maxConns)
	go func() {
		defer close(h.done)
		if err := h.srv.Serve(limited); !errors.Is(err, http.ErrServerClosed) {
			h.err = err
			logger.Error("metrics server failed", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return h, nil
}

// Addr returns the address the server listens on.
func (h *HTTPServer) Addr() net.Addr { return h.ln.Addr() }

// SetReady sets what /readyz answers: true once the TFTP listener is up,
// false when the edge starts draining.
func (h *HTTPServer) SetReady(ready bool) { h.ready.Store(ready) }

// SetReadyCheck makes /readyz also depend on f, called for each probe: an
// edge whose content comes from backends is not ready while it can reach
// none (see remote.Handler.Ready). f must be quick and safe to call
// concurrently.
func (h *HTTPServer) SetReadyCheck(f func() bool) { h.check.Store(&f) }

// Ready reports what /readyz answers.
func (h *HTTPServer) Ready() bool {
	if !h.ready.Load() || h.closing.Load() {
		return false
	}
	if f := h.check.Load(); f != nil && *f != nil {
		return (*f)()
	}
	return true
}

// Shutdown makes /readyz and /healthz fail, then stops the server
// gracefully, waiting for running requests until ctx ends.
func (h *HTTPServer) Shutdown(ctx context.Context) error {
	h.closing.Store(true)
	err := h.srv.Shutdown(ctx)
	if err != nil {
		h.srv.Close()
	}
	<-h.done
	if err != nil {
		return fmt.Errorf("stats: metrics server shutdown: %w", err)
	}
	if h.err != nil {
		return fmt.Errorf("stats: metrics server: %w", h.err)
	}
	return nil
}
