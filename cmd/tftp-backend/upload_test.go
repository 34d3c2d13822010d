package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
)

func TestUploadFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name    string
		args    []string
		allow   []string // the policy's, when ok
		path    string
		maxSize int64
		err     string // in the error; "" for none
	}{
		{name: "off", args: []string{"-root", dir}},
		{name: "defaults", args: []string{"-root", dir, "-upload-dir", dir}, allow: []string{"**"}, path: "{path}"},
		{name: "upload-dir alone is a source", args: []string{"-upload-dir", dir}, allow: []string{"**"}, path: "{path}"},
		{name: "every flag", args: []string{"-upload-dir", dir, "-upload-allow", "configs/*.cfg, dumps/**", "-upload-max-size", "64MiB",
			"-upload-overwrite", "-upload-path", "{client_ip}/{path}", "-upload-serve"},
			allow: []string{"configs/*.cfg", "dumps/**"}, path: "{client_ip}/{path}", maxSize: 64 << 20},
		{name: "alternatives keep their commas", args: []string{"-upload-dir", dir, "-upload-allow", "{a,b}/*,c/{d,e}/**,f\\,g"},
			allow: []string{"{a,b}/*", "c/{d,e}/**", "f\\,g"}, path: "{path}"},
		{name: "max size in bytes", args: []string{"-upload-dir", dir, "-upload-max-size", "1000"}, allow: []string{"**"}, path: "{path}", maxSize: 1000},

		{name: "allow without dir", args: []string{"-root", dir, "-upload-allow", "x/*"}, err: "-upload-allow: needs -upload-dir"},
		{name: "several without dir", args: []string{"-root", dir, "-upload-overwrite", "-upload-serve"}, err: "-upload-overwrite, -upload-serve: needs -upload-dir"},
		{name: "bad glob", args: []string{"-upload-dir", dir, "-upload-allow", "ok/*,a/[b"}, err: `-upload-allow: "a/[b" is not a valid pattern`},
		{name: "empty glob", args: []string{"-upload-dir", dir, "-upload-allow", "a,,b"}, err: "-upload-allow"},
		{name: "no glob", args: []string{"-upload-dir", dir, "-upload-allow", ""}, err: "-upload-allow"},
		{name: "unknown placeholder", args: []string{"-upload-dir", dir, "-upload-path", "{mac}/{path}"}, err: `-upload-path "{mac}/{path}": unknown placeholder {mac}`},
		{name: "escaping path", args: []string{"-upload-dir", dir, "-upload-path", "../{path}"}, err: "-upload-path"},
		{name: "empty path", args: []string{"-upload-dir", dir, "-upload-path", ""}, err: "-upload-path"},
		{name: "negative size", args: []string{"-upload-dir", dir, "-upload-max-size", "-1"}, err: "-upload-max-size"},
		{name: "bad size", args: []string{"-upload-dir", dir, "-upload-max-size", "lots"}, err: "-upload-max-size"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseFlags(tt.args, io.Discard)
			switch {
			case tt.err != "":
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("%v, want an error with %q", err, tt.err)
				}
				return
			case err != nil:
				t.Fatal(err)
			case tt.allow == nil:
				if c.uploadPolicy != nil {
					t.Errorf("uploads on: %+v", c.uploadPolicy)
				}
				return
			}
			p := c.uploadPolicy
			if p == nil || !slices.Equal(p.Allow, tt.allow) || p.Path != tt.path || p.MaxSize != tt.maxSize {
				t.Errorf("policy %+v, want allow %q, path %q, max size %d", p, tt.allow, tt.path, tt.maxSize)
			}
		})
	}
}

// TestUploadDirChecked: at start, -upload-dir must be a directory the
// backend can create files in; the error names the flag.
func TestUploadDirChecked(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeFile(t, file, "x")
	readOnly := filepath.Join(dir, "ro")
	if err := os.Mkdir(readOnly, 0o555); err != nil {
		t.Fatal(err)
	}
	cases := [][]string{
		{"-upload-dir", filepath.Join(dir, "missing")},
		{"-upload-dir", file},
		{"-root", dir, "-upload-dir", filepath.Join(dir, "missing"), "-upload-serve"},
	}
	if os.Geteuid() != 0 { // root writes anywhere
		cases = append(cases, []string{"-upload-dir", readOnly})
	}
	for _, args := range cases {
		err := run(t.Context(), append([]string{"-listen", "127.0.0.1:0"}, args...), io.Discard, nil, nil)
		if err == nil || !strings.Contains(err.Error(), "-upload-dir") {
			t.Errorf("%q: %v, want an error naming -upload-dir", args, err)
		}
	}
	if names := files(t, dir); !slices.Equal(names, []string{"file", "ro"}) {
		t.Errorf("the check left %q", names)
	}
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// storeUpload stores data at path through the write handler that args
// make, as the backend's Write calls would, from client 192.168.0.1.
func storeUpload(t *testing.T, args []string, path, data string) error {
	t.Helper()
	c, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	h, err := uploads(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	u, err := h.ReceiveTFTP(t.Context(), &gateway.Request{Path: path, RawPath: path, Mode: "octet",
		RemoteAddr: netip.MustParseAddrPort("192.168.0.1:2000")})
	if err != nil {
		return err
	}
	if _, err := u.Write([]byte(data)); err != nil {
		u.Abort()
		return err
	}
	if err := u.Commit(); err != nil {
		u.Abort()
		return err
	}
	return nil
}

// TestUploadServe: with -upload-serve, a stored upload is read back
// through the backend's Read, after -root's files (which win) and before
// -http-upstream; without it, it is not found. With -upload-dir equal to
// -root, the uploads are -root's files.
func TestUploadServe(t *testing.T) {
	root, up := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(root, "both"), "from root")
	writeFile(t, filepath.Join(up, "both"), "from uploads")
	args := []string{"-root", root, "-upload-dir", up, "-upload-serve", "-upload-path", "{client_ip}/{path}"}
	if err := storeUpload(t, args, "configs/sw1", "hostname sw1"); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(up, "192.168.0.1/configs/sw1")); err != nil || string(got) != "hostname sw1" {
		t.Fatalf("stored %q, %v", got, err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn := connect(t, startBackend(t, args...), nil)
	for path, want := range map[string]string{"192.168.0.1/configs/sw1": "hostname sw1", "both": "from root"} {
		if got, err := fetch(ctx, conn, path); err != nil || got != want {
			t.Errorf("-upload-serve: %s: %q, %v; want %q", path, got, err, want)
		}
	}

	conn = connect(t, startBackend(t, "-root", root, "-upload-dir", up), nil)
	if _, err := fetch(ctx, conn, "192.168.0.1/configs/sw1"); status.Code(err) != codes.NotFound {
		t.Errorf("without -upload-serve: %v, want NOT_FOUND", err)
	}

	same := []string{"-root", up, "-upload-dir", up, "-upload-serve"}
	if err := storeUpload(t, same, "k", "kernel"); err != nil {
		t.Fatal(err)
	}
	conn = connect(t, startBackend(t, same...), nil)
	if got, err := fetch(ctx, conn, "k"); err != nil || got != "kernel" {
		t.Errorf("-upload-dir = -root: %q, %v", got, err)
	}

	// -upload-dir alone: a backend that only takes uploads.
	conn = connect(t, startBackend(t, "-upload-dir", up), nil)
	if _, err := fetch(ctx, conn, "k"); status.Code(err) != codes.NotFound {
		t.Errorf("-upload-dir alone: %v, want NOT_FOUND", err)
	}
}

// TestUploadsLogged: one line at start says that uploads are on, and
// where.
func TestUploadsLogged(t *testing.T) {
	up := t.TempDir()
	var out syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-upload-dir", up, "-upload-max-size", "1MiB"}, &out,
			func(net.Addr) { close(started) }, nil)
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("backend did not start")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	var lines []string
	for l := range strings.Lines(out.String()) {
		if strings.Contains(l, "uploads") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "dir="+up) || !strings.Contains(lines[0], "max_size=1048576") {
		t.Errorf("upload lines %q", lines)
	}
}

func TestUploadUsage(t *testing.T) {
	var out strings.Builder
	if _, err := parseFlags([]string{"-h"}, &out); err == nil {
		t.Fatal("-h: no error")
	}
	for _, f := range []string{"-upload-dir dir", "-upload-allow globs", "-upload-max-size bytes", "-upload-overwrite", "-upload-path template", "-upload-serve"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("usage lacks %q", f)
		}
	}
}
