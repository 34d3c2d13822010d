package main

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/internal/proctest"
)

// runMain runs tftp-backend with args and returns its exit code and
// output; it is killed after 3 s (-h or a bad flag must stop it at once).
func runMain(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "TFTP_BACKEND_AS_MAIN=1")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("tftp-backend %s: still running after 3 s", strings.Join(args, " "))
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return code, string(out)
}

var servingRE = regexp.MustCompile(`"?msg"?[=:]"tftp-backend serving".*?"?addr"?[=:]"?([0-9.:\[\]]+)`)

// startProc runs tftp-backend with args until the test ends, and returns
// it once it serves.
func startProc(t *testing.T, args ...string) *proctest.Proc {
	t.Helper()
	return proctest.Start(t, "tftp-backend", []string{"TFTP_BACKEND_AS_MAIN=1"}, servingRE, args...)
}
