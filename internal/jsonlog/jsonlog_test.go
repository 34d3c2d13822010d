package jsonlog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"
)

func TestDurationsInSeconds(t *testing.T) {
	for _, tc := range []struct {
		name string
		attr slog.Attr
		path []string // keys from the top of the JSON object to the value
		want any      // as decoded by encoding/json
	}{
		{"duration", slog.Duration("duration", 12345678*time.Nanosecond), []string{"duration"}, 0.012345678},
		{"in a group", slog.Group("g", slog.Duration("rtt", 1500*time.Millisecond)), []string{"g", "rtt"}, 1.5},
		{"in nested groups", slog.Group("a", slog.Group("b", slog.Duration("d", 2*time.Second))), []string{"a", "b", "d"}, 2.0},
		{"as any", slog.Any("timeout", 250*time.Millisecond), []string{"timeout"}, 0.25},
		{"zero", slog.Duration("duration", 0), []string{"duration"}, 0.0},
		{"negative", slog.Duration("skew", -time.Second), []string{"skew"}, -1.0},
		{"int untouched", slog.Int64("bytes", 12345678), []string{"bytes"}, 12345678.0},
		{"string untouched", slog.String("duration_text", "1s"), []string{"duration_text"}, "1s"},
		{"time untouched", slog.Time("at", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)), []string{"at"}, "2026-01-02T03:04:05Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: DurationsInSeconds})
			slog.New(h).LogAttrs(t.Context(), slog.LevelInfo, "m", tc.attr)
			var v any
			if err := json.Unmarshal(buf.Bytes(), &v); err != nil {
				t.Fatalf("%v: %s", err, buf.Bytes())
			}
			for _, k := range tc.path {
				m, ok := v.(map[string]any)
				if !ok {
					t.Fatalf("no %q in %s", k, buf.Bytes())
				}
				v = m[k]
			}
			if v != tc.want {
				t.Errorf("got %#v, want %#v in %s", v, tc.want, buf.Bytes())
			}
		})
	}
}

// The function itself, without a handler: a duration becomes a float64
// of seconds under the same key, anything else is returned as it came.
func TestDurationsInSecondsAttr(t *testing.T) {
	got := DurationsInSeconds(nil, slog.Duration("d", 3*time.Millisecond))
	if got.Key != "d" || got.Value.Kind() != slog.KindFloat64 || got.Value.Float64() != 0.003 {
		t.Errorf("got %v (%v), want d=0.003 (Float64)", got, got.Value.Kind())
	}
	in := slog.Int("n", 7)
	if got := DurationsInSeconds([]string{"g"}, in); !got.Equal(in) {
		t.Errorf("got %v, want %v unchanged", got, in)
	}
}
