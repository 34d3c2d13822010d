package main

import (
	"encoding/json"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGRPCLogIsJSON is a regression test (issue 13 point 6): with
// -log-format json, gRPC's own logger wrote plain-text lines. tftpgw runs
// with gRPC's INFO log on (GRPC_GO_LOG_SEVERITY_LEVEL=info, -log-level
// debug), a backend and a stats sink that refuse connections, so that gRPC
// logs while the backend is dialled (before setupStats) and while both
// reconnect; every line on stderr must be a JSON object, and gRPC's lines
// are among them.
func TestGRPCLogIsJSON(t *testing.T) {
	refused := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	g := startGatewayCmd(t, nil, []string{"GRPC_GO_LOG_SEVERITY_LEVEL=info", "GRPC_GO_LOG_VERBOSITY_LEVEL=2"},
		"-log-level", "debug", "-backend", refused(), "-stats-sink", refused())
	// Wait for gRPC to fail a connection attempt to each (at most 10 s).
	for i := 0; i < 1000 && strings.Count(g.logText(), "connection refused") < 2; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	g.wait(t, 15*time.Second)

	grpcLines := 0
	for line := range strings.SplitSeq(strings.TrimSpace(g.logText()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("not a JSON line: %q", line)
			continue
		}
		if m["system"] == "grpc" {
			grpcLines++
		}
	}
	if grpcLines == 0 {
		t.Errorf("no gRPC line in the log:\n%s", g.logText())
	}
	t.Logf("%d gRPC lines, all JSON", grpcLines)
}
