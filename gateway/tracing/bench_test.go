package tracing_test

import (
	"context"
	"io"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/gateway/tracing"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// BenchmarkSmallRead is a whole small read (one block, the shape of a
// PXELINUX config search or an iPXE script) over loopback, client
// included, per session tracer: none (tftpgw without OTEL_TRACES_EXPORTER
// and without -trace-filename-traceparent), the filename's traceparent
// with tracing off, and tracing on with a sampler that samples nothing or
// everything (exported in batches to a discarding exporter). Its allocs/op
// are the client's and the server's: compare the rows.
func BenchmarkSmallRead(b *testing.B) {
	sdk := func(b *testing.B, s sdktrace.Sampler) *sdktrace.TracerProvider {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(s), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		b.Cleanup(func() { tp.Shutdown(context.Background()) })
		return tp
	}
	for _, bc := range []struct {
		name   string
		tracer func(b *testing.B) gateway.SessionTracer
	}{
		{"no tracer", func(*testing.B) gateway.SessionTracer { return nil }},
		{"filename traceparent, tracing off", func(*testing.B) gateway.SessionTracer {
			return tracing.NewSessions(nil, tracing.SessionOptions{FilenameTraceparent: true})
		}},
		{"tracing on, never sampled", func(b *testing.B) gateway.SessionTracer {
			return tracing.NewSessions(sdk(b, sdktrace.NeverSample()), tracing.SessionOptions{})
		}},
		{"tracing on, sampled", func(b *testing.B) gateway.SessionTracer {
			return tracing.NewSessions(sdk(b, sdktrace.AlwaysSample()), tracing.SessionOptions{})
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := gatewaytest.NewServer(b, gatewaytest.Files{"pxelinux.cfg/default": gatewaytest.Pattern(400)}, func(s *gateway.Server) {
				s.Tracer = bc.tracer(b)
				s.ClientRequestRate = -1 // one client, as fast as it goes
			})
			addr := srv.Addr().String()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tftpclient.Get(ctx, addr, "pxelinux.cfg/default", io.Discard, tftpclient.Options{}); err != nil {
					b.Fatal(err)
				}
				srv.NextStats(b)
			}
		})
	}
}
