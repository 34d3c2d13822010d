package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/backend"
	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/gateway/upload"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// putFile uploads content to name on the edge at port from the loopback
// address from, declaring its size when declare is set.
func putFile(t *testing.T, from string, port int, name string, content []byte, declare bool) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := tftpclient.Put(ctx, "127.0.0.1:"+strconv.Itoa(port), name, bytes.NewReader(content), int64(len(content)),
		tftpclient.Options{BlockSize: 1468, WindowSize: 4, TSize: declare, LocalAddr: netip.MustParseAddr(from), RetransmitTimeout: 500 * time.Millisecond})
	return err
}

// tftpCode returns the TFTP error code of err, -1 if it is none.
func tftpCode(err error) int {
	var te *tftpclient.Error
	if errors.As(err, &te) {
		return int(te.Code)
	}
	return -1
}

// leftovers returns the names under dir that are not in want: a half
// upload's temporary file, or a file stored where none should be.
func leftovers(t *testing.T, dir string, want ...string) []string {
	t.Helper()
	var extra []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		for _, w := range want {
			if rel == w {
				return nil
			}
		}
		extra = append(extra, rel)
		return nil
	})
	return extra
}

// TestUploadsOffByDefault: without -upload-allow a write request gets
// ERROR 2 from the listening port, as before uploads existed.
func TestUploadsOffByDefault(t *testing.T) {
	root := t.TempDir()
	g := startGateway(t, "-root", root)
	c := gatewaytest.NewClient(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(g.port)))
	c.WRQ("a-name-long-enough-for-the-whole-message", "octet")
	c.ExpectFrom(c.Server(), gatewaytest.ErrorPacket(2, "read-only server"))
	if extra := leftovers(t, root); len(extra) > 0 {
		t.Errorf("files appeared: %v", extra)
	}
}

// TestUploadsToRoot: with -root, uploads of allowed paths are stored in
// the directory and read back; an existing file is not replaced (ERROR
// 6), a path not allowed gets ERROR 2, and an upload over
// -upload-max-size gets ERROR 3, before any data when it declares its
// size and at the limit when it does not; nothing of a refused upload
// is left in the directory.
func TestUploadsToRoot(t *testing.T) {
	root := t.TempDir()
	g := startGateway(t, "-root", root, "-upload-allow", "configs/**,dumps/*.core", "-upload-max-size", "100KiB")
	cfg := gatewaytest.Pattern(3000)
	if err := putFile(t, "127.0.0.1", g.port, "configs/sw1/running.cfg", cfg, true); err != nil {
		t.Fatalf("upload: %v", err)
	}
	sameBytes(t, filepath.Join(root, "configs/sw1/running.cfg"), cfg)
	srv := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(g.port))
	if got, err := fetch(t, "127.0.0.1", srv, "configs/sw1/running.cfg"); err != nil || !bytes.Equal(got, cfg) {
		t.Errorf("read back: %d bytes, %v", len(got), err)
	}
	for _, tc := range []struct {
		name    string
		path    string
		size    int
		declare bool
		code    int
	}{
		{"exists_is_error_6", "configs/sw1/running.cfg", 10, true, 6},
		{"path_not_allowed_is_error_2", "boot/evil.efi", 10, true, 2},
		{"glob_stays_in_its_element", "dumps/a/b.core", 10, true, 2},
		{"declared_over_limit_is_error_3", "dumps/big.core", 100<<10 + 1, true, 3},
		{"undeclared_over_limit_is_error_3", "dumps/big.core", 100<<10 + 1, false, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := putFile(t, "127.0.0.1", g.port, tc.path, gatewaytest.Pattern(tc.size), tc.declare)
			if tftpCode(err) != tc.code {
				t.Fatalf("got %v, want ERROR %d", err, tc.code)
			}
		})
	}
	sameBytes(t, filepath.Join(root, "configs/sw1/running.cfg"), cfg)
	if err := putFile(t, "127.0.0.1", g.port, "dumps/ok.core", gatewaytest.Pattern(100<<10), false); err != nil {
		t.Fatalf("an upload of exactly -upload-max-size: %v", err)
	}
	if extra := leftovers(t, root, "configs/sw1/running.cfg", "dumps/ok.core"); len(extra) > 0 {
		t.Errorf("left in the root: %v", extra)
	}
	if !strings.Contains(g.logText(), `"msg":"uploads on"`) {
		t.Errorf("no start-up line about uploads:\n%s", g.logText())
	}
}

// TestUploadPathPerClientAndOverwrite: -upload-path places each client's
// uploads in a directory of its own, and -upload-overwrite lets a second
// upload replace the first.
func TestUploadPathPerClientAndOverwrite(t *testing.T) {
	root := t.TempDir()
	g := startGateway(t, "-root", root, "-upload-allow", "*.cfg", "-upload-path", "backups/{client_ip}/{path}", "-upload-overwrite")
	for i, from := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.2"} {
		content := []byte("config " + strconv.Itoa(i) + " from " + from)
		if err := putFile(t, from, g.port, "switch.cfg", content, false); err != nil {
			t.Fatalf("upload %d from %s: %v", i, from, err)
		}
		sameBytes(t, filepath.Join(root, "backups", from, "switch.cfg"), content)
	}
	if extra := leftovers(t, root, "backups/127.0.0.2/switch.cfg", "backups/127.0.0.3/switch.cfg"); len(extra) > 0 {
		t.Errorf("left in the root: %v", extra)
	}
	g.waitLog(t, `"rewritten":"backups/127.0.0.3/switch.cfg"`) // the session's line shows where the upload went
}

// TestUploadConfigPolicy: the configuration file's upload section and a
// policy rule that refuses uploads to one network: its clients get ERROR
// 2 "uploads not allowed" from the listening port and can still read;
// others upload. A reload (SIGHUP) that widens upload.allow takes effect
// for the next upload.
func TestUploadConfigPolicy(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "hello.txt"), []byte("hello"), 0o644)
	port := freeUDPPort(t)
	text := func(allow string) string {
		return "listen: 127.0.0.1:" + strconv.Itoa(port) + "\nroot: " + root + "\n" +
			"upload: {allow: [" + allow + "], max_size: 1MiB, path: \"{client_ip}/{path}\"}\n" +
			"policy:\n  - {clients: [127.0.0.3/32], uploads: false}\n"
	}
	conf := writeConfig(t, text(`"*.cfg"`))
	g := startGateway(t, "-config", conf, "-listen", "127.0.0.1:"+strconv.Itoa(port))
	g.port = port // the -listen given last
	if err := putFile(t, "127.0.0.2", g.port, "a.cfg", []byte("a"), true); err != nil {
		t.Fatalf("allowed client: %v", err)
	}
	sameBytes(t, filepath.Join(root, "127.0.0.2/a.cfg"), []byte("a"))
	c := gatewaytest.NewClientOn(t, "udp4", "127.0.0.3:0", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)))
	c.WRQ("a-name-long-enough-for-the-message.cfg", "octet")
	c.ExpectFrom(c.Server(), gatewaytest.ErrorPacket(2, "uploads not allowed"))
	srv := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	if got, err := fetch(t, "127.0.0.3", srv, "hello.txt"); err != nil || string(got) != "hello" {
		t.Errorf("a read from the network without uploads: %q, %v", got, err)
	}
	if err := putFile(t, "127.0.0.2", g.port, "b.txt", []byte("b"), true); tftpCode(err) != 2 {
		t.Fatalf("b.txt before the reload: %v, want ERROR 2", err)
	}
	if err := os.WriteFile(conf, []byte(text(`"*.cfg", "*.txt"`)), 0o644); err != nil {
		t.Fatal(err)
	}
	g.cmd.Process.Signal(syscall.SIGHUP)
	g.waitLog(t, "configuration reloaded")
	if err := putFile(t, "127.0.0.2", g.port, "b.txt", []byte("b"), true); err != nil {
		t.Fatalf("b.txt after the reload: %v", err)
	}
	sameBytes(t, filepath.Join(root, "127.0.0.2/b.txt"), []byte("b"))
}

// abortRecorder is a write handler that records the uploads aborted.
type abortRecorder struct {
	next    gateway.WriteHandler
	mu      sync.Mutex
	aborted []string
	ctxDone []bool // whether the call's context was cancelled when Abort came
}

type recordedUpload struct {
	gateway.Upload
	ctx  context.Context
	r    *abortRecorder
	path string
}

func (a *abortRecorder) ReceiveTFTP(ctx context.Context, req *gateway.Request) (gateway.Upload, error) {
	u, err := a.next.ReceiveTFTP(ctx, req)
	if err != nil {
		return nil, err
	}
	return &recordedUpload{Upload: u, ctx: ctx, r: a, path: req.Path}, nil
}

func (u *recordedUpload) Abort() {
	u.Upload.Abort()
	u.r.mu.Lock()
	defer u.r.mu.Unlock()
	u.r.aborted = append(u.r.aborted, u.path)
	u.r.ctxDone = append(u.r.ctxDone, u.ctx.Err() != nil)
}

func (a *abortRecorder) seen() ([]string, []bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.aborted...), append([]bool(nil), a.ctxDone...)
}

// TestUploadClientKilledMidUpload: a client that goes away in the middle
// of an upload through -backend: the edge gives up on it and cancels the
// Write call, the backend sees the cancellation and aborts, and nothing
// is left under the final name (nor a temporary file). A complete upload
// through the same backend is stored.
func TestUploadClientKilledMidUpload(t *testing.T) {
	dir := t.TempDir()
	rec := &abortRecorder{next: &upload.Dir{Root: dir}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := backend.NewServer(gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
		return nil, os.ErrNotExist
	}), backend.Config{WriteHandler: rec, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })

	g := startGateway(t, "-backend", ln.Addr().String(), "-upload-allow", "**", "-timeout", "100ms", "-retries", "2")
	c := gatewaytest.NewClient(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(g.port)))
	c.WRQ("dumps/crash.core", "octet")
	c.Expect(gatewaytest.Ack(0))
	for blk := uint16(1); blk <= 3; blk++ {
		c.Send(gatewaytest.Data(blk, gatewaytest.Pattern(512)))
		c.Expect(gatewaytest.Ack(blk))
	}
	// The client is gone: nothing more is sent.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if aborted, cancelled := rec.seen(); len(aborted) == 1 {
			if !cancelled[0] {
				t.Errorf("Abort came before the call was cancelled")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the backend saw no abort; log:\n%s", g.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if extra := leftovers(t, dir); len(extra) > 0 {
		t.Fatalf("left after the abort: %v", extra)
	}
	content := gatewaytest.Pattern(200 << 10)
	if err := putFile(t, "127.0.0.1", g.port, "dumps/crash.core", content, true); err != nil {
		t.Fatalf("a complete upload: %v", err)
	}
	sameBytes(t, filepath.Join(dir, "dumps/crash.core"), content)
	g.waitLog(t, `"outcome":"timeout"`)
}

// sameBytes fails the test unless the file at p holds want.
func sameBytes(t *testing.T, p string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes, not the %d uploaded", p, len(got), len(want))
	}
}
