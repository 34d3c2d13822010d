package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/tftpgw/tftpgw/backend"
	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/testpki"
)

// End-to-end tests of -backend: the tftpgw binary, content services made
// with the backend SDK in this process, and real TFTP clients.

// sdkBackend is a content service serving dir.
type sdkBackend struct {
	addr   string
	srv    *grpc.Server
	once   sync.Once
	mu     sync.Mutex
	calls  int
	protos map[gateway.Protocol]int // the calls by the protocol they came by
}

func (b *sdkBackend) stop() { b.once.Do(b.srv.Stop) }

func (b *sdkBackend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

// byProtocol returns the calls made for the protocol p.
func (b *sdkBackend) byProtocol(p gateway.Protocol) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.protos[p]
}

// startSDKBackend serves dir on ln (a fresh loopback port if nil). Reads
// are slowed down by delay per read, to keep transfers running.
func startSDKBackend(t *testing.T, ln net.Listener, dir string, delay time.Duration, cfg backend.Config) *sdkBackend {
	t.Helper()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	fs := gateway.FileServer(root)
	b := &sdkBackend{addr: ln.Addr().String(), protos: map[gateway.Protocol]int{}}
	h := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		b.mu.Lock()
		b.calls++
		b.protos[req.Protocol]++
		b.mu.Unlock()
		c, err := fs.ServeTFTP(ctx, req)
		if err != nil || delay == 0 {
			return c, err
		}
		return &slowContent{InfoContent: c.(gateway.InfoContent), delay: delay}, nil
	})
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	b.srv = backend.NewServer(h, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		b.stop()
		<-done
	})
	return b
}

// slowContent sleeps before every read; it keeps Seek for resuming.
type slowContent struct {
	gateway.InfoContent
	delay time.Duration
}

func (c *slowContent) Read(p []byte) (int, error) {
	time.Sleep(c.delay)
	return c.InfoContent.Read(p)
}

func (c *slowContent) Seek(off int64, whence int) (int64, error) {
	return c.InfoContent.(io.Seeker).Seek(off, whence)
}

func curlGet(t *testing.T, port int, name, local string, extra ...string) (string, error) {
	t.Helper()
	bin := needClient(t, "curl")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"-sS", "--tftp-blksize", "1468", "-o", local}, extra...)
	args = append(args, "tftp://127.0.0.1:"+strconv.Itoa(port)+"/"+name)
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

// hpaGet fetches name with tftp-hpa, which prints the server's ERROR
// message (curl does not).
func hpaGet(t *testing.T, port int, name, local string) (string, error) {
	t.Helper()
	bin := needClient(t, "tftp")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "127.0.0.1", strconv.Itoa(port), "-m", "binary", "-c", "get", name, local).CombinedOutput()
	if err == nil && strings.Contains(string(out), "Error code") {
		err = errors.New("tftp-hpa reported an error") // its exit status is 0
	}
	return string(out), err
}

func sameFile(t *testing.T, got, want string) {
	t.Helper()
	a, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(want)
	if !bytes.Equal(a, b) {
		t.Fatalf("%s: %d bytes, want %d", filepath.Base(want), len(a), len(b))
	}
}

// logLines returns the gateway's JSON log lines with the given level whose
// message contains msg.
func logLines(g *gw, level, msg string) []string {
	var out []string
	for line := range strings.SplitSeq(g.logText(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["level"] == level && strings.Contains(m["msg"].(string), msg) {
			out = append(out, line)
		}
	}
	return out
}

func TestBackendRealClients(t *testing.T) {
	root := t.TempDir()
	sizes := testFiles(t, root)
	a := startSDKBackend(t, nil, root, 0, backend.Config{})
	b := startSDKBackend(t, nil, root, 0, backend.Config{})
	g := startGateway(t, "-backend", a.addr+","+b.addr, "-edge-id", "e2e")
	port := strconv.Itoa(g.port)
	t.Cleanup(func() {
		if strings.Contains(g.logText(), "no backend takes calls yet") {
			t.Errorf("warned that no backend takes calls, with two up:\n%s", g.logText())
		}
	})
	clients := []struct {
		name string
		bin  string
		argv func(remote, local string) []string
	}{
		{"curl_blksize_1468", "curl", func(r, l string) []string {
			return []string{"-sS", "--tftp-blksize", "1468", "-o", l, "tftp://127.0.0.1:" + port + "/" + r}
		}},
		{"tftp-hpa", "tftp", func(r, l string) []string {
			return []string{"127.0.0.1", port, "-m", "binary", "-c", "get", r, l}
		}},
		{"atftp_windowsize_8", "atftp", func(r, l string) []string {
			return []string{"--option", "windowsize 8", "-g", "-r", r, "-l", l, "127.0.0.1", port}
		}},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			bin := needClient(t, c.bin)
			for name, size := range sizes {
				if size > 4<<20 && c.name != "curl_blksize_1468" {
					continue // the big file once is enough
				}
				t.Run(name, func(t *testing.T) {
					local := filepath.Join(t.TempDir(), "out")
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					defer cancel()
					out, err := exec.CommandContext(ctx, bin, c.argv(name, local)...).CombinedOutput()
					got, rerr := os.ReadFile(local)
					want, _ := os.ReadFile(filepath.Join(root, name))
					if rerr != nil && len(want) == 0 && err == nil {
						return
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("%s: got %d bytes, want %d (err %v)\n%s", name, len(got), len(want), err, out)
					}
				})
			}
		})
	}
	if a.count() == 0 || b.count() == 0 {
		t.Errorf("not balanced: %d and %d calls", a.count(), b.count())
	}
}

func TestBackendKilledMidTransferIsResumed(t *testing.T) {
	root := t.TempDir()
	want := filepath.Join(root, "big.bin")
	data := make([]byte, 8<<20)
	rand.Read(data)
	if err := os.WriteFile(want, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// 64 KiB chunks every 10 ms: the transfer takes over a second.
	a := startSDKBackend(t, nil, root, 10*time.Millisecond, backend.Config{})
	b := startSDKBackend(t, nil, root, 10*time.Millisecond, backend.Config{})
	g := startGateway(t, "-backend", a.addr+","+b.addr)
	go func() {
		time.Sleep(300 * time.Millisecond)
		if a.count() > 0 {
			a.stop()
		} else {
			b.stop()
		}
	}()
	local := filepath.Join(t.TempDir(), "out")
	if out, err := curlGet(t, g.port, "big.bin", local); err != nil {
		t.Fatalf("curl: %v\n%s\n%s", err, out, g.logText())
	}
	sameFile(t, local, want)
	if len(logLines(g, "INFO", "resuming")) == 0 {
		t.Errorf("no resume logged:\n%s", g.logText())
	}
}

func TestBackendDownThenUp(t *testing.T) {
	root := t.TempDir()
	testFiles(t, root)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	g := startGateway(t, "-backend", addr, "-backend-header-timeout", "500ms", "-metrics", "127.0.0.1:0")
	local := filepath.Join(t.TempDir(), "out")
	start := time.Now()
	out, err := hpaGet(t, g.port, "small.txt", local)
	if err == nil || !strings.Contains(out, "backend timeout") {
		t.Fatalf("curl with no backend: %v\n%s", err, out)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("ERROR after %s", d)
	}
	// Said at start (found in operator review: only the first failed
	// request said anything).
	g.waitLog(t, "no backend takes calls yet")
	// The alert on backend errors (docs/operations.md) must see a backend
	// that is down: the call that missed its header budget is counted.
	resp, err := http.Get("http://" + metricsAddr(t, g) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`(?m)^tftpgw_backend_errors_total\{code="DeadlineExceeded"\} [1-9]`).Match(body) {
		t.Errorf("no tftpgw_backend_errors_total{code=\"DeadlineExceeded\"} with the backend down:\n%s", body)
	}
	if ln, err = net.Listen("tcp", addr); err != nil {
		t.Skipf("port taken meanwhile: %v", err)
	}
	startSDKBackend(t, ln, root, 0, backend.Config{})
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := curlGet(t, g.port, "small.txt", local)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend never used: %v\n%s", err, out)
		}
	}
	sameFile(t, local, filepath.Join(root, "small.txt"))
}

func TestBackendCredentialFlags(t *testing.T) {
	root := t.TempDir()
	testFiles(t, root)
	dir := t.TempDir()
	ca := testpki.NewCA(t, "test CA")
	other := testpki.NewCA(t, "test CA")
	caFile := ca.WriteCert(t, dir, "ca.pem")
	srvCert := ca.Issue(t, "leaf", true)
	goodCert, goodKey := testpki.WriteKeyPair(t, dir, "good", ca.Issue(t, "leaf", false))
	badCert, badKey := testpki.WriteKeyPair(t, dir, "bad", other.Issue(t, "leaf", false))
	token := filepath.Join(dir, "token")
	wrongToken := filepath.Join(dir, "wrong")
	os.WriteFile(token, []byte("s3cret\n"), 0o600)
	os.WriteFile(wrongToken, []byte("nope\n"), 0o600)

	mtls := startSDKBackend(t, nil, root, 0, backend.Config{TLS: &tls.Config{
		Certificates: []tls.Certificate{srvCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool,
	}, Token: "s3cret"})
	tests := []struct {
		name    string
		args    []string
		wantErr string // in curl's output; empty for success
		wantLog string // the single ERROR line
	}{
		{"mTLS and token accepted", []string{"-backend-ca", caFile, "-backend-cert", goodCert, "-backend-key", goodKey, "-backend-token-file", token}, "", ""},
		{"wrong client certificate", []string{"-backend-ca", caFile, "-backend-cert", badCert, "-backend-key", badKey, "-backend-token-file", token}, "backend timeout", "TLS client certificate"},
		{"no client certificate", []string{"-backend-ca", caFile, "-backend-token-file", token}, "backend timeout", "TLS client certificate"},
		{"wrong token", []string{"-backend-ca", caFile, "-backend-cert", goodCert, "-backend-key", goodKey, "-backend-token-file", wrongToken}, "access violation", "credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, append([]string{"-backend", mtls.addr, "-backend-header-timeout", "500ms"}, tt.args...)...)
			local := filepath.Join(t.TempDir(), "out")
			for range 3 {
				out, err := hpaGet(t, g.port, "small.txt", local)
				if tt.wantErr == "" {
					if err != nil {
						t.Fatalf("curl: %v\n%s\n%s", err, out, g.logText())
					}
					sameFile(t, local, filepath.Join(root, "small.txt"))
				} else if err == nil || !strings.Contains(out, tt.wantErr) {
					t.Fatalf("curl: %v %q, want %q", err, out, tt.wantErr)
				}
			}
			errs := logLines(g, "ERROR", "")
			if tt.wantLog == "" && len(errs) != 0 || tt.wantLog != "" && (len(errs) != 1 || !strings.Contains(errs[0], tt.wantLog)) {
				t.Errorf("want one ERROR line about %q, got %q", tt.wantLog, errs)
			}
		})
	}
	t.Run("token refused in plaintext to a remote host", func(t *testing.T) {
		out, err := exec.Command(binPath, "-listen", "127.0.0.1:0", "-backend", "192.0.2.1:7000", "-backend-token-file", token).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "plaintext") {
			t.Errorf("tftpgw: %v\n%s", err, out)
		}
	})
}
