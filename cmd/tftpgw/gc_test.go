package main

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
)

// TestTuneGC: without GOGC and GOMEMLIMIT, the collector's target is 400
// and the soft memory limit is the window memory plus the cache plus the
// headroom; an operator's setting, or window memory without a limit,
// leaves both alone.
func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name           string
		env            map[string]string
		window, cache  int64
		percent, limit int64
	}{
		{"defaults", nil, 1 << 30, 256 << 20, 400, 1<<30 + 256<<20 + gcHeadroom},
		{"cache off", nil, 64 << 20, 0, 400, 64<<20 + gcHeadroom},
		{"GOGC set", map[string]string{"GOGC": "50"}, 1 << 30, 0, 100, math.MaxInt64},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "1GiB"}, 1 << 30, 0, 100, math.MaxInt64},
		{"no window limit", nil, -1, 0, 100, math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			tuneGC(func(k string) string { return tc.env[k] }, tc.window, tc.cache, quiet)
			if p := debug.SetGCPercent(100); int64(p) != tc.percent {
				t.Errorf("GC percent %d, want %d", p, tc.percent)
			}
			if l := debug.SetMemoryLimit(-1); l != tc.limit {
				t.Errorf("memory limit %d, want %d", l, tc.limit)
			}
		})
	}
}
