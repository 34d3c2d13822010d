package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/grpclog"

	"github.com/tftpgw/tftpgw/internal/syncbuf"
)

// TestGRPCLogIsJSON (issue 13 point 6): gRPC's own log goes through the
// command's logger, so with -log-format json its lines are JSON too (they
// went to stderr in gRPC's plain-text format).
func TestGRPCLogIsJSON(t *testing.T) {
	var stderr syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-root", t.TempDir(), "-log-format", "json"}, &stderr,
			func(a net.Addr) { addrc <- a }, nil)
	}()
	select {
	case <-addrc:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("backend did not start")
	}
	// What gRPC's code does when it logs an error (grpclog.Component's
	// loggers end in the same call).
	grpclog.Errorf("[transport] test line %d", 1)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	found := false
	for line := range strings.SplitSeq(strings.TrimSpace(stderr.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("not a JSON line: %q", line)
			continue
		}
		if m["msg"] == "test line 1" && m["system"] == "grpc" && m["grpc_component"] == "transport" && m["level"] == "ERROR" {
			found = true
		}
	}
	if !found {
		t.Errorf("gRPC's line is not in the command's log:\n%s", stderr.String())
	}
}
