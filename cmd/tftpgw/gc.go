package main

import (
	"log/slog"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
)

// gcPercent is the garbage collector's target, unless GOGC is set: a
// collection when the heap has grown by 4 times the live heap rather than
// Go's default of once. A small request's session leaves a few kilobytes
// of garbage, and at tens of thousands of requests a second the collector
// and the thread wakeups of its workers took about a tenth of the server's
// CPU (BENCHMARKS.md, "Small requests").
const gcPercent = 400

// gcHeadroom is the heap the soft memory limit allows beyond the window
// memory and the edge cache: the sessions, the gRPC connections and the
// metrics.
const gcHeadroom = 256 << 20

// tuneGC sets the collector's target to gcPercent and a soft memory limit
// of the memory tftpgw bounds (window buffers and edge cache) plus
// gcHeadroom, so that the larger target never lets the heap grow past
// what the limits already allow: near the limit the collector runs as
// often as it must. In a cgroup with a memory limit (a container, a
// systemd unit's MemoryMax) the soft limit is at most 90 % of it, so that
// the larger target cannot take the process to the cgroup's OOM killer
// where Go's default would have collected in time. An operator's GOGC or
// GOMEMLIMIT is left alone, and so is the target when the window memory
// has no limit (-1). getenv is os.Getenv, readFile os.ReadFile.
func tuneGC(getenv func(string) string, readFile func(string) ([]byte, error), windowMemory, cacheSize int64, logger *slog.Logger) {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" || windowMemory < 0 {
		return
	}
	limit := windowMemory + max(cacheSize, 0) + gcHeadroom
	if limit < 0 { // overflow
		limit = math.MaxInt64
	}
	if cg, ok := cgroupMemoryLimit(readFile); ok && cg/10*9 < limit {
		limit = cg / 10 * 9
	}
	debug.SetMemoryLimit(limit)
	debug.SetGCPercent(gcPercent)
	logger.Debug("garbage collector tuned", "gogc", gcPercent, "memory_limit", limit)
}

// cgroupMemoryLimit returns the memory limit of the process's cgroup:
// cgroup v2's memory.max (of the cgroup /proc/self/cgroup names, or at
// the mount's root, as in a container), else cgroup v1's
// memory.limit_in_bytes. ok is false without a limit.
func cgroupMemoryLimit(readFile func(string) ([]byte, error)) (int64, bool) {
	var files []string
	if b, err := readFile("/proc/self/cgroup"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if p, ok := strings.CutPrefix(line, "0::"); ok && p != "/" && !strings.Contains(p, "..") {
				files = append(files, "/sys/fs/cgroup"+p+"/memory.max")
			}
		}
	}
	files = append(files, "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
	for _, f := range files {
		b, err := readFile(f)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 { // v1 says "no limit" with a huge number
			return 0, false
		}
		return n, true
	}
	return 0, false
}
