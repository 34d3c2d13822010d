package gateway_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// TestFileServer: files are served from the root only; escapes, directories
// and special files are refused, and messages never carry server paths.
func TestFileServer(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	must(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "boot"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "boot", "kernel"), []byte("kernel"), 0o644))
	must(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "abs-link")))
	must(t, os.Symlink("../"+filepath.Base(outside)+"/secret", filepath.Join(dir, "rel-link")))
	must(t, os.Symlink("boot/kernel", filepath.Join(dir, "inside-link")))
	must(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "unreadable"), []byte("x"), 0o000))

	root, err := os.OpenRoot(dir)
	must(t, err)
	defer root.Close()
	h := gateway.FileServer(root)

	tests := []struct {
		path      string
		want      string
		wantCode  gateway.ErrorCode
		wantCause string // in the error, for the log's cause
	}{
		{"boot/kernel", "kernel", 0, ""},
		{"inside-link", "kernel", 0, ""},
		{"missing", "", gateway.ErrFileNotFound, ""},
		// The kind in words: the mode string "d---------" read as mode 000
		// (found in operator review).
		{"boot", "", gateway.ErrAccessViolation, `"boot" is a directory`},
		{"fifo", "", gateway.ErrAccessViolation, `"fifo" is a named pipe`},
		{"abs-link", "", gateway.ErrAccessViolation, ""},
		{"rel-link", "", gateway.ErrAccessViolation, ""},
		{"../" + filepath.Base(outside) + "/secret", "", gateway.ErrAccessViolation, ""},
		{filepath.Join(outside, "secret"), "", gateway.ErrAccessViolation, ""},
	}
	// The edge cache revalidates its entries with StatContent, which must
	// report what ServeTFTP's content would, and fail where it refuses.
	st, ok := h.(interface {
		StatContent(context.Context, *gateway.Request) (int64, gateway.ContentInfo, error)
	})
	if !ok {
		t.Fatal("FileServer has no StatContent")
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			c, err := h.ServeTFTP(context.Background(), &gateway.Request{Path: tt.path})
			size, info, serr := st.StatContent(context.Background(), &gateway.Request{Path: tt.path})
			if tt.wantCode == 0 && tt.want != "" {
				if err != nil {
					t.Fatalf("ServeTFTP: %v", err)
				}
				defer c.Close()
				b, _ := io.ReadAll(c)
				if string(b) != tt.want || c.Size() != int64(len(tt.want)) {
					t.Errorf("got %q size %d, want %q", b, c.Size(), tt.want)
				}
				ic, ok := c.(gateway.InfoContent)
				if !ok || ic.Info().ETag == "" {
					t.Fatalf("no ETag")
				}
				// Elsewhere than on Linux a stat is not trusted (an error),
				// nor, as root, one through a symbolic link (the file's real
				// directories are checked when it is opened).
				statTrusted := runtime.GOOS == "linux" && !(os.Geteuid() == 0 && strings.Contains(tt.path, "link"))
				if (serr != nil && statTrusted) || (serr == nil && (size != c.Size() || info != ic.Info())) {
					t.Errorf("StatContent: %d %+v %v; the content has %d %+v", size, info, serr, c.Size(), ic.Info())
				}
				return
			}
			if serr == nil {
				t.Errorf("StatContent(%q) = %d %+v, want an error", tt.path, size, info)
			}
			if err == nil {
				c.Close()
				t.Fatalf("served %q, want refusal", tt.path)
			}
			if !strings.Contains(err.Error(), tt.wantCause) || (runtime.GOOS == "linux" && !strings.Contains(serr.Error(), tt.wantCause)) {
				t.Errorf("errors %q and %q, want them to say %q", err, serr, tt.wantCause)
			}
			e := gateway.ErrorFor(err)
			if e.Code != tt.wantCode && !(tt.wantCode == gateway.ErrAccessViolation && e.Code == gateway.ErrFileNotFound) {
				t.Errorf("code %d (%v), want %d", e.Code, err, tt.wantCode)
			}
			if filepath.IsAbs(e.Message) || len(e.Message) > 40 || containsAny(e.Message, dir, outside) {
				t.Errorf("message %q leaks a path", e.Message)
			}
		})
	}
	// Refused by the kernel, or as root by FileServer (see
	// TestFileServerOnlyWhatAnyoneMayRead).
	_, err = h.ServeTFTP(context.Background(), &gateway.Request{Path: "unreadable"})
	if e := gateway.ErrorFor(err); e.Code != gateway.ErrAccessViolation {
		t.Errorf("unreadable: code %d (%v), want 2", e.Code, err)
	}
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if x != "" && len(s) >= len(x) && (s == x || indexOf(s, x) >= 0) {
			return true
		}
	}
	return false
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// FuzzCleanPathIdempotent: cleaning a clean path changes nothing, and a
// clean path is never absolute, never has "." or ".." elements and never
// ends in a byte that cleaning drops.
func FuzzCleanPathIdempotent(f *testing.F) {
	for _, s := range []string{"a", "a\t/", "\t\\", "a/.\t/", `\Boot\BCD`, "a/../b/", "..\t/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := gateway.CleanPath(raw)
		if err != nil {
			return
		}
		q, err := gateway.CleanPath(p)
		if err != nil || q != p {
			t.Fatalf("CleanPath(%q) = %q, cleaned again %q, %v", raw, p, q, err)
		}
		for _, e := range strings.Split(p, "/") {
			if e == "" || e == "." || e == ".." {
				t.Fatalf("CleanPath(%q) = %q: element %q", raw, p, e)
			}
		}
	})
}

func TestCleanPath(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"a", "a"},
		{`\Boot\BCD`, "Boot/BCD"},
		{"///a//b///", "a/b"},
		{"a\x00", "a"},
		{"a\xff\xff", "a"},
		{"a\r\n", "a"},
		{"./a/./b", "a/b"},
		{"a/b/../c", "a/c"},
		{"é/ü", "é/ü"},
		{"..", ""},
		{"a/../..", ""},
		{"a\x00b", ""},
		{"", ""},
		{"/", ""},
		{"\xff", ""},
		// Garbage before a trailing separator (regression: found by
		// upload's FuzzPolicyPlacementStaysInside; cleaning twice gave
		// another path).
		{"a\t/", "a"},
		{"\t\\", ""},
		{"a/.\t/", "a"},
		{"a/b/..\x01\\", "a"},
		{"a/..\xff/..\t/", "a"}, // "..\xff" is a name; ".." then leaves it
	}
	for _, tt := range tests {
		got, err := gateway.CleanPath(tt.raw)
		if tt.want == "" {
			if err == nil {
				t.Errorf("CleanPath(%q) = %q, want an error", tt.raw, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
		}
	}
}

// TestFileServerETagFollowsEveryChange is a regression test (found in
// operator review): the ETag was size and mtime only, so a file replaced
// by one of the same size with its mtime kept (cp -p, rsync -a,
// reproducible builds, a same-length edit followed by touch) kept its
// ETag, and the edge cache, on by default, served the old bytes forever.
func TestFileServerETagFollowsEveryChange(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	h := gateway.FileServer(root)
	path := filepath.Join(dir, "cfg")
	stamp := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	write := func(t *testing.T, data string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, stamp, stamp); err != nil {
			t.Fatal(err)
		}
	}
	etag := func(t *testing.T) string {
		t.Helper()
		c, err := h.ServeTFTP(context.Background(), &gateway.Request{Path: "cfg"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.(gateway.InfoContent).Info().ETag
	}
	write(t, "AAAA\n")
	first := etag(t)
	if again := etag(t); again != first {
		t.Fatalf("ETag changed without a change: %q, %q", first, again)
	}
	for _, tc := range []struct {
		name   string
		change func(t *testing.T)
	}{
		{"rewritten_in_place_same_size_and_mtime", func(t *testing.T) { write(t, "BBBB\n") }},
		{"renamed_in_same_size_and_mtime", func(t *testing.T) {
			tmp := path + ".tmp"
			if err := os.WriteFile(tmp, []byte("CCCC\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(tmp, stamp, stamp); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := etag(t)
			time.Sleep(10 * time.Millisecond) // a change time the file system can tell apart
			tc.change(t)
			if after := etag(t); after == before {
				t.Errorf("ETag %q unchanged after the file changed", after)
			}
		})
	}
}

// TestFileContentIsFileServers: FileContent gives a file the content
// FileServer gives it (the same ETag, the same checks, large blocks from
// the file's pages); one that does not start at the file's start has no
// ETag and serves from where the file was.
func TestFileContentIsFileServers(t *testing.T) {
	dir := t.TempDir()
	body := gatewaytest.Pattern(3*65464 + 77)
	if err := os.WriteFile(filepath.Join(dir, "k"), body, 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	fromServer, err := gateway.FileServer(root).ServeTFTP(context.Background(), &gateway.Request{Path: "k"})
	if err != nil {
		t.Fatal(err)
	}
	defer fromServer.Close()
	open := func(off int64) gateway.Content {
		f, err := os.Open(filepath.Join(dir, "k"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		c, err := gateway.FileContent(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	whole, part := open(0), open(1000)
	defer whole.Close()
	defer part.Close()
	want := fromServer.(gateway.InfoContent).Info()
	if got := whole.(gateway.InfoContent).Info(); got != want || want.ETag == "" {
		t.Errorf("FileContent's info %+v, FileServer's %+v", got, want)
	}
	if got := part.(gateway.InfoContent).Info(); got.ETag != "" || part.Size() != int64(len(body)-1000) {
		t.Errorf("a content from offset 1000: info %+v, size %d; want no ETag, %d", got, part.Size(), len(body)-1000)
	}
	for _, tc := range []struct {
		off  int64
		want []byte
	}{{0, body}, {1000, body[1000:]}} {
		ts := gatewaytest.NewServer(t, gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
			return open(tc.off), nil
		}), gatewaytest.FixedTimer)
		var got bytes.Buffer
		if _, err := tftpclient.Get(context.Background(), ts.Addr().String(), "k", &got, tftpclient.Options{BlockSize: 65464, WindowSize: 4}); err != nil || !bytes.Equal(got.Bytes(), tc.want) {
			t.Errorf("offset %d: Get: %v, %d bytes, want %d", tc.off, err, got.Len(), len(tc.want))
		}
		ts.NextStats(t)
	}
}

// TestFileServerOnlyWhatAnyoneMayRead: run as root, FileServer serves a
// file only if anyone on the host may read it (regression: root served a
// mode-000 file, a 0600 key and files in a 0700 directory to any TFTP
// client). The client gets ERROR 2 "access violation", and the edge cache's
// StatContent refuses to vouch for the file.
func TestFileServerOnlyWhatAnyoneMayRead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: without it the kernel refuses these files (TestFileServer)")
	}
	dir := t.TempDir()
	must(t, os.Chmod(dir, 0o700)) // the root's own mode is the operator's choice: not checked
	content := []byte("boot me")
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{{"open", 0o755}, {"private", 0o700}, {"searchable", 0o711}, {"open/private", 0o750}} {
		must(t, os.Mkdir(filepath.Join(dir, d.name), d.mode))
		must(t, os.Chmod(filepath.Join(dir, d.name), d.mode)) // past the umask
	}
	files := []struct {
		path   string
		mode   os.FileMode
		served bool
	}{
		{"world-readable", 0o644, true},
		{"others-only", 0o004, true},
		{"mode-000", 0o000, false},
		{"owner-only", 0o600, false},
		{"owner-and-group", 0o640, false},
		{"executable-not-readable", 0o711, false},
		{"open/kernel", 0o644, true},
		{"searchable/kernel", 0o644, true},
		{"private/kernel", 0o644, false},
		{"open/private/kernel", 0o644, false},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.path)
		must(t, os.WriteFile(p, content, f.mode))
		must(t, os.Chmod(p, f.mode))
	}
	// Symbolic links inside the root (found in review): the directories
	// checked are those the file really is in, not those of the name.
	for _, l := range []struct {
		name, target string
		served       bool
	}{
		{"link-to-private-kernel", "private/kernel", false},
		{"link-to-open-kernel", "open/kernel", true},
		{"link-to-private-dir", "private", false},
		{"link-to-open-dir", "open", true},
	} {
		must(t, os.Symlink(l.target, filepath.Join(dir, l.name)))
		path := l.name
		if strings.HasSuffix(l.name, "-dir") {
			path += "/kernel"
		}
		files = append(files, struct {
			path   string
			mode   os.FileMode
			served bool
		}{path, 0, l.served})
	}
	root, err := os.OpenRoot(dir)
	must(t, err)
	defer root.Close()
	h := gateway.FileServer(root)
	stat := h.(interface {
		StatContent(context.Context, *gateway.Request) (int64, gateway.ContentInfo, error)
	})
	ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer)
	for _, tc := range files {
		t.Run(tc.path, func(t *testing.T) {
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ(tc.path, "octet")
			_, _, serr := stat.StatContent(context.Background(), &gateway.Request{Path: tc.path})
			if !tc.served {
				if serr == nil {
					t.Error("StatContent vouches for it")
				}
				c.Expect(gatewaytest.ErrorPacket(2, "access violation"))
				st := ts.NextStats(t)
				if st.Outcome != gateway.OutcomeError || st.BytesSent != 0 {
					t.Errorf("outcome %v, %d bytes sent", st.Outcome, st.BytesSent)
				}
				return
			}
			c.Expect(gatewaytest.Data(1, content))
			c.Ack(1)
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
				t.Errorf("outcome %v, want ok", st.Outcome)
			}
		})
	}
}

// TestFileServerRootRenamed: as root (where each file's real directories
// are checked against the root's real path), a root directory renamed
// while served still serves its files, where they are now (found in
// review: after "mv tftp tftp.old", every file of the directory still
// served was "outside the root", ERROR 2, while tftpgw followed -root's
// path to the new tree).
func TestFileServerRootRenamed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only then are a file's real directories checked")
	}
	base := t.TempDir()
	must(t, os.Mkdir(filepath.Join(base, "tftp"), 0o755))
	must(t, os.MkdirAll(filepath.Join(base, "tftp", "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(base, "tftp", "sub", "f"), []byte("served"), 0o644))
	root, err := os.OpenRoot(filepath.Join(base, "tftp"))
	must(t, err)
	defer root.Close()
	h := gateway.FileServer(root)
	must(t, os.Rename(filepath.Join(base, "tftp"), filepath.Join(base, "tftp.old")))
	c, err := h.ServeTFTP(context.Background(), &gateway.Request{Path: "sub/f"})
	if err != nil {
		t.Fatalf("after the rename: %v", err)
	}
	defer c.Close()
	if b, _ := io.ReadAll(c); string(b) != "served" {
		t.Errorf("got %q", b)
	}
}
