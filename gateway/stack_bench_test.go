package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// BenchmarkSessionStack reports the goroutine stack sessions hold: 200
// sessions of a one-block file on a fresh server, the stack in use
// measured before they start, while all of them wait for their client's
// ACK (stack-B/waiting-session), and once they have ended, on the
// workers that ran them and wait for the next (stack-B/ended-session):
// the end of a session (its log line, its stats) may grow the stack
// further. A session that needs a larger stack costs a copy of it as it
// grows and, in a burst of ten thousand sessions, a page fault per 4 KiB.
// The server logs nothing, as cmd/tftpgw at -log-level error; the
// "-info" metric is the same with a text log line per session, whose
// handler makes the end of a session deeper.
//
// Each measurement runs in a process of its own (this test binary, run
// again): stacks freed by an earlier server stay cached by the runtime
// and would be reused uncounted.
func BenchmarkSessionStack(b *testing.B) {
	var quiet, info [2]float64
	for b.Loop() {
		quiet = stackChild(b, "quiet")
		info = stackChild(b, "info")
	}
	b.ReportMetric(quiet[0], "stack-B/waiting-session")
	b.ReportMetric(quiet[1], "stack-B/ended-session")
	b.ReportMetric(info[1], "stack-B/ended-session-info")
}

const stackChildEnv = "TFTPGW_SESSION_STACK_CHILD"

// stackChild runs TestSessionStackChild in a new process with the log
// mode and returns its two measurements.
func stackChild(b *testing.B, mode string) (m [2]float64) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestSessionStackChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), stackChildEnv+"="+mode)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	i := bytes.Index(out, []byte("stack-bytes: "))
	if i < 0 {
		b.Fatalf("no measurement in %s", out)
	}
	if _, err := fmt.Sscanf(string(out[i:]), "stack-bytes: %g %g", &m[0], &m[1]); err != nil {
		b.Fatalf("measurement: %v in %s", err, out)
	}
	return m
}

// TestSessionStackChild is BenchmarkSessionStack's measurement, run in a
// process of its own; skipped otherwise.
func TestSessionStackChild(t *testing.T) {
	mode := os.Getenv(stackChildEnv)
	if mode == "" {
		t.Skip("run by BenchmarkSessionStack")
	}
	logger := slog.New(slog.DiscardHandler)
	if mode == "info" {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	waiting, ended := sessionsStack(t, logger, 200, gatewaytest.Pattern(100))
	t.Logf("stack-bytes: %.0f %.0f", waiting, ended)
}

// sessionsStack starts a server, opens n sessions and returns the stack
// in use per session while all of them wait for their ACK, and once they
// have ended (their workers wait for the next session for a while); then
// it shuts the server down.
func sessionsStack(t *testing.T, logger *slog.Logger, n int, payload []byte) (waiting, ended float64) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv := &gateway.Server{Handler: gatewaytest.Files{"f": payload}, Logger: logger}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(pc) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, gateway.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	server := pc.LocalAddr().(*net.UDPAddr)

	runtime.GC()
	var before, during, after runtime.MemStats
	runtime.ReadMemStats(&before)
	clients := make([]*net.UDPConn, n)
	tids := make([]*net.UDPAddr, n)
	buf := make([]byte, 1024)
	rrq := wire.AppendRequest(nil, wire.OpRRQ, "f", "octet", nil)
	for i := range clients {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
		if _, err := c.WriteToUDP(rrq, server); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		nr, from, err := c.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("session %d: no DATA: %v", i, err)
		}
		if op, _ := wire.PacketOpcode(buf[:nr]); op != wire.OpDATA {
			t.Fatalf("session %d: got %x, want a DATA", i, buf[:nr])
		}
		tids[i] = from
	}
	runtime.ReadMemStats(&during)
	for i, c := range clients {
		if _, err := c.WriteToUDP(wire.AppendAck(nil, 1), tids[i]); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); srv.Stats().ActiveSessions > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still running", srv.Stats().ActiveSessions)
		}
	}
	runtime.ReadMemStats(&after)
	perSession := func(m runtime.MemStats) float64 {
		return float64(m.StackInuse-before.StackInuse) / float64(n)
	}
	return perSession(during), perSession(after)
}
