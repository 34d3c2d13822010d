package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/tracing"
)

// tracingFlushTimeout bounds the export of the last spans when tftpgw
// stops: a collector that is down must not keep tftpgw from exiting.
const tracingFlushTimeout = 5 * time.Second

// setupTracing sets up OpenTelemetry tracing from the OTEL_* environment
// variables (package tracing; off unless OTEL_TRACES_EXPORTER names an
// exporter). When it is on, e.logger adds the session's trace_id and
// span_id to its lines, and the backend's connection carries the trace
// to the backend; closeTracing exports the last spans.
func (e *edge) setupTracing(ctx context.Context) error {
	t, err := tracing.FromEnv(ctx, tracing.Config{InstanceID: e.opts.edgeID()})
	if err != nil {
		return err
	}
	e.tracing = t
	if !t.Enabled() {
		if e.opts.Tracing.FilenameTraceparent {
			e.logger.Info("tracing off (OTEL_TRACES_EXPORTER unset or none): a traceparent appended to a filename is removed, and no span is made",
				"filename_traceparent", true)
		}
		return nil
	}
	e.logger = slog.New(tracing.LogHandler(e.logger.Handler()))
	// The SDK's own errors (an export that failed) in tftpgw's log.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		e.logger.Warn("tracing", "err", err)
	}))
	sampler := os.Getenv("OTEL_TRACES_SAMPLER")
	if sampler == "" {
		sampler = "parentbased_always_on"
	}
	e.logger.Info("tracing on", "exporters", t.Exporters(), "sampler", sampler,
		"filename_traceparent", e.opts.Tracing.FilenameTraceparent)
	return nil
}

// sessionTracer returns the server's SessionTracer: nil, which costs
// nothing, when tracing is off and no filename carries a traceparent.
func (e *edge) sessionTracer() gateway.SessionTracer {
	if !e.tracing.Enabled() && !e.opts.Tracing.FilenameTraceparent {
		return nil
	}
	var tp trace.TracerProvider // nil: no span, the filenames' traceparents removed
	if e.tracing.Enabled() {
		tp = e.tracing.TracerProvider()
	}
	return tracing.NewSessions(tp, tracing.SessionOptions{
		FilenameTraceparent: e.opts.Tracing.FilenameTraceparent,
	})
}

// closeTracing exports the spans not exported yet, within
// tracingFlushTimeout.
func (e *edge) closeTracing() {
	if !e.tracing.Enabled() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
	defer cancel()
	if err := e.tracing.Shutdown(ctx); err != nil {
		e.logger.Warn("stopping tracing: spans may be lost", "err", err)
	}
}
