package main

import (
	"context"
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
			if err == nil {
				t.Errorf("tftpgw %s: exit status 0", strings.Join(bad, " "))
			}
		})
	}
}

func firstLines(b []byte, n int) string {
	lines := strings.SplitN(string(b), "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
