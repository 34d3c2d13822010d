package main

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Out-of-range flag values must stop tftpgw with a clear error and a
// non-zero exit. Each of these is accepted and tftpgw starts serving with a
// configuration other than the one asked for: a zero becomes the default
// (-max-blksize 0 grants 65464, -max-windowsize 0 grants 64, -max-sessions 0
// allows 4096, -timeout 0 waits 1 s), a negative duration is replaced or
// ignored, values outside the documented range are clamped without a word,
// and a TLS flag meant for -backend is ignored when there is no -backend.
func TestBadFlagValuesAreRejected(t *testing.T) {
	dir := t.TempDir()
	for _, bad := range [][]string{
		{"-max-blksize", "0"},
		{"-max-blksize", "4"},
		{"-max-blksize", "100000"},
		{"-max-windowsize", "0"},
		{"-max-windowsize", "-1"},
		{"-timeout", "0"},
		{"-timeout", "-1s"},
		{"-min-timeout", "-1s"},
		{"-retries", "-3"},
		{"-max-sessions", "0"},
		{"-drain-timeout", "-1s"},
		{"-cache-max-age", "-1s"},
		{"-backend-tls"},
		{"-client-rate", "NaN"},
		{"-stats-interval", "0"},
		{"-max-window-memory-per-client", "-2"},
		{"-backend", "127.0.0.1:1"}, // with -root: both
	} {
		t.Run(strings.Join(bad, "="), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			args := append([]string{"-listen", "127.0.0.1:0", "-root", dir}, bad...)
			out, err := exec.CommandContext(ctx, binPath, args...).CombinedOutput()
			if ctx.Err() != nil {
				t.Errorf("tftpgw %s: accepted; still serving after 3 s (killed). Log:\n%s", strings.Join(bad, " "), firstLines(out, 3))
				return
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Errorf("tftpgw %s: %v, want exit status 2. Log:\n%s", strings.Join(bad, " "), err, firstLines(out, 3))
			}
		})
	}
}

func firstLines(b []byte, n int) string {
	lines := strings.SplitN(string(b), "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// TestEdgeIDWithoutBackend is a regression test (found in review): -edge-id
// names the edge to stats sinks too, so it must be accepted with -root.
func TestEdgeIDWithoutBackend(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, binPath, "-listen", "127.0.0.1:0", "-root", t.TempDir(), "-edge-id", "edge-a").CombinedOutput()
	if ctx.Err() == nil || !strings.Contains(string(out), "tftpgw serving") {
		t.Errorf("tftpgw -root -edge-id did not serve. Log:\n%s", firstLines(out, 3))
	}
}
