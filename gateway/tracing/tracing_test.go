package tracing_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/tftpgw/tftpgw/gateway/tracing"
)

// env is a Getenv over a map.
func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestFromEnvOffUnlessAnExporterIsNamed: tracing is off with
// OTEL_TRACES_EXPORTER unset, empty or none (not otlp, autoexport's
// default), and then costs nothing: no dial options, a no-op provider.
func TestFromEnvOffUnlessAnExporterIsNamed(t *testing.T) {
	for _, v := range []string{"", " ", "none", "NONE", "none,"} {
		tr, err := tracing.FromEnv(context.Background(), tracing.Config{Getenv: env(map[string]string{"OTEL_TRACES_EXPORTER": v})})
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if tr.Enabled() || tr.DialOptions() != nil || tr.Exporters() != nil {
			t.Errorf("%q: tracing on", v)
		}
		_, span := tr.TracerProvider().Tracer("t").Start(context.Background(), "s")
		if span.IsRecording() {
			t.Errorf("%q: a recording span", v)
		}
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}
	tr, err := tracing.FromEnv(context.Background(), tracing.Config{Getenv: env(map[string]string{"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"})})
	if err != nil || tr.Enabled() {
		t.Errorf("OTEL_SDK_DISABLED=true: enabled %v, %v", tr.Enabled(), err)
	}
	var nilTracing *tracing.Tracing
	if nilTracing.Enabled() || nilTracing.DialOptions() != nil || nilTracing.Shutdown(context.Background()) != nil {
		t.Error("a nil *Tracing is not off")
	}
}

func TestFromEnvRefusesWhatItCannotDo(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"OTEL_TRACES_EXPORTER": "jaeger"}, `OTEL_TRACES_EXPORTER "jaeger"`},
		{map[string]string{"OTEL_TRACES_EXPORTER": "console,zipkin"}, `OTEL_TRACES_EXPORTER "zipkin"`},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, `OTEL_EXPORTER_OTLP_PROTOCOL "http/json"`},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "udp"}, `OTEL_EXPORTER_OTLP_PROTOCOL "udp"`},
	} {
		_, err := tracing.FromEnv(context.Background(), tracing.Config{Getenv: env(tc.env)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %s", tc.env, err, tc.want)
		}
	}
}

// TestFromEnvOTLP: otlp over either protocol sets up without a collector
// (the exporters connect when they export), and shuts down.
func TestFromEnvOTLP(t *testing.T) {
	for _, proto := range []string{"", "grpc", "http/protobuf"} {
		tr, err := tracing.FromEnv(context.Background(), tracing.Config{Getenv: env(map[string]string{
			"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": proto,
		})})
		if err != nil {
			t.Fatalf("%q: %v", proto, err)
		}
		if !tr.Enabled() || len(tr.DialOptions()) != 1 || strings.Join(tr.Exporters(), ",") != "otlp" {
			t.Errorf("%q: enabled %v, exporters %v", proto, tr.Enabled(), tr.Exporters())
		}
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Errorf("%q: %v", proto, err)
		}
	}
}

// TestFromEnvConsole: OTEL_TRACES_EXPORTER=console prints the spans, as
// one JSON object each, once Shutdown flushes them; the resource has
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES over Config's names, and
// OTEL_TRACES_SAMPLER is the sampler.
func TestFromEnvConsole(t *testing.T) {
	for _, tc := range []struct {
		name               string
		env                map[string]string
		wantService, wantI string
		wantSpans          int
	}{
		{"defaults", nil, "tftpgw", "edge-1", 1},
		{"service name", map[string]string{"OTEL_SERVICE_NAME": "pxe-edge"}, "pxe-edge", "edge-1", 1},
		{"resource attributes", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=a,service.instance.id=b"}, "a", "b", 1},
		{"sampler", map[string]string{"OTEL_TRACES_SAMPLER": "always_off"}, "", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"} {
				t.Setenv(k, tc.env[k]) // the SDK reads the process's environment
			}
			var out bytes.Buffer
			tr, err := tracing.FromEnv(context.Background(), tracing.Config{
				InstanceID: "edge-1", Console: &out,
				Getenv: env(map[string]string{"OTEL_TRACES_EXPORTER": "console"}),
			})
			if err != nil {
				t.Fatal(err)
			}
			_, span := tr.TracerProvider().Tracer("t").Start(context.Background(), "s")
			span.End()
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			var spans []map[string]any
			sc := bufio.NewScanner(&out)
			for sc.Scan() {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Fatalf("not one JSON object per line: %v: %s", err, sc.Bytes())
				}
				spans = append(spans, m)
			}
			if len(spans) != tc.wantSpans {
				t.Fatalf("%d spans printed, want %d:\n%s", len(spans), tc.wantSpans, out.String())
			}
			if tc.wantSpans == 0 {
				return
			}
			res := map[string]any{}
			rs, _ := spans[0]["Resource"].([]any)
			for _, kv := range rs {
				kv := kv.(map[string]any)
				res[kv["Key"].(string)] = kv["Value"].(map[string]any)["Value"]
			}
			if res["service.name"] != tc.wantService || res["service.instance.id"] != tc.wantI {
				t.Errorf("resource %v: want service.name %q, service.instance.id %q", res, tc.wantService, tc.wantI)
			}
		})
	}
}
