package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// stepResult is the outcome of one request of a step (a miss step makes
// one request per name).
type stepResult struct {
	step     int // index into cfg.steps
	duration time.Duration
	err      error // nil: the expected answer
}

// machineResult is the outcome of one machine's boot.
type machineResult struct {
	duration time.Duration
	requests []stepResult
	failed   string // "" when booted: else the key of the first failure
}

// runBoot plays cfg.steps once per machine, cfg.n machines (or until -d),
// cfg.concurrency at a time, and prints the summary.
func runBoot(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	var cnt counters
	res := runLoad(ctx, cfg, &cnt, stderr, func() func(int) (machineResult, bool) {
		return func(i int) (machineResult, bool) {
			m := bootMachine(ctx, cfg, i, &cnt.bytes)
			return m, m.failed == ""
		}
	})
	s := summarizeBoot(cfg, res.results, res.elapsed, cnt.bytes.Load(), res.userCPU, res.sysCPU)
	if cfg.json {
		if err := writeJSON(stdout, s); err != nil {
			return err
		}
	} else {
		writeBootText(stdout, s)
	}
	if s.Failed > 0 || s.Booted == 0 {
		return errFailed
	}
	return nil
}

// bootMachine plays the script for machine i. It stops at the first
// request that does not get the expected answer: that machine did not
// boot.
func bootMachine(ctx context.Context, cfg *config, i int, received *atomic.Int64) (res machineResult) {
	m := machine{n: i}
	local := cfg.srcAddr(i)
	if local.Is4() {
		m.ip = local
	}
	start := time.Now()
	defer func() { res.duration = time.Since(start) }()
	for k, s := range cfg.steps {
		opts := s.opts
		opts.Mode, opts.Retries, opts.RecvBuffer = cfg.opts.Mode, cfg.opts.Retries, cfg.opts.RecvBuffer
		opts.LocalAddr = local
		for _, tmpl := range s.names {
			name, _ := expand(tmpl, m) // checked by parseScript
			t0 := time.Now()
			err := playStep(ctx, cfg.server, s, name, opts, received)
			res.requests = append(res.requests, stepResult{step: k, duration: time.Since(t0), err: err})
			if err != nil {
				res.failed = fmt.Sprintf("line %d (%s %s): %s", s.line, s.op, tmpl, errMessage(record{err: err}))
				return res
			}
		}
	}
	return res
}

// playStep makes one request of s for name and returns nil when the
// server gave the expected answer.
func playStep(ctx context.Context, server string, s step, name string, o tftpclient.Options, received *atomic.Int64) error {
	switch s.op {
	case opProbe:
		tsize, err := tftpclient.Probe(ctx, server, name, o)
		if err == nil && s.size >= 0 && tsize != s.size {
			return fmt.Errorf("tsize %d, want %d", tsize, s.size)
		}
		return err
	case opMiss:
		res, err := tftpclient.Get(ctx, server, name, io.Discard, o)
		return wantError(1, err, res.Size)
	default: // opGet
		res, err := tftpclient.Get(ctx, server, name, countingWriter{io.Discard, received}, o)
		switch {
		case err != nil:
			return err
		case s.size >= 0 && res.Size != s.size:
			return fmt.Errorf("got %d bytes, want %d", res.Size, s.size)
		case res.TSize >= 0 && res.Size != res.TSize:
			return fmt.Errorf("got %d bytes, tsize said %d", res.Size, res.TSize)
		}
		return nil
	}
}

// bootSummary is the result of a -boot run; the JSON field names are a
// stable interface for scripts.
type bootSummary struct {
	Server      string         `json:"server"`
	Script      string         `json:"script"`
	Concurrency int            `json:"concurrency"`
	Machines    int            `json:"machines"`
	Booted      int            `json:"booted"`
	Failed      int            `json:"failed"`
	Errors      map[string]int `json:"errors"`
	Requests    int            `json:"requests"`
	Bytes       int64          `json:"bytes"`
	Elapsed     float64        `json:"elapsed_seconds"`
	MBPerSecond float64        `json:"mb_per_second"`
	// BootTime is the percentiles of one machine's whole sequence,
	// booted machines only.
	BootTime  percentiles   `json:"boot_seconds"`
	Steps     []stepSummary `json:"steps"`
	CPUUser   float64       `json:"cpu_user_seconds"`
	CPUSystem float64       `json:"cpu_system_seconds"`
	CPU       float64       `json:"cpu_seconds"`
}

// stepSummary is one line of the script: its requests over all machines,
// and the latency percentiles of those that got the expected answer.
type stepSummary struct {
	Line     int         `json:"line"`
	Step     string      `json:"step"`
	Requests int         `json:"requests"`
	OK       int         `json:"ok"`
	Failed   int         `json:"failed"`
	Latency  percentiles `json:"latency_seconds"`
}

func summarizeBoot(cfg *config, machines []machineResult, elapsed time.Duration, bytes int64, user, sys time.Duration) bootSummary {
	s := bootSummary{
		Server: cfg.server, Script: cfg.bootFile, Concurrency: cfg.concurrency, Machines: len(machines),
		Errors: map[string]int{}, Bytes: bytes, Elapsed: elapsed.Seconds(),
		CPUUser: user.Seconds(), CPUSystem: sys.Seconds(), CPU: (user + sys).Seconds(),
	}
	lat := make([][]time.Duration, len(cfg.steps))
	s.Steps = make([]stepSummary, len(cfg.steps))
	for k, st := range cfg.steps {
		s.Steps[k] = stepSummary{Line: st.line, Step: st.String()}
	}
	var boots []time.Duration
	for _, m := range machines {
		if m.failed == "" {
			s.Booted++
			boots = append(boots, m.duration)
		} else {
			s.Failed++
			s.Errors[m.failed]++
		}
		for _, r := range m.requests {
			s.Requests++
			ss := &s.Steps[r.step]
			ss.Requests++
			if r.err != nil {
				ss.Failed++
				continue
			}
			ss.OK++
			lat[r.step] = append(lat[r.step], r.duration)
		}
	}
	for k := range s.Steps {
		s.Steps[k].Latency = percentilesOf(lat[k])
	}
	s.BootTime = percentilesOf(boots)
	if elapsed > 0 {
		s.MBPerSecond = float64(bytes) / 1e6 / elapsed.Seconds()
	}
	return s
}

func writeBootText(w io.Writer, s bootSummary) {
	secs := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)).Round(time.Microsecond) }
	fmt.Fprintf(w, "server      %s\n", s.Server)
	fmt.Fprintf(w, "script      %s\n", s.Script)
	fmt.Fprintf(w, "machines    %d booted, %d failed, concurrency %d\n", s.Booted, s.Failed, s.Concurrency)
	for _, k := range byCount(s.Errors) {
		fmt.Fprintf(w, "  %6d x %s\n", s.Errors[k], k)
	}
	fmt.Fprintf(w, "elapsed     %v until every machine finished (%d requests)\n", secs(s.Elapsed), s.Requests)
	fmt.Fprintf(w, "bytes       %d (%s), %.2f MB/s\n", s.Bytes, humanBytes(s.Bytes), s.MBPerSecond)
	if s.Booted == 0 {
		fmt.Fprintln(w, "boot time   n/a (no machine booted)")
	} else {
		fmt.Fprintf(w, "boot time   p50 %v  p90 %v  p99 %v  max %v\n", secs(s.BootTime.P50), secs(s.BootTime.P90), secs(s.BootTime.P99), secs(s.BootTime.Max))
	}
	fmt.Fprintln(w, "steps       line  requests  ok  failed  p50  p90  p99  max")
	for _, st := range s.Steps {
		lat := "n/a"
		if st.OK > 0 {
			lat = fmt.Sprintf("%v  %v  %v  %v", secs(st.Latency.P50), secs(st.Latency.P90), secs(st.Latency.P99), secs(st.Latency.Max))
		}
		fmt.Fprintf(w, "  %4d  %d  %d  %d  %s  %s\n", st.Line, st.Requests, st.OK, st.Failed, lat, strings.TrimSpace(st.Step))
	}
	fmt.Fprintf(w, "client cpu  %.3fs (user %.3fs, system %.3fs)\n", s.CPU, s.CPUUser, s.CPUSystem)
}
