package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/tftpgw/tftpgw/gateway/tracing"
)

func spanCtx(t *testing.T, flags trace.TraceFlags) context.Context {
	t.Helper()
	_, parent, ok := tracing.SplitTraceparent("f-00-" + tid + "-" + sid + "-01")
	if !ok {
		t.Fatal("no span context")
	}
	return trace.ContextWithSpanContext(context.Background(), parent.WithTraceFlags(flags))
}

func TestLogHandler(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		wantIDs bool
	}{
		{"sampled span: ids added", spanCtx(t, trace.FlagsSampled), true},
		{"unsampled span: no ids", spanCtx(t, 0), false},
		{"no span: no ids", context.Background(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(tracing.LogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "edge").WithGroup("g")
			l.InfoContext(tc.ctx, "session end", "a", 1, "b", 2, "c", 3, "d", 4, "e", 5, "f", 6) // more than a record holds inline
			var m map[string]any
			if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
			if m["component"] != "edge" {
				t.Errorf("With's attribute lost: %s", buf.String())
			}
			g, _ := m["g"].(map[string]any)
			if g == nil || g["f"] != 6.0 {
				t.Fatalf("the record's attributes lost: %s", buf.String())
			}
			_, has := g["trace_id"]
			if has != tc.wantIDs {
				t.Fatalf("trace_id present %v, want %v: %s", has, tc.wantIDs, buf.String())
			}
			if tc.wantIDs && (g["trace_id"] != tid || g["span_id"] != sid) {
				t.Errorf("ids %v %v, want %s %s", g["trace_id"], g["span_id"], tid, sid)
			}
		})
	}
}

// TestLogHandlerEnabled follows the wrapped handler's level.
func TestLogHandlerEnabled(t *testing.T) {
	h := tracing.LogHandler(slog.NewJSONHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if h.Enabled(context.Background(), slog.LevelInfo) || !h.Enabled(context.Background(), slog.LevelWarn) {
		t.Error("Enabled does not follow the wrapped handler's level")
	}
}
