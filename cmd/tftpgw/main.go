// Command tftpgw is the TFTP edge server: it answers TFTP read requests and
// serves a directory (-root), or content from a gRPC ContentService
// (-backend).
//
// Usage:
//
//	tftpgw -listen :69 -root /srv/tftp
//	tftpgw -listen :69 -backend dns:///content.example:50051
//
// See README.md for every flag.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/cache"
	"github.com/tftpgw/tftpgw/gateway/remote"
	"github.com/tftpgw/tftpgw/gateway/stats"
	"github.com/tftpgw/tftpgw/gateway/tracing"
	"github.com/tftpgw/tftpgw/gateway/upload"
	"github.com/tftpgw/tftpgw/internal/jsonlog"
)

func main() {
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		os.Exit(2) // parseFlags reported it
	}
	if opts.Check {
		if err := checkOptions(opts); err != nil {
			fmt.Fprintln(os.Stderr, "tftpgw:", err)
			os.Exit(2)
		}
		fmt.Println("tftpgw: configuration OK")
		os.Exit(0)
	}
	level := new(slog.LevelVar) // a reload may change it
	logger, err := newLogger(os.Stderr, opts.Log.Format, opts.Log.Level, level)
	if err != nil { // validate refused these already
		fmt.Fprintln(os.Stderr, "tftpgw:", err)
		os.Exit(2)
	}
	installGRPCLog(logger) // before anything of gRPC runs
	tuneGC(os.Getenv, os.ReadFile, opts.Limits.MaxWindowMemory, int64(opts.Cache.Size), logger)
	svcUser, err := lookupServiceUser(opts.User)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tftpgw:", err)
		os.Exit(2)
	}
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stopSignals) // a second signal kills the process
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	if err := run(ctx, opts, svcUser, logger, &reloader{signals: hup, level: level}); err != nil {
		msg := "tftpgw did not start"
		if errors.Is(err, errWhileServing) {
			msg = "tftpgw stopped"
		}
		logger.Error(msg, "err", err)
		os.Exit(1)
	}
}

// listen opens a UDP socket, explaining a refused privileged port. One of
// several (alone is false) listens on its address's family only, so that
// "0.0.0.0:69" and "[::]:69" can be listened on together.
func listen(addr string, alone bool) (net.PacketConn, error) {
	network := "udp"
	if host, _, err := net.SplitHostPort(addr); err == nil && !alone {
		if ip, err := netip.ParseAddr(host); err == nil {
			network = "udp6"
			if ip.Is4() {
				network = "udp4"
			}
		}
	}
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("-listen %s: %w: ports below 1024 need CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE; or setcap cap_net_bind_service=+ep tftpgw), or root (then give -user)", addr, err)
		}
		return nil, fmt.Errorf("-listen %s: %w", addr, err)
	}
	return pc, nil
}

// newLogger returns the logger of -log-format and -log-level. If lv is
// not nil, it is set to the level and the logger follows it (a reload
// changes it).
func newLogger(w io.Writer, format, level string, lv *slog.LevelVar) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	var leveler slog.Leveler = l
	if lv != nil {
		lv.Set(l)
		leveler = lv
	}
	opts := &slog.HandlerOptions{Level: leveler}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		opts.ReplaceAttr = jsonlog.DurationsInSeconds // seconds, not nanoseconds
		// Client-sent names and messages: no raw controls or bidi overrides.
		return slog.New(slog.NewJSONHandler(jsonlog.Escaping(w), opts)), nil
	}
	return nil, fmt.Errorf("-log-format: want text or json, not %q", format)
}

// edge is a running tftpgw: what run makes from the options, owned here
// and passed explicitly rather than kept in package variables.
type edge struct {
	opts   *options
	logger *slog.Logger

	// metrics is the edge's Prometheus instrumentation. It exists from the
	// start, whatever the flags: the backend's client connection takes its
	// interceptors, which also count the backend errors of ServerStats.
	metrics *stats.Metrics

	backend   *remote.Handler   // -backend's handler; nil without
	root      *servedRoot       // -root's content, checked again as -user; nil without
	cache     *cache.Handler    // the edge cache; nil with -cache-size 0
	http      *stats.HTTPServer // -metrics while it serves; nil otherwise
	publisher *stats.Publisher  // -stats-sink's publisher; nil without
	tracing   *tracing.Tracing  // OpenTelemetry, from OTEL_*; nil or off without (tracing.go)

	// uploads is set when tftpgw started with -upload-allow: the server
	// then takes write requests (a reload changes what it allows).
	uploads bool
}

func newEdge(opts *options, logger *slog.Logger) *edge {
	return &edge{opts: opts, logger: logger, metrics: stats.NewMetrics()}
}

// handler returns the Handler that serves the content: -backend's or
// -root's, behind the edge cache.
func (e *edge) handler() (gateway.Handler, error) {
	var h gateway.Handler
	if e.opts.Backend.Target != "" {
		if err := e.dialBackend(); err != nil {
			return nil, err
		}
		h = e.backend
	} else {
		root, err := openServedRoot(e.opts.Serving.Root, e.logger)
		if err != nil {
			return nil, fmt.Errorf("-root: %w", err)
		}
		e.root = root
		h = root
		e.logger.Info("content from directory", "root", e.opts.Serving.Root)
	}
	return e.wrapCache(h), nil
}

// uploadStore is where uploads are stored with the options of o: -root's
// directory (create-only unless -upload-overwrite), or -backend's
// ContentService.Write.
func (e *edge) uploadStore(o *options) gateway.WriteHandler {
	if e.backend != nil {
		return e.backend
	}
	return &upload.Dir{Root: e.opts.Serving.Root, Overwrite: o.Upload.Overwrite, Logger: e.logger}
}

// uploadsTo names where uploads go, for the log.
func (e *edge) uploadsTo() string {
	if e.backend != nil {
		return "backend " + e.opts.Backend.Target
	}
	return "directory " + e.opts.Serving.Root
}

// close releases what handler made, once the server has shut down: the
// cache stops the fetches still running, then the root and the backend's
// connections are closed.
func (e *edge) close() {
	if e.cache != nil {
		e.cache.Close()
	}
	if e.root != nil {
		e.root.Close()
	}
	if e.backend != nil {
		e.backend.Close()
	}
	e.closeTracing() // the last spans, once every session has ended
}

// errWhileServing wraps the error of a run that stopped after it began
// serving; any other error of run's stopped it from starting.
var errWhileServing = errors.New("while serving")

// run serves the options until ctx is done, then drains the sessions. It
// takes options that validate accepted. If svcUser is not nil, tftpgw
// becomes that user once its sockets are bound. r reloads the
// configuration on its signals.
func run(ctx context.Context, opts *options, svcUser *serviceUser, logger *slog.Logger, r *reloader) error {
	e := newEdge(opts, logger)
	defer e.close()
	if err := e.setupTracing(ctx); err != nil { // before the backend's connection, which it instruments
		return err
	}
	logger = e.logger // with the trace ids, when tracing is on
	h, err := e.handler()
	if err != nil {
		return err
	}
	r.register(e.metrics.Registry())
	lv := &live{content: h, store: e.uploadStore}
	if err := lv.set(opts); err != nil {
		return err // validate accepted them: not expected
	}
	srv := opts.server()
	srv.Handler = lv
	if len(opts.Upload.Allow) > 0 {
		// Without it, write requests are refused from the listening port
		// and start no session.
		e.uploads = true
		srv.WriteHandler = lv
		logger.Info("uploads on", "allow", opts.Upload.Allow.String(), "max_size", int64(opts.Upload.MaxSize),
			"path", opts.Upload.Path, "to", e.uploadsTo())
	}
	srv.Admit = lv.Admit
	srv.Logger = logger
	srv.HTTPTimeout = opts.HTTP.Timeout
	srv.Tracer = e.sessionTracer()
	stopStatsCtx, err := e.setupStats(ctx, srv)
	if err != nil {
		return err
	}
	// stopStats flushes the stats, for at most statsFlushTimeout: a sink
	// that is down must not keep tftpgw from exiting.
	stopStats := func() {
		sctx, cancel := context.WithTimeout(context.Background(), statsFlushTimeout)
		defer cancel()
		stopStatsCtx(sctx)
	}

	addrs := opts.listenAddrs()
	var pcs []net.PacketConn
	closeAll := func() {
		for _, pc := range pcs {
			pc.Close()
		}
	}
	for _, a := range addrs {
		pc, err := listen(a, len(addrs) == 1)
		if err != nil {
			closeAll()
			stopStats()
			return err
		}
		pcs = append(pcs, pc)
	}
	hs, err := listenHTTP(&opts.HTTP, e.tracing.HTTPHandler(srv), logger)
	if err != nil {
		closeAll()
		stopStats()
		return err
	}
	if hs != nil {
		prev := closeAll
		closeAll = func() {
			prev()
			hs.ln.Close()
		}
	}
	// Every socket is bound (-metrics in setupStats): root is not needed
	// any more.
	var root *os.Root
	if e.root != nil {
		root = e.root.Root()
	}
	if err := dropPrivileges(logger, svcUser, root, opts.Backend.TokenFile, opts.Stats.Sink.TokenFile); err != nil {
		closeAll()
		stopStats()
		return err
	}
	if svcUser == nil && os.Geteuid() == 0 {
		logger.Warn("serving as root: give -user NAME to drop to an unprivileged user once the sockets are bound, or start as a user with CAP_NET_BIND_SERVICE (README, Security)")
	}
	if svcUser != nil && opts.ConfigFile != "" {
		if f, err := os.Open(opts.ConfigFile); err != nil {
			logger.Warn("-user cannot read -config: a reload (SIGHUP) will be refused", "user", svcUser.name, "err", err)
		} else {
			f.Close()
		}
	}
	errc := make(chan error, len(pcs))
	bound := make([]string, len(pcs))
	for i, pc := range pcs {
		bound[i] = pc.LocalAddr().String()
		go func() { errc <- srv.Serve(pc) }()
	}
	httpErr := make(chan error, 1)
	if hs != nil {
		go func() { httpErr <- hs.serve() }()
		logger.Info("serving HTTP", "url", hs.url(), "max_conns", opts.HTTP.MaxConns, "timeout", opts.HTTP.Timeout)
	}
	served := 0 // Serve calls returned
	// stopHTTP ends the HTTP service, waiting for its requests until ctx
	// ends; the server's Shutdown also waits for them (they are sessions).
	// returned is set when its serve already returned.
	stopHTTP := func(ctx context.Context, returned bool) {
		if hs != nil {
			hs.shutdown(ctx)
			if !returned {
				<-httpErr
			}
			hs = nil
		}
	}
	// fail ends everything at once when a listener failed, waiting for
	// nothing: the HTTP connections are closed (a cancelled context), which
	// ends their requests, then the sessions.
	fail := func(err error, httpReturned bool) error {
		e.setReady(false)
		now, cancel := context.WithCancel(context.Background())
		cancel()
		stopHTTP(now, httpReturned)
		srv.Close() // and the other listeners
		for ; served < len(pcs); served++ {
			<-errc
		}
		stopStats()
		return err
	}
	e.setReady(true)
	logger.Info("tftpgw serving", "listen", strings.Join(bound, ","))
	// With a backend, whether one takes calls is said at start, not at the
	// first client's "backend timeout" (Ready waits a second at most).
	var backendUp chan bool
	if e.backend != nil {
		backendUp = make(chan bool, 1)
		go func() { backendUp <- e.backend.Ready() }()
	}

wait:
	for {
		select {
		case up := <-backendUp:
			backendUp = nil
			if !up {
				logger.Warn("no backend takes calls yet: clients get ERROR 0 \"backend timeout\" until one does (see /readyz)", "target", opts.Backend.Target)
			}
		case err := <-httpErr:
			return fmt.Errorf("%w: %w", errWhileServing, fail(err, true))
		case err := <-errc:
			served++
			return fmt.Errorf("%w: %w", errWhileServing, fail(err, false))
		case <-r.signals:
			e.reload(r, lv)
		case <-ctx.Done():
			break wait
		}
	}
	e.setReady(false)
	logger.Info("draining sessions", "timeout", opts.Serving.DrainTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), opts.Serving.DrainTimeout)
	defer cancel()
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		stopHTTP(dctx, false)
	}()
	if err := srv.Shutdown(dctx); err != nil {
		logger.Warn("drain timed out; remaining sessions were ended", "err", err)
	}
	<-httpDone
	for ; served < len(pcs); served++ {
		<-errc
	}
	stopStats()
	logger.Info("tftpgw stopped")
	return nil
}

// statsFlushTimeout bounds the flush of the stats when tftpgw stops.
const statsFlushTimeout = 5 * time.Second
