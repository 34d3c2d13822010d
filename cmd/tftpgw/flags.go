package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"time"
)

// The blksize range of RFC 2348.
const (
	minBlksize = 8
	maxBlksize = 65464
)

// windowLimit is the largest windowsize the server grants, whatever
// -max-windowsize says: block numbers are 16 bits, and an ACK maps to one
// block of a window only while the window is under half their range.
const windowLimit = 32767

// checkFlags rejects values the server would otherwise replace or clamp
// without a word (a zero that means "the default" to gateway.Server, a
// negative duration, a block size out of range), and flags that need
// another one, so that tftpgw never runs a configuration other than the
// one asked for.
func checkFlags() error {
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	limit := func(name string, v float64) error {
		if v == 0 || v < 0 && v != -1 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("-%s %v: want a positive number, or -1 for no limit", name, v)
		}
		return nil
	}
	positive := func(name string, d time.Duration) error {
		if d <= 0 {
			return fmt.Errorf("-%s %v: must be positive", name, d)
		}
		return nil
	}
	notNegative := func(name string, d time.Duration) error {
		if d < 0 {
			return fmt.Errorf("-%s %v: must be 0 or more", name, d)
		}
		return nil
	}
	checks := []error{
		positive("timeout", *flagTimeout),
		positive("min-timeout", *flagMinTimeout),
		limit("max-sessions", float64(*flagMaxSessions)),
		limit("max-sessions-per-client", float64(*flagMaxPerClient)),
		limit("client-rate", *flagClientRate),
		limit("max-window-memory", float64(*flagWindowMemory)),
		notNegative("drain-timeout", *flagDrainTimeout),
		notNegative("cache-max-age", *flagCacheMaxAge),
		positive("stats-interval", *flagStatsInterval),
		positive("backend-header-timeout", *flagBackendHeaderTimeout),
		positive("backend-idle-timeout", *flagBackendIdleTimeout),
		positive("backend-resume-timeout", *flagBackendResumeTimeout),
	}
	if v := *flagClientMemory; v < -1 {
		checks = append(checks, fmt.Errorf("-max-window-memory-per-client %d: want a number of bytes, 0 for -max-window-memory / 8, or -1 for no limit", v))
	}
	if *flagRetries < 0 {
		checks = append(checks, fmt.Errorf("-retries %d: must be 0 (no retransmission) or more", *flagRetries))
	}
	if *flagBackendResumes < 0 {
		checks = append(checks, fmt.Errorf("-backend-resumes %d: must be 0 (never) or more", *flagBackendResumes))
	}
	if v := *flagMaxBlksize; v < minBlksize || v > maxBlksize {
		checks = append(checks, fmt.Errorf("-max-blksize %d: want %d to %d", v, minBlksize, maxBlksize))
	}
	if v := *flagMaxWindowsize; v < 1 || v > windowLimit {
		checks = append(checks, fmt.Errorf("-max-windowsize %d: want 1 to %d", v, windowLimit))
	}
	switch {
	case *flagRoot == "" && *flagBackend == "":
		checks = append(checks, errors.New("nothing to serve: give -root DIR or -backend TARGET"))
	case *flagRoot != "" && *flagBackend != "":
		checks = append(checks, errors.New("give -root or -backend, not both"))
	}
	if !set["backend"] { // -edge-id goes to stats sinks too: not listed
		for _, name := range []string{"backend-header-timeout", "backend-idle-timeout", "backend-resumes", "backend-resume-timeout",
			"backend-tls", "backend-ca", "backend-cert", "backend-key", "backend-server-name", "backend-token-file"} {
			if set[name] {
				checks = append(checks, fmt.Errorf("-%s needs -backend", name))
			}
		}
	}
	if !set["stats-sink"] {
		for _, name := range statsSinkFlags {
			if set[name] {
				checks = append(checks, fmt.Errorf("-%s needs -stats-sink", name))
			}
		}
	}
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	return nil
}
