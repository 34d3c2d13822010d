package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// BenchmarkSessionStack reports the goroutine stack a session holds
// while it waits for its client's ACK (stack-bytes/session): 200
// sessions of a one-block file on a fresh server, each held after its
// DATA, the stack in use measured before and while they wait. A session
// that needs a larger stack costs a copy of it as it grows and, in a
// burst of ten thousand sessions, a page fault per 4 KiB. The server logs
// nothing (as cmd/tftpgw at -log-level error): an info line makes the
// stack deeper, in slog's handlers.
//
// Each measurement runs in a process of its own (this test binary, run
// again): stacks freed by an earlier server stay cached by the runtime
// and would be reused uncounted.
func BenchmarkSessionStack(b *testing.B) {
	var perSession float64
	for b.Loop() {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSessionStackChild$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), stackChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		i := bytes.Index(out, []byte(stackChildPrefix))
		if i < 0 {
			b.Fatalf("no measurement in %s", out)
		}
		line, _, _ := bytes.Cut(out[i+len(stackChildPrefix):], []byte("\n"))
		if perSession, err = strconv.ParseFloat(string(bytes.TrimSpace(line)), 64); err != nil {
			b.Fatalf("measurement: %v", err)
		}
	}
	b.ReportMetric(perSession, "stack-bytes/session")
}

const (
	stackChildEnv    = "TFTPGW_SESSION_STACK_CHILD"
	stackChildPrefix = "stack-bytes/session: "
)

// TestSessionStackChild is BenchmarkSessionStack's measurement, run in a
// process of its own; skipped otherwise.
func TestSessionStackChild(t *testing.T) {
	if os.Getenv(stackChildEnv) == "" {
		t.Skip("run by BenchmarkSessionStack")
	}
	t.Logf("%s%.0f", stackChildPrefix, waitingSessionsStack(t, 200, gatewaytest.Pattern(100)))
}

// waitingSessionsStack starts a server, opens n sessions and returns the stack in
// use per session while all of them wait for their ACK; then it lets
// them end and shuts the server down.
func waitingSessionsStack(b testing.TB, n int, payload []byte) float64 {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	srv := &gateway.Server{
		Handler: gatewaytest.Files{"f": payload},
		Logger:  slog.New(slog.DiscardHandler),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(pc) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			b.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, gateway.ErrServerClosed) {
			b.Errorf("serve: %v", err)
		}
	}()
	server := pc.LocalAddr().(*net.UDPAddr)

	runtime.GC()
	var before, during runtime.MemStats
	runtime.ReadMemStats(&before)
	clients := make([]*net.UDPConn, n)
	tids := make([]*net.UDPAddr, n)
	buf := make([]byte, 1024)
	rrq := wire.AppendRequest(nil, wire.OpRRQ, "f", "octet", nil)
	for i := range clients {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
		if _, err := c.WriteToUDP(rrq, server); err != nil {
			b.Fatal(err)
		}
	}
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		nr, from, err := c.ReadFromUDP(buf)
		if err != nil {
			b.Fatalf("session %d: no DATA: %v", i, err)
		}
		if op, _ := wire.PacketOpcode(buf[:nr]); op != wire.OpDATA {
			b.Fatalf("session %d: got %x, want a DATA", i, buf[:nr])
		}
		tids[i] = from
	}
	runtime.ReadMemStats(&during)
	for i, c := range clients {
		if _, err := c.WriteToUDP(wire.AppendAck(nil, 1), tids[i]); err != nil {
			b.Fatal(err)
		}
	}
	return float64(during.StackInuse-before.StackInuse) / float64(n)
}
