package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tftpgw/tftpgw/gateway/stats/collector"
	"github.com/tftpgw/tftpgw/internal/grpcauth"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
	"github.com/tftpgw/tftpgw/internal/testpki"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// TestStatsSinkFlagsNeedStatsSink: a -stats-sink-* flag without
// -stats-sink stops tftpgw with exit status 2, as -backend-* flags do
// without -backend.
func TestStatsSinkFlagsNeedStatsSink(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"-stats-sink-tls"},
		{"-stats-sink-ca", "ca.pem"},
		{"-stats-sink-cert", "c.pem"},
		{"-stats-sink-key", "k.pem"},
		{"-stats-sink-server-name", "collector"},
		{"-stats-sink-token-file", "token"},
	} {
		t.Run(args[0], func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, binPath, append([]string{"-listen", "127.0.0.1:0", "-root", dir}, args...)...).CombinedOutput()
			var ee *exec.ExitError
			if ctx.Err() != nil || !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "needs -stats-sink") {
				t.Errorf("tftpgw %s: %v, want exit status 2 and a message. Log:\n%s", args[0], err, firstLines(out, 3))
			}
		})
	}
}

// TestStatsSinkTokenRefusedInPlaintextToRemoteHost: as with -backend, a
// token goes in plaintext only to a loopback target.
func TestStatsSinkTokenRefusedInPlaintextToRemoteHost(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	os.WriteFile(token, []byte("s3cret\n"), 0o600)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binPath, "-listen", "127.0.0.1:0", "-root", t.TempDir(),
		"-stats-sink", "192.0.2.1:7069", "-stats-sink-token-file", token).CombinedOutput()
	if ctx.Err() != nil || err == nil || !strings.Contains(string(out), "plaintext") {
		t.Errorf("tftpgw: %v\n%s", err, out)
	}
}

// testCollector serves a collector on loopback with opts until the test
// ends, and returns its address and output.
func testCollector(t *testing.T, opts ...grpc.ServerOption) (string, *syncbuf.Buffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	out := &syncbuf.Buffer{}
	srv := collector.Serve(ln, collector.New(collector.Config{Out: out, Logger: slog.New(slog.DiscardHandler)}), opts...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Stop(ctx)
	})
	return srv.Addr().String(), out
}

// events returns the events a collector wrote.
func events(t *testing.T, out []byte) []*tftpgwv1.StatsEvent {
	t.Helper()
	var evs []*tftpgwv1.StatsEvent
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		ev := &tftpgwv1.StatsEvent{}
		if err := protojson.Unmarshal([]byte(line), ev); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// TestStatsSinkCredentialFlags: tftpgw's -stats-sink-* flags give the
// stats path TLS, mutual TLS and a token. A sink that refuses the edge's
// certificate or token gets nothing, and the edge logs the refusal once,
// as an error naming the cause, however many sessions end.
func TestStatsSinkCredentialFlags(t *testing.T) {
	root := t.TempDir()
	dir := t.TempDir()
	ca, other := testpki.NewCA(t, "test CA"), testpki.NewCA(t, "test CA")
	caFile := ca.WriteCert(t, dir, "ca.pem")
	goodCert, goodKey := testpki.WriteKeyPair(t, dir, "good", ca.Issue(t, "leaf", false))
	badCert, badKey := testpki.WriteKeyPair(t, dir, "bad", other.Issue(t, "leaf", false))
	token := filepath.Join(dir, "token")
	wrongToken := filepath.Join(dir, "wrong")
	os.WriteFile(token, []byte("s3cret\n"), 0o600)
	os.WriteFile(wrongToken, []byte("nope\n"), 0o600)

	mtlsAddr, mtlsOut := testCollector(t, append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, "leaf", true)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool,
	}))}, grpcauth.ServerOptions("s3cret")...)...)
	namedAddr, namedOut := testCollector(t, grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{ca.IssueServer(t, "collector.test")},
	})))

	var mu sync.Mutex // the cases share the collectors' outputs
	tests := []struct {
		name    string
		addr    string
		out     *syncbuf.Buffer
		args    []string
		wantLog string // the single ERROR line; empty for delivery
	}{
		{"mTLS and token accepted", mtlsAddr, mtlsOut,
			[]string{"-stats-sink-ca", caFile, "-stats-sink-cert", goodCert, "-stats-sink-key", goodKey, "-stats-sink-token-file", token}, ""},
		{"wrong token", mtlsAddr, mtlsOut,
			[]string{"-stats-sink-ca", caFile, "-stats-sink-cert", goodCert, "-stats-sink-key", goodKey, "-stats-sink-token-file", wrongToken},
			"stats sink refused this edge's credentials"},
		{"client certificate of another CA", mtlsAddr, mtlsOut,
			[]string{"-stats-sink-ca", caFile, "-stats-sink-cert", badCert, "-stats-sink-key", badKey, "-stats-sink-token-file", token},
			"stats sink TLS handshake failed"},
		{"no client certificate", mtlsAddr, mtlsOut,
			[]string{"-stats-sink-ca", caFile, "-stats-sink-token-file", token}, "stats sink TLS handshake failed"},
		{"server name accepted", namedAddr, namedOut,
			[]string{"-stats-sink-ca", caFile, "-stats-sink-server-name", "collector.test"}, ""},
		{"server name mismatch", namedAddr, namedOut,
			[]string{"-stats-sink-ca", caFile}, "stats sink TLS handshake failed"},
		{"sink's CA unknown", namedAddr, namedOut,
			[]string{"-stats-sink-tls", "-stats-sink-server-name", "collector.test"}, "stats sink TLS handshake failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			edge := strings.ReplaceAll(tt.name, " ", "-")
			g := startGateway(t, append([]string{"-root", root, "-stats-sink", tt.addr, "-edge-id", edge}, tt.args...)...)
			delivered := func() bool {
				mu.Lock()
				defer mu.Unlock()
				for _, ev := range events(t, tt.out.Bytes()) {
					if s := ev.GetSession(); s != nil && s.EdgeId == edge {
						return ev.Sequence == 1 && ev.Instance != ""
					}
				}
				return false
			}
			// Sessions keep ending (ERROR 1) for about a second.
			for i := 0; i < 5; i++ {
				c := newPeer(t)
				c.rrq(g.port, "missing")
				if b := c.recv(5 * time.Second); len(b) < 4 || b[1] != 5 {
					t.Fatalf("want ERROR, got %q", b)
				}
				time.Sleep(200 * time.Millisecond)
			}
			if tt.wantLog == "" {
				for i := 0; i < 500 && !delivered(); i++ {
					time.Sleep(10 * time.Millisecond)
				}
				if !delivered() {
					t.Fatalf("no event from %s at the sink\n%s", edge, g.logText())
				}
				if errs := logLines(g, "ERROR", ""); len(errs) != 0 {
					t.Errorf("errors logged: %q", errs)
				}
				return
			}
			for i := 0; i < 500 && len(logLines(g, "ERROR", "")) == 0; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			// The publisher retries after 0.1, 0.2, 0.4, 0.8 s...: two
			// seconds more see several batches fail.
			time.Sleep(2 * time.Second)
			if delivered() {
				t.Errorf("the sink accepted an event")
			}
			errs := logLines(g, "ERROR", "")
			if len(errs) != 1 || !strings.Contains(errs[0], tt.wantLog) {
				t.Errorf("want one ERROR line %q, got %q\n%s", tt.wantLog, errs, g.logText())
			}
			// Stopping would wait up to 5 s for the sink: not the point.
			g.cmd.Process.Kill()
		})
	}
}

var (
	collectorOnce sync.Once
	collectorPath string
	collectorErr  error
)

// collectorBin builds tftp-collector next to the tftpgw binary, once.
func collectorBin(t *testing.T) string {
	t.Helper()
	collectorOnce.Do(func() {
		collectorPath = filepath.Join(filepath.Dir(binPath), "tftp-collector")
		out, err := exec.Command("go", "build", "-o", collectorPath, "../tftp-collector").CombinedOutput()
		if err != nil {
			collectorErr = fmt.Errorf("go build tftp-collector: %v\n%s", err, out)
		}
	})
	if collectorErr != nil {
		t.Fatal(collectorErr)
	}
	return collectorPath
}

var collectingRE = regexp.MustCompile(`"msg":"collecting stats".*?"addr":"([0-9.:]+)"`)

// TestStatsToRealCollectorOverMTLS: tftpgw streams its stats to a real
// tftp-collector over mutual TLS with a token; the collector writes the
// session, numbered, and the final report sent at shutdown.
func TestStatsToRealCollectorOverMTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "test CA")
	caFile := ca.WriteCert(t, dir, "ca.pem")
	srvCert, srvKey := testpki.WriteKeyPair(t, dir, "server", ca.Issue(t, "leaf", true))
	edgeCert, edgeKey := testpki.WriteKeyPair(t, dir, "edge", ca.Issue(t, "leaf", false))
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("s3cret\n"), 0o600)
	out := filepath.Join(dir, "stats.jsonl")

	col := exec.Command(collectorBin(t), "-listen", "127.0.0.1:0", "-out", out, "-log-format", "json",
		"-tls-cert", srvCert, "-tls-key", srvKey, "-client-ca", caFile, "-token-file", token)
	var colLog syncbuf.Buffer
	col.Stderr = &colLog
	if err := col.Start(); err != nil {
		t.Fatal(err)
	}
	colDone := make(chan error, 1)
	go func() { colDone <- col.Wait() }()
	defer func() {
		col.Process.Signal(syscall.SIGTERM)
		select {
		case <-colDone:
		case <-time.After(15 * time.Second):
			col.Process.Kill()
			<-colDone
		}
	}()
	var addr string
	for i := 0; i < 1000 && addr == ""; i++ {
		if m := collectingRE.FindStringSubmatch(colLog.String()); m != nil {
			addr = m[1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	if addr == "" {
		t.Fatalf("tftp-collector did not start:\n%s", colLog.String())
	}

	root := t.TempDir()
	want := randomFile(t, root, "f", 1500)
	g := startGateway(t, "-root", root, "-edge-id", "edge-mtls", "-stats-sink", addr, "-stats-sink-ca", caFile,
		"-stats-sink-cert", edgeCert, "-stats-sink-key", edgeKey, "-stats-sink-token-file", token)
	c := newPeer(t)
	c.rrq(g.port, "f")
	var got []byte
	for block := uint16(1); block <= 3; block++ {
		got = append(got, c.expectData(block)...)
		c.ack(block)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes", len(got))
	}
	g.waitLog(t, `"msg":"session end"`)
	g.cmd.Process.Signal(syscall.SIGTERM)
	if err := g.wait(t, 15*time.Second); err != nil {
		t.Fatalf("tftpgw: %v\n%s", err, g.logText())
	}
	b, _ := os.ReadFile(out)
	evs := events(t, b)
	if len(evs) != 2 {
		t.Fatalf("collector wrote %d events, want the session and the final report:\n%s\n%s", len(evs), b, g.logText())
	}
	s, r := evs[0].GetSession(), evs[1].GetServer()
	if s == nil || s.EdgeId != "edge-mtls" || s.BytesAcked != 1500 || evs[0].Sequence != 1 ||
		r == nil || !r.Final || r.Total.SessionsOk != 1 || evs[1].Sequence != 2 || evs[0].Instance != evs[1].Instance {
		t.Errorf("events:\n%s", b)
	}
}
