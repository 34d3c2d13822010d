// Command tftp-collector is a reference StatsSink for tftpgw edges. It
// writes every event it receives as one line of protojson and, with
// -metrics, serves the events of all edges aggregated for Prometheus.
//
// Usage:
//
//	tftp-collector -listen :7069 -out /var/log/tftpgw/stats.jsonl -metrics :9169
//
// Point the edges at it with tftpgw -stats-sink HOST:7069. SIGINT or
// SIGTERM stop it gracefully: it waits up to -grace for the edges to close
// their streams, then breaks them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tftpgw/tftpgw/gateway/stats/collector"
)

func main() {
	listen := flag.String("listen", ":7069", "gRPC `address` to receive stats on")
	out := flag.String("out", "-", "`file` to append events to as protojson lines; - for stdout")
	metrics := flag.String("metrics", "", "HTTP `address` for /metrics and /healthz; none if empty")
	expiry := flag.Duration("edge-expiry", collector.DefaultEdgeExpiry, "forget the metrics of an edge silent for this `duration`")
	grace := flag.Duration("grace", 5*time.Second, "on SIGINT/SIGTERM, wait this `duration` for edges to close their streams")
	flag.Parse()
	switch {
	case flag.NArg() > 0:
		fmt.Fprintf(os.Stderr, "tftp-collector: unexpected arguments: %q\n", flag.Args())
		os.Exit(2)
	case *expiry <= 0:
		fmt.Fprintf(os.Stderr, "tftp-collector: -edge-expiry %v: must be positive\n", *expiry)
		os.Exit(2)
	case *grace < 0:
		fmt.Fprintf(os.Stderr, "tftp-collector: -grace %v: must be 0 or more\n", *grace)
		os.Exit(2)
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	grpcLog.SetLogger(logger) // gRPC's own log, in the same format
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, logger, *listen, *out, *metrics, *expiry, *grace); err != nil {
		logger.Error("tftp-collector failed", "err", err)
		os.Exit(1)
	}
}

// run serves until ctx ends.
func run(ctx context.Context, logger *slog.Logger, listen, out, metricsAddr string, expiry, grace time.Duration) error {
	var w io.Writer = os.Stdout
	if out != "-" {
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("open output: %w", err)
		}
		defer f.Close()
		w = f
	}
	sink := collector.New(collector.Config{Out: w, EdgeExpiry: expiry, Logger: logger})

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := collector.Serve(ln, sink)
	logger.Info("collecting stats", "addr", srv.Addr().String(), "out", out)

	var hs *http.Server
	httpDone := make(chan error, 1)
	if metricsAddr != "" {
		mln, err := net.Listen("tcp", metricsAddr)
		if err != nil {
			srv.Stop(ctx)
			return fmt.Errorf("metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", sink.MetricsHandler())
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		hs = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { httpDone <- hs.Serve(mln) }()
		logger.Info("serving metrics", "addr", mln.Addr().String())
	}

	<-ctx.Done()
	logger.Info("stopping")
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err = srv.Stop(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		logger.Warn("edges did not close their streams in time; broke them", "grace", grace)
		err = nil
	}
	if hs != nil {
		if herr := hs.Shutdown(sctx); herr != nil {
			hs.Close()
		}
		if herr := <-httpDone; !errors.Is(herr, http.ErrServerClosed) {
			err = errors.Join(err, fmt.Errorf("metrics server: %w", herr))
		}
	}
	return err
}
