package main

import (
	"io"
	"io/fs"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
)

// TestTuneGC: without GOGC and GOMEMLIMIT, the collector's target is 400
// and the soft memory limit is the window memory plus the cache plus the
// headroom, at most 90 % of the cgroup's memory limit (a review found that
// a container smaller than tftpgw's own limits would otherwise meet the
// OOM killer sooner than with Go's default); an operator's setting, or
// window memory without a limit, leaves both alone.
func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	v2 := map[string]string{"/proc/self/cgroup": "0::/system.slice/tftpgw.service\n", "/sys/fs/cgroup/system.slice/tftpgw.service/memory.max": "1073741824\n"}
	for _, tc := range []struct {
		name           string
		env            map[string]string
		files          map[string]string
		window, cache  int64
		percent, limit int64
	}{
		{"defaults", nil, nil, 1 << 30, 256 << 20, 400, 1<<30 + 256<<20 + gcHeadroom},
		{"cache off", nil, nil, 64 << 20, 0, 400, 64<<20 + gcHeadroom},
		{"GOGC set", map[string]string{"GOGC": "50"}, nil, 1 << 30, 0, 100, math.MaxInt64},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "1GiB"}, nil, 1 << 30, 0, 100, math.MaxInt64},
		{"no window limit", nil, nil, -1, 0, 100, math.MaxInt64},
		// A cgroup limit below what tftpgw's own limits allow caps the
		// soft limit at 90 % of it.
		{"systemd MemoryMax 1 GiB", nil, v2, 1 << 30, 512 << 20, 400, (1 << 30) / 10 * 9},
		{"container memory.max 512 MiB", nil, map[string]string{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "536870912"}, 1 << 30, 512 << 20, 400, (512 << 20) / 10 * 9},
		{"cgroup v1 512 MiB", nil, map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "536870912\n"}, 1 << 30, 0, 400, (512 << 20) / 10 * 9},
		{"cgroup v1 no limit", nil, map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"}, 64 << 20, 0, 400, 64<<20 + gcHeadroom},
		{"cgroup v2 max", nil, map[string]string{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "max\n"}, 64 << 20, 0, 400, 64<<20 + gcHeadroom},
		{"cgroup limit above tftpgw's", nil, map[string]string{"/sys/fs/cgroup/memory.max": "68719476736"}, 64 << 20, 0, 400, 64<<20 + gcHeadroom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			read := func(name string) ([]byte, error) {
				if v, ok := tc.files[name]; ok {
					return []byte(v), nil
				}
				return nil, fs.ErrNotExist
			}
			tuneGC(func(k string) string { return tc.env[k] }, read, tc.window, tc.cache, quiet)
			if p := debug.SetGCPercent(100); int64(p) != tc.percent {
				t.Errorf("GC percent %d, want %d", p, tc.percent)
			}
			if l := debug.SetMemoryLimit(-1); l != tc.limit {
				t.Errorf("memory limit %d, want %d", l, tc.limit)
			}
		})
	}
}
