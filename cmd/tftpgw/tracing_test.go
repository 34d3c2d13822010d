package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// TestUnknownTracesExporterIsRefused: an OTEL_TRACES_EXPORTER tftpgw
// cannot honour stops it at start and fails -check, rather than running
// without the traces asked for.
func TestUnknownTracesExporterIsRefused(t *testing.T) {
	root := t.TempDir()
	for _, args := range [][]string{
		{"-root", root, "-check"},
		{"-root", root, "-listen", "127.0.0.1:" + strconv.Itoa(freeUDPPort(t))},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, binPath, args...)
		cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=jaeger")
		out, err := cmd.CombinedOutput()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(string(out), "OTEL_TRACES_EXPORTER") || !strings.Contains(string(out), "jaeger") {
			t.Errorf("%v: %v, %q", args, err, out)
		}
	}
}

// TestFilenameTraceparentWithTracingOff: -trace-filename-traceparent
// removes the suffix even with tracing off, and the log line has no
// trace_id.
func TestFilenameTraceparentWithTracingOff(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "ipxe.efi"), []byte("ipxe"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGatewayCmd(t, nil, []string{"OTEL_TRACES_EXPORTER="}, "-root", root, "-trace-filename-traceparent")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var buf bytes.Buffer
	const file = "ipxe.efi-00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if _, err := tftpclient.Get(ctx, "127.0.0.1:"+strconv.Itoa(g.port), file, &buf, tftpclient.Options{}); err != nil || buf.String() != "ipxe" {
		t.Fatalf("got %q, %v", buf.String(), err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		for l := range strings.SplitSeq(g.logText(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) != nil || m["msg"] != "session end" {
				continue
			}
			if m["path"] != "ipxe.efi" || m["trace_id"] != nil {
				t.Errorf("session line %s: want path ipxe.efi and no trace_id", l)
			}
			if !strings.Contains(g.logText(), "tracing off") {
				t.Errorf("the start does not say that tracing is off:\n%s", g.logText())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session line:\n%s", g.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
