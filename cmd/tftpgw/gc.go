package main

import (
	"log/slog"
	"math"
	"runtime/debug"
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
// often as it must. An operator's GOGC or GOMEMLIMIT is left alone, and
// so is the target when the window memory has no limit (-1). getenv is
// os.Getenv.
func tuneGC(getenv func(string) string, windowMemory, cacheSize int64, logger *slog.Logger) {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" || windowMemory < 0 {
		return
	}
	limit := windowMemory + max(cacheSize, 0) + gcHeadroom
	if limit < 0 { // overflow
		limit = math.MaxInt64
	}
	debug.SetMemoryLimit(limit)
	debug.SetGCPercent(gcPercent)
	logger.Debug("garbage collector tuned", "gogc", gcPercent, "memory_limit", limit)
}
