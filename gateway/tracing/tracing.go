// Package tracing traces a gateway's sessions with OpenTelemetry: each
// TFTP session (a read or an upload) is a span, whose context the
// handler receives, so that a backend called over gRPC continues the trace
// (the call carries a W3C traceparent in its metadata), and whose ids the
// session's log line carries.
//
// [FromEnv] configures the OpenTelemetry SDK from the standard OTEL_*
// environment variables. Tracing is off unless OTEL_TRACES_EXPORTER names
// an exporter: "console" prints the spans as JSON on standard output,
// "otlp" sends them to an OpenTelemetry collector
// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL: grpc or
// http/protobuf, the default), "none" or unset traces nothing.
//
// The pieces, each usable alone:
//
//   - [Sessions] is the gateway.SessionTracer: set it as
//     gateway.Server.Tracer.
//   - [Tracing.DialOptions] instrument a gRPC client connection (the
//     backend's, remote.Config.DialOptions) with otelgrpc.
//   - [LogHandler] adds trace_id and span_id to the log lines written
//     with a traced context, the session's line among them.
//   - [SplitTraceparent] takes a traceparent off the end of a filename, as
//     Tinkerbell's smee accepts it.
package tracing

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
)

// Config is what FromEnv takes besides the environment.
type Config struct {
	// ServiceName is the resource's service.name unless OTEL_SERVICE_NAME
	// or OTEL_RESOURCE_ATTRIBUTES sets one; "tftpgw" if empty.
	ServiceName string
	// InstanceID is the resource's service.instance.id unless
	// OTEL_RESOURCE_ATTRIBUTES sets one (tftpgw's -edge-id); none if
	// empty.
	InstanceID string
	// Console receives the spans of OTEL_TRACES_EXPORTER=console;
	// os.Stdout if nil.
	Console io.Writer
	// Getenv reads the environment; os.Getenv if nil. The SDK and the
	// exporters read their own variables (OTEL_TRACES_SAMPLER,
	// OTEL_BSP_*, OTEL_EXPORTER_OTLP_*, OTEL_RESOURCE_ATTRIBUTES) from
	// the process's environment whatever it is.
	Getenv func(string) string
}

// Tracing is the OpenTelemetry SDK as the environment configured it. Its
// zero value, and a nil *Tracing, are tracing off.
type Tracing struct {
	tp        *sdktrace.TracerProvider // nil: off
	exporters []string
	prop      propagation.TextMapPropagator
}

// Exporters are the values OTEL_TRACES_EXPORTER takes, comma-separated.
const (
	ExporterConsole = "console"
	ExporterOTLP    = "otlp"
	ExporterNone    = "none"
)

// FromEnv sets up tracing from OTEL_TRACES_EXPORTER and the variables of
// the exporters it names. It returns tracing off, and no error, when the
// variable is unset or "none", or OTEL_SDK_DISABLED is "true": unlike the
// SDK's autoexport package, whose default is otlp, an unset variable never
// turns tracing on. The propagator is always W3C trace context and
// baggage (OTEL_PROPAGATORS is not read). It returns
// an error for an exporter it does not know or a protocol it does not
// speak.
//
// The sampler is OTEL_TRACES_SAMPLER's (the SDK's default:
// parentbased_always_on); the resource has OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES over c's names. Spans are exported in batches
// (OTEL_BSP_*); [Tracing.Shutdown] exports the last ones.
func FromEnv(ctx context.Context, c Config) (*Tracing, error) {
	getenv := c.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return &Tracing{}, nil
	}
	names, err := exporterNames(getenv("OTEL_TRACES_EXPORTER"))
	if err != nil || len(names) == 0 {
		return &Tracing{}, err
	}
	var opts []sdktrace.TracerProviderOption
	var exps []sdktrace.SpanExporter
	shutdown := func() {
		for _, e := range exps {
			e.Shutdown(ctx)
		}
	}
	for _, name := range names {
		exp, err := newExporter(ctx, name, c, getenv)
		if err != nil {
			shutdown()
			return nil, err
		}
		exps = append(exps, exp)
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	res, err := newResource(ctx, c)
	if err != nil {
		shutdown()
		return nil, err
	}
	opts = append(opts, sdktrace.WithResource(res))
	return &Tracing{
		tp:        sdktrace.NewTracerProvider(opts...),
		exporters: names,
		prop:      propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}, nil
}

// exporterNames parses OTEL_TRACES_EXPORTER: nil for none.
func exporterNames(v string) ([]string, error) {
	var names []string
	seen := map[string]bool{}
	for n := range strings.SplitSeq(v, ",") {
		n = strings.ToLower(strings.TrimSpace(n))
		switch n {
		case "", ExporterNone:
		case ExporterConsole, ExporterOTLP:
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		default:
			return nil, fmt.Errorf("tracing: OTEL_TRACES_EXPORTER %q: want %s, %s or %s (or unset: off)", n, ExporterOTLP, ExporterConsole, ExporterNone)
		}
	}
	return names, nil
}

// newExporter returns the span exporter called name.
func newExporter(ctx context.Context, name string, c Config, getenv func(string) string) (sdktrace.SpanExporter, error) {
	if name == ExporterConsole {
		w := c.Console
		if w == nil {
			w = os.Stdout
		}
		exp, err := stdouttrace.New(stdouttrace.WithWriter(w))
		if err != nil {
			return nil, fmt.Errorf("tracing: console exporter: %w", err)
		}
		return exp, nil
	}
	proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch strings.TrimSpace(proto) {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("tracing: OTEL_EXPORTER_OTLP_PROTOCOL %q: want grpc or http/protobuf", proto)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: otlp exporter: %w", err)
	}
	return exp, nil
}

// newResource describes the process: c's names, under what the
// environment says, and the SDK's version.
func newResource(ctx context.Context, c Config) (*resource.Resource, error) {
	name := c.ServiceName
	if name == "" {
		name = "tftpgw"
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", name)}
	if c.InstanceID != "" {
		attrs = append(attrs, attribute.String("service.instance.id", c.InstanceID))
	}
	// Later detectors win: the environment over c.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attrs...),
		resource.WithFromEnv(),
	)
	if err != nil {
		// A malformed OTEL_RESOURCE_ATTRIBUTES among others: refused, as
		// a malformed flag is.
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	return res, nil
}

// Enabled reports whether spans are recorded and exported.
func (t *Tracing) Enabled() bool { return t != nil && t.tp != nil }

// Exporters are the exporters OTEL_TRACES_EXPORTER named; none when off.
func (t *Tracing) Exporters() []string {
	if !t.Enabled() {
		return nil
	}
	return t.exporters
}

// TracerProvider makes the spans: the SDK's, or a no-op one when tracing
// is off.
func (t *Tracing) TracerProvider() trace.TracerProvider {
	if !t.Enabled() {
		return tracenoop.NewTracerProvider()
	}
	return t.tp
}

// Propagator carries a span's context in a call's metadata: W3C trace
// context (traceparent, tracestate) and baggage.
func (t *Tracing) Propagator() propagation.TextMapPropagator {
	if !t.Enabled() {
		return propagation.NewCompositeTextMapPropagator()
	}
	return t.prop
}

// DialOptions instrument a gRPC client connection with otelgrpc: each
// call is a client span, child of the span in its context, and carries
// that context to the server in its metadata (traceparent). Health
// checks are left out. They are nil when tracing is off, so that an
// untraced connection costs nothing.
func (t *Tracing) DialOptions() []grpc.DialOption {
	if !t.Enabled() {
		return nil
	}
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(t.tp),
		otelgrpc.WithPropagators(t.prop),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()), // tftpgw's metrics are Prometheus'
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	))}
}

// HTTPHandler returns h taking the trace context of each HTTP request's
// headers (traceparent, tracestate, baggage) into its context, so that the
// span of the server's HTTP session (gateway.Server.ServeHTTP, see
// Sessions) continues the client's trace. It returns h itself when tracing
// is off.
func (t *Tracing) HTTPHandler(h http.Handler) http.Handler {
	if !t.Enabled() {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// Shutdown exports the spans not exported yet and stops the exporters,
// within ctx's deadline. Call it once the sessions have ended.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	if err := t.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}
