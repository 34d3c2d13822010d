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
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/cache"
	"github.com/tftpgw/tftpgw/internal/jsonlog"
)

var (
	flagListen        = flag.String("listen", ":69", "UDP `address` to listen on; \":69\" and \"[::]:69\" serve IPv4 and IPv6")
	flagRoot          = flag.String("root", "", "serve the files under `dir` (the embedded backend)")
	flagTimeout       = flag.Duration("timeout", gateway.DefaultTimeout, "retransmission timeout when the client negotiates none")
	flagRetries       = flag.Int("retries", gateway.DefaultRetries, "retransmissions of an unacknowledged packet before a session is given up")
	flagMaxBlksize    = flag.Int("max-blksize", gateway.DefaultMaxBlockSize, "largest blksize granted (8..65464); lower it to your path MTU minus 32 to avoid IP fragments")
	flagMaxWindowsize = flag.Int("max-windowsize", gateway.DefaultMaxWindowSize, "largest windowsize granted (RFC 7440)")
	flagMinTimeout    = flag.Duration("min-timeout", gateway.DefaultMinTimeout, "floor of the adaptive retransmission timeout (RFC 6298 estimate from each session's round trips); >= -timeout makes the timer fixed")
	flagMaxSessions   = flag.Int("max-sessions", gateway.DefaultMaxSessions, "sessions running at once; over it requests get ERROR 0 \"server busy\" (-1: no limit)")
	flagMaxPerClient  = flag.Int("max-sessions-per-client", gateway.DefaultMaxSessionsPerClient, "sessions at once per client IP address (-1: no limit)")
	flagClientRate    = flag.Float64("client-rate", gateway.DefaultClientRequestRate, "read requests per second accepted per client IP address, bursts of twice that (-1: no limit)")
	flagWindowMemory  = flag.Int64("max-window-memory", gateway.DefaultMaxWindowMemory, "bytes of window buffers for all sessions together, in use and kept for reuse (-1: no limit)")
	flagClientMemory  = flag.Int64("max-window-memory-per-client", 0, "bytes of window buffers one client (an IPv4 address or an IPv6 /64) may hold; 0: -max-window-memory / 8 (-1: no limit)")
	flagSinglePort    = flag.Bool("single-port", false, "send every reply from the listening port, keying sessions by client address and port (for NAT, containers and firewalls)")
	flagDrainTimeout  = flag.Duration("drain-timeout", 10*time.Second, "on SIGINT or SIGTERM, how long running sessions may finish before they are ended")
	flagLogFormat     = flag.String("log-format", "text", "log format: text or json (json: durations in seconds)")
	flagLogLevel      = flag.String("log-level", "info", "log level: debug, info, warn or error")
)

func main() {
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "tftpgw: unexpected arguments: %q\n", flag.Args())
		os.Exit(2)
	}
	if err := checkFlags(); err != nil {
		fmt.Fprintln(os.Stderr, "tftpgw:", err)
		os.Exit(2)
	}
	logger, err := newLogger(os.Stderr, *flagLogFormat, *flagLogLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tftpgw:", err)
		os.Exit(2)
	}
	svcUser, err := lookupServiceUser(*flagUser) // privileges.go
	if err != nil {
		fmt.Fprintln(os.Stderr, "tftpgw:", err)
		os.Exit(2)
	}
	if err := run(logger, svcUser); err != nil {
		logger.Error("tftpgw stopped", "err", err)
		os.Exit(1)
	}
}

// listen opens the UDP socket, explaining a refused privileged port.
func listen(addr string) (net.PacketConn, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("-listen %s: %w: ports below 1024 need CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE; or setcap cap_net_bind_service=+ep tftpgw), or root (then give -user)", addr, err)
		}
		return nil, fmt.Errorf("-listen %s: %w", addr, err)
	}
	return pc, nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
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

func run(logger *slog.Logger, svcUser *serviceUser) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	h, stopBackend, err := remoteHandler(ctx, logger)
	if err != nil {
		return err
	}
	defer stopBackend()
	var root *os.Root // -root, checked again as -user
	if h == nil {
		if *flagRoot == "" {
			return errors.New("nothing to serve: give -root DIR or -backend TARGET")
		}
		root, err = os.OpenRoot(*flagRoot)
		if err != nil {
			return fmt.Errorf("-root: %w", err)
		}
		defer root.Close()
		h = gateway.FileServer(root)
	} else if *flagRoot != "" {
		return errors.New("give -root or -backend, not both")
	}
	h = wrapCache(h, logger)
	if c, ok := h.(*cache.Handler); ok {
		defer c.Close() // when run returns, after Shutdown: stops the fetches still running
	}

	srv := &gateway.Server{
		Addr:          *flagListen,
		Handler:       h,
		Timeout:       *flagTimeout,
		Retries:       *flagRetries,
		MaxBlockSize:  *flagMaxBlksize,
		MaxWindowSize: *flagMaxWindowsize,
		Logger:        logger,

		MinTimeout:               *flagMinTimeout,
		MaxSessions:              *flagMaxSessions,
		MaxSessionsPerClient:     *flagMaxPerClient,
		ClientRequestRate:        *flagClientRate,
		MaxWindowMemory:          *flagWindowMemory,
		MaxWindowMemoryPerClient: *flagClientMemory,
		SinglePort:               *flagSinglePort,
	}
	if *flagRetries == 0 {
		srv.Retries = -1 // the flag's 0 means none; the field's 0 means the default
	}
	stopStats, err := setupStats(ctx, srv, logger)
	if err != nil {
		return err
	}

	pc, err := listen(*flagListen)
	if err != nil {
		stopStats(context.Background())
		return err
	}
	// Every socket is bound (-metrics in setupStats): root is not needed
	// any more.
	if err := dropPrivileges(logger, svcUser, root); err != nil {
		pc.Close()
		stopStats(context.Background())
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(pc) }()
	setStatsReady(true)
	logger.Info("tftpgw serving", "listen", pc.LocalAddr().String())

	select {
	case err := <-errc:
		stopStats(context.Background())
		return err
	case <-ctx.Done():
	}
	setStatsReady(false)
	stopSignals() // a second signal kills the process
	logger.Info("draining sessions", "timeout", *flagDrainTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), *flagDrainTimeout)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil {
		logger.Warn("drain timed out; remaining sessions were ended", "err", err)
	}
	<-errc
	sctx, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	stopStats(sctx)
	logger.Info("tftpgw stopped")
	return nil
}
