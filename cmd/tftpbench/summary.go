package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"time"
)

// percentiles are in seconds.
type percentiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// summary is the result of a run. The JSON field names are a stable
// interface for scripts.
type summary struct {
	Server      string   `json:"server"`
	Files       []string `json:"files"`
	Concurrency int      `json:"concurrency"`
	BlockSize   int      `json:"blksize"`
	WindowSize  int      `json:"windowsize"`
	Mode        string   `json:"mode"`
	// Put marks an upload run (-put): bytes and packets were sent, and
	// duplicates counts the DATA packets sent again.
	Put bool `json:"put,omitempty"`
	// Probe marks a size-probe run (-probe): each transfer was an RRQ with
	// tsize answered by ERROR 8 after the OACK.
	Probe bool `json:"probe,omitempty"`
	// ExpectError is -expect-error: the ERROR code that counted as
	// success; absent when transfers had to succeed.
	ExpectError *int           `json:"expect_error,omitempty"`
	Transfers   int            `json:"transfers"`
	OK          int            `json:"ok"`
	Failed      int            `json:"failed"`
	Mismatches  int            `json:"verify_mismatches"`
	Errors      map[string]int `json:"errors"`
	Bytes       int64          `json:"bytes"`
	Packets     int64          `json:"packets"`
	Duplicates  int64          `json:"duplicates"`
	Elapsed     float64        `json:"elapsed_seconds"`
	MBPerSecond float64        `json:"mb_per_second"`
	Latency     percentiles    `json:"latency_seconds"`
	TTFB        percentiles    `json:"ttfb_seconds"`
	// TTFBWire is the time to the first DATA by the kernel's receive
	// timestamps, tftpbench's own delays left out (see
	// tftpclient.Result.TimeToFirstWire); absent without timestamps.
	TTFBWire  *percentiles `json:"ttfb_wire_seconds,omitempty"`
	CPUUser   float64      `json:"cpu_user_seconds"`
	CPUSystem float64      `json:"cpu_system_seconds"`
	CPU       float64      `json:"cpu_seconds"`
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, which must be in ascending order; 0 for an empty slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// percentilesOf summarizes the durations (modified: sorted in place).
func percentilesOf(d []time.Duration) percentiles {
	slices.Sort(d)
	return percentiles{
		P50: percentile(d, 50).Seconds(),
		P90: percentile(d, 90).Seconds(),
		P99: percentile(d, 99).Seconds(),
		Max: percentile(d, 100).Seconds(),
	}
}

// summarize aggregates the records. Latency and TTFB percentiles cover the
// successful transfers only.
func summarize(cfg *config, records []record, elapsed, user, sys time.Duration) summary {
	s := summary{
		Server: cfg.server, Files: cfg.files, Concurrency: cfg.concurrency,
		BlockSize: cfg.opts.BlockSize, WindowSize: cfg.opts.WindowSize, Mode: cfg.opts.Mode, Put: cfg.put, Probe: cfg.probe,
		Transfers: len(records), Errors: map[string]int{},
		Elapsed: elapsed.Seconds(), CPUUser: user.Seconds(), CPUSystem: sys.Seconds(), CPU: (user + sys).Seconds(),
	}
	if cfg.wantError {
		code := cfg.errorCode
		s.ExpectError = &code
	}
	var lat, ttfb, wire []time.Duration
	for _, r := range records {
		s.Bytes += r.bytes
		s.Packets += r.packets
		s.Duplicates += r.dups
		if r.err != nil || r.mismatch {
			s.Failed++
			if r.mismatch {
				s.Mismatches++
			}
			s.Errors[errMessage(r)]++
			continue
		}
		s.OK++
		lat = append(lat, r.duration)
		ttfb = append(ttfb, r.ttfb)
		if r.ttfbWire > 0 {
			wire = append(wire, r.ttfbWire)
		}
	}
	if elapsed > 0 {
		s.MBPerSecond = float64(s.Bytes) / 1e6 / elapsed.Seconds()
	}
	s.Latency = percentilesOf(lat)
	s.TTFB = percentilesOf(ttfb)
	if len(wire) > 0 {
		p := percentilesOf(wire)
		s.TTFBWire = &p
	}
	return s
}

func writeJSON(w io.Writer, s any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

func writeText(w io.Writer, s summary) {
	secs := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)).Round(time.Microsecond) }
	fmt.Fprintf(w, "server      %s\n", s.Server)
	fmt.Fprintf(w, "transfers   %d ok, %d failed (%d verification mismatches), concurrency %d\n", s.OK, s.Failed, s.Mismatches, s.Concurrency)
	switch {
	case s.Probe && s.ExpectError != nil:
		fmt.Fprintf(w, "            size probes; OK = answered with ERROR %d\n", *s.ExpectError)
	case s.Probe:
		fmt.Fprintln(w, "            size probes; OK = OACK with tsize (then ERROR 8)")
	case s.ExpectError != nil:
		fmt.Fprintf(w, "            OK = answered with ERROR %d\n", *s.ExpectError)
	}
	for _, k := range byCount(s.Errors) {
		fmt.Fprintf(w, "  %6d x %s\n", s.Errors[k], k)
	}
	if s.Put {
		fmt.Fprintf(w, "bytes       %d (%s) sent, %d DATA packets, %d retransmitted\n", s.Bytes, humanBytes(s.Bytes), s.Packets, s.Duplicates)
	} else {
		fmt.Fprintf(w, "bytes       %d (%s), %d packets, %d duplicates\n", s.Bytes, humanBytes(s.Bytes), s.Packets, s.Duplicates)
	}
	fmt.Fprintf(w, "elapsed     %v\n", secs(s.Elapsed))
	fmt.Fprintf(w, "throughput  %.2f MB/s\n", s.MBPerSecond)
	if s.OK == 0 { // percentiles of nothing would read as 0s
		fmt.Fprintln(w, "latency     n/a (no successful transfer)")
	} else {
		fmt.Fprintf(w, "latency     p50 %v  p90 %v  p99 %v  max %v\n", secs(s.Latency.P50), secs(s.Latency.P90), secs(s.Latency.P99), secs(s.Latency.Max))
		fmt.Fprintf(w, "first byte  p50 %v  p90 %v  p99 %v  max %v\n", secs(s.TTFB.P50), secs(s.TTFB.P90), secs(s.TTFB.P99), secs(s.TTFB.Max))
	}
	if p := s.TTFBWire; p != nil {
		fmt.Fprintf(w, "  on the wire p50 %v  p90 %v  p99 %v  max %v (kernel timestamps; tftpbench's own delays left out)\n", secs(p.P50), secs(p.P90), secs(p.P99), secs(p.Max))
	}
	fmt.Fprintf(w, "client cpu  %.3fs (user %.3fs, system %.3fs)\n", s.CPU, s.CPUUser, s.CPUSystem)
}

// byCount returns the keys of m, the largest count first, then by name.
func byCount(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}
