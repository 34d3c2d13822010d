package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMain runs main itself when the test binary is started as the
// command (see runMain).
func TestMain(m *testing.M) {
	if os.Getenv("TFTP_COLLECTOR_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runMain runs tftp-collector with args and returns its exit code and
// output; it is killed after 3 s (a bad flag must stop it at once).
func runMain(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "TFTP_COLLECTOR_AS_MAIN=1")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("tftp-collector %s: still running after 3 s", strings.Join(args, " "))
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return code, string(out)
}

// TestBadFlagsRefused is a regression test (found in review): extra
// arguments were ignored and a -edge-expiry of 0 or less silently became
// the default. The same holds for the flags added since.
func TestBadFlagsRefused(t *testing.T) {
	for _, args := range [][]string{
		{"-listen", "127.0.0.1:0", "extra"},
		{"-listen", "127.0.0.1:0", "-edge-expiry", "0"},
		{"-listen", "127.0.0.1:0", "-edge-expiry", "-1m"},
		{"-listen", "127.0.0.1:0", "-grace", "-1s"},
		{"-listen", "127.0.0.1:0", "-max-edges", "0"},
		{"-listen", "127.0.0.1:0", "-tls-cert", "c.pem"},
		{"-listen", "127.0.0.1:0", "-client-ca", "ca.pem"},
		{"-listen", "127.0.0.1:0", "-log-format", "xml"},
		{"-listen", "127.0.0.1:0", "-log-level", "loud"},
	} {
		t.Run(strings.Join(args[2:], " "), func(t *testing.T) {
			if code, out := runMain(t, args...); code != 2 || out == "" {
				t.Errorf("exit %d, output %q; want 2 and a message", code, out)
			}
		})
	}
}

// TestHelpExitsZero (found in review): -h and -help print the usage and
// exit 0, as tftpgw -h does; they exited 2, as for a bad flag. A bad flag
// still exits 2.
func TestHelpExitsZero(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, 0, "-listen address"},
		{[]string{"-help"}, 0, "-listen address"},
		{[]string{"-no-such-flag"}, 2, "flag provided but not defined"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out := runMain(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, output %q; want %d and %q", code, out, tc.code, tc.want)
			}
		})
	}
}
