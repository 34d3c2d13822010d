package examples_test

// The contract of content.proto end to end (issue 13's acceptance): the
// real tftpgw binary, a backend written in another language than Go
// (../testdata/contract/backend.py, Python from Debian's python3-grpcio)
// that breaks the rules on purpose, and real TFTP clients (curl, tftp-hpa)
// next to the strict one (internal/tftpclient). Points 1 (a resume that
// ignores the offset never splices the file), 2 (any request's exact bytes
// reach the backend), 5 (data chunks up to 4 MiB, and a larger one is an
// error that tftpgw logs) and the digest.
//
// A missing python3-grpcio skips these tests, a missing TFTP client the
// subtests that use it; in CI (CI=true) either fails them.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// tftpgwBin is the edge, built by TestMain.
var tftpgwBin string

// contractBackend runs testdata/contract/backend.py.
var contractBackend = backend{
	name:    "contract",
	missing: pythonMissing,
	command: func(root, listen string, extra ...string) []string {
		return append([]string{python, "../testdata/contract/backend.py", "--root", root, "--listen", listen}, extra...)
	},
	serving: exampleServing,
}

// needClient returns the path of a TFTP client, or skips the test
// without it (fails it in CI).
func needClient(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed; CI must install it (.ci/install-clients)", name)
		}
		t.Skipf("%s is not installed (make test installs it as root)", name)
	}
	return p
}

// exited reports whether p has exited, and if so marks it stopped, so
// that the test's cleanup does not report an expected exit.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		p.once.Do(func() {})
		return true
	default:
		return false
	}
}

// gwProc is a running tftpgw.
type gwProc struct {
	addr string // 127.0.0.1:port
	cmd  *exec.Cmd
	logs *syncbuf.Buffer // stderr: the JSON log
	done chan struct{}
}

// startTFTPGW runs tftpgw on a free loopback port with args, waits until
// it serves, and stops it when the test ends.
func startTFTPGW(t *testing.T, args ...string) *gwProc {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	g := &gwProc{addr: addr, logs: &syncbuf.Buffer{}, done: make(chan struct{})}
	g.cmd = exec.Command(tftpgwBin, append([]string{"-listen", addr, "-log-format", "json"}, args...)...)
	g.cmd.Stdout, g.cmd.Stderr = g.logs, g.logs
	g.cmd.WaitDelay = 5 * time.Second
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		g.cmd.Wait()
		close(g.done)
	}()
	t.Cleanup(func() {
		g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.done:
		case <-time.After(stopTimeout):
			g.cmd.Process.Kill()
			<-g.done
		}
		if t.Failed() {
			t.Logf("tftpgw log:\n%s", g.logs)
		}
	})
	deadline := time.Now().Add(startTimeout)
	for !strings.Contains(g.logs.String(), `"tftpgw serving"`) {
		select {
		case <-g.done:
			t.Fatalf("tftpgw exited: %s", g.logs)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("tftpgw did not start within %s:\n%s", startTimeout, g.logs)
		}
	}
	return g
}

// port returns the port of g's address.
func (g *gwProc) port() string {
	_, port, _ := net.SplitHostPort(g.addr)
	return port
}

// getResult is what a client got.
type getResult struct {
	data []byte
	err  error // for the strict client, a *tftpclient.Error on an ERROR
}

// strictGet fetches path with the strict client.
func strictGet(t *testing.T, g *gwProc, path string, o tftpclient.Options) getResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
	defer cancel()
	var buf bytes.Buffer
	_, err := tftpclient.Get(ctx, g.addr, path, &buf, o)
	return getResult{buf.Bytes(), err}
}

// curlGet fetches path with curl, each byte of the path percent-encoded
// (curl decodes the URL's path into the filename it sends). err is curl's
// exit status with its output.
func curlGet(t *testing.T, g *gwProc, path string, extra ...string) getResult {
	t.Helper()
	bin := needClient(t, "curl")
	var enc strings.Builder
	for i := range len(path) {
		c := path[i]
		if c == '/' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' {
			enc.WriteByte(c)
		} else {
			fmt.Fprintf(&enc, "%%%02X", c)
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
	defer cancel()
	args := append([]string{"-sS", "-o", out}, extra...)
	msg, err := exec.CommandContext(ctx, bin, append(args, "tftp://"+g.addr+"/"+enc.String())...).CombinedOutput()
	data, _ := os.ReadFile(out)
	if err != nil {
		err = fmt.Errorf("curl: %w: %s", err, strings.TrimSpace(string(msg)))
	}
	return getResult{data, err}
}

// tftpHPAGet fetches path, its bytes as they are, with tftp-hpa, whose
// exit status cannot be trusted: only the bytes tell.
func tftpHPAGet(t *testing.T, g *gwProc, path string) getResult {
	t.Helper()
	bin := needClient(t, "tftp")
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
	defer cancel()
	msg, err := exec.CommandContext(ctx, bin, "127.0.0.1", g.port(), "-m", "binary", "-c", "get", path, out).CombinedOutput()
	data, rerr := os.ReadFile(out)
	if err == nil && rerr != nil {
		err = rerr
	}
	if err == nil && len(bytes.TrimSpace(msg)) > 0 {
		err = errors.New(strings.TrimSpace(string(msg)))
	}
	return getResult{data, err}
}

// wantTFTPError checks that a strict client's transfer ended with ERROR 0
// msg (the client then never got the final block: with it, it would have
// finished) and, if want is not nil, without the bytes of want's final
// block of blksize (an empty one if want's size is a multiple of it).
func wantTFTPError(t *testing.T, r getResult, msg string, want []byte, blksize int) {
	t.Helper()
	var te *tftpclient.Error
	if !errors.As(r.err, &te) || te.Code != 0 || te.Message != msg {
		t.Errorf("got %v after %d bytes; want ERROR 0 %q", r.err, len(r.data), msg)
	}
	if want != nil && len(r.data) > len(want)-len(want)%blksize {
		t.Errorf("the client received %d bytes, the file has %d: the final block was sent", len(r.data), len(want))
	}
}

// contractFiles writes the files the tests serve and returns them by name.
func contractFiles(t *testing.T, root string) map[string][]byte {
	t.Helper()
	rng := rand.New(rand.NewChaCha8([32]byte{'c', 'o', 'n', 't', 'r', 'a', 'c', 't'}))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	files := map[string][]byte{
		"f.bin":     random(1_000_000),
		"k.bin":     random(100 * blockSize), // its final block is an empty DATA
		"chunk.bin": random(16<<20 + 1000),   // 16 MiB + 1000: one chunk of any size tested, then more
	}
	for name, data := range files {
		mustWrite(t, filepath.Join(root, name), data)
	}
	return files
}

// TestContractResumeNeverSplices (point 1): the content has an ETag but no
// size. The backend that takes the first call sends 300,000 bytes and
// crashes; the other one (tftpgw -backend a,b) answers the resume with the
// same ETag, from byte 0 whatever the offset: without Header.offset, with
// Header.offset 0, or echoing the offset asked for (a lie, caught by the
// digest). No client may complete a file then; with a backend that honours
// the offset the file is byte-identical, with and without a digest.
func TestContractResumeNeverSplices(t *testing.T) {
	need(t, contractBackend)
	root := t.TempDir()
	want := contractFiles(t, root)["f.bin"]
	tests := []struct {
		name, modes string
		err         string // the TFTP error message, "" for success
	}{
		{"resume without Header.offset is refused", "nosize,die=300000,resume=omit", "content changed"},
		{"resume with Header.offset 0 is refused", "nosize,die=300000,resume=zero", "content changed"},
		{"resume echoing the offset but sending from 0 fails the digest", "nosize,digest,die=300000,resume=lie", "integrity check failed"},
		{"resume that honours the offset is byte-identical", "nosize,die=300000,resume=honour", ""},
		{"resume that honours the offset passes the digest", "nosize,digest,die=300000,resume=honour", ""},
	}
	clients := []struct {
		name string
		get  func(t *testing.T, g *gwProc, path string) getResult
	}{
		{"tftpclient", func(t *testing.T, g *gwProc, path string) getResult {
			return strictGet(t, g, path, tftpclient.Options{BlockSize: blockSize, WindowSize: 8})
		}},
		{"curl", func(t *testing.T, g *gwProc, path string) getResult {
			return curlGet(t, g, path, "--tftp-blksize", strconv.Itoa(blockSize))
		}},
	}
	for _, tt := range tests {
		for _, c := range clients {
			t.Run(tt.name+" with "+c.name, func(t *testing.T) {
				t.Parallel()
				a := start(t, contractBackend, root, "127.0.0.1:0")
				b := start(t, contractBackend, root, "127.0.0.1:0")
				g := startTFTPGW(t, "-backend", a.addr+","+b.addr, "-backend-resume-timeout", "10s")
				r := c.get(t, g, tt.modes+"/f.bin")

				// Exactly one backend crashed; the other took a resume.
				deadline := time.Now().Add(logTimeout)
				for !a.exited() && !b.exited() && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				aDied, bDied := a.exited(), b.exited()
				if aDied == bDied {
					t.Fatalf("backends exited: a %t, b %t; want exactly one (result: %v, %d bytes)", aDied, bDied, r.err, len(r.data))
				}
				survivor := a
				if aDied {
					survivor = b
				}
				survivor.waitLog(t, regexp.MustCompile(`read path=.* offset=[1-9]\d* `))

				switch {
				case tt.err == "" && (r.err != nil || !bytes.Equal(r.data, want)):
					t.Errorf("got %v with %d bytes (sha256 %x); want the file's %d bytes", r.err, len(r.data), sha256.Sum256(r.data), len(want))
				case tt.err != "" && r.err == nil:
					t.Errorf("the transfer succeeded with %d bytes (the file is %d); want ERROR 0 %q", len(r.data), len(want), tt.err)
				case tt.err != "" && c.name == "tftpclient":
					// A spliced stream may hold more bytes than the file
					// (the offset reached, then the whole file): only the
					// ERROR in place of the final block tells.
					wantTFTPError(t, r, tt.err, nil, blockSize)
				}
			})
		}
	}
}

// TestContractRequestBytes (point 2): filenames and options that are not
// UTF-8 reach the Python backend as the client sent them, in the bytes
// fields, and their text fields follow content.proto's U+FFFD rule (the
// backend checks it and fails the call otherwise). The backend serves a
// description of what it received.
func TestContractRequestBytes(t *testing.T) {
	need(t, contractBackend)
	root := t.TempDir()
	p := start(t, contractBackend, root, "127.0.0.1:0")
	g := startTFTPGW(t, "-backend", p.addr)

	describe := func(raw string, opts [][2]string) string {
		path, err := gateway.CleanPath(raw)
		if err != nil {
			t.Fatal(err)
		}
		s := fmt.Sprintf("raw_path_bytes %x\npath_bytes %x\n", raw, path)
		for _, o := range opts {
			s += fmt.Sprintf("option %x %x\n", asciiLower(o[0]), o[1])
		}
		return s
	}
	paths := []struct{ name, raw string }{
		{"0xFF padding (PXE ROMs)", "echo/pxelinux.0\xff\xff"},
		{"Latin-1 name", "echo/caf\xe9.cfg"},
		{"truncated UTF-8 sequence", "echo/a\xe2\x82b.cfg"},
		{"overlong encoding", "echo/\xc0\xaf.cfg"},
		{"backslashes, repeated separators, 0xFF", "echo\\sub//caf\xe9.cfg\xff"},
		{"valid UTF-8", "echo/na\u00efve.cfg"},
	}
	t.Run("tftpclient", func(t *testing.T) {
		opts := [][2]string{{"x-vendor", "\xc0\xaf\xff"}, {"X-\xe9", "1"}, {"x-utf8", "\u00e9t\u00e9"}}
		for _, p := range paths {
			t.Run(p.name, func(t *testing.T) {
				r := strictGet(t, g, p.raw, tftpclient.Options{ExtraOptions: opts})
				if want := describe(p.raw, opts); r.err != nil || string(r.data) != want {
					t.Errorf("got %v:\n%s\nwant:\n%s", r.err, r.data, want)
				}
			})
		}
	})
	t.Run("curl", func(t *testing.T) {
		for _, p := range paths {
			t.Run(p.name, func(t *testing.T) {
				r := curlGet(t, g, p.raw, "--tftp-no-options")
				if want := describe(p.raw, nil); r.err != nil || string(r.data) != want {
					t.Errorf("got %v:\n%s\nwant:\n%s", r.err, r.data, want)
				}
			})
		}
	})
	t.Run("tftp-hpa", func(t *testing.T) {
		for _, p := range paths {
			t.Run(p.name, func(t *testing.T) {
				r := tftpHPAGet(t, g, p.raw)
				if want := describe(p.raw, nil); r.err != nil || string(r.data) != want {
					t.Errorf("got %v:\n%s\nwant:\n%s", r.err, r.data, want)
				}
			})
		}
	})
}

// TestContractChunkLimit (point 5): a data chunk of exactly 4 MiB goes
// through; 4 MiB + 1 and 16 MiB end the transfer with ERROR 0, and
// tftpgw's log has a line naming the 4 MiB limit.
func TestContractChunkLimit(t *testing.T) {
	need(t, contractBackend)
	root := t.TempDir()
	data := contractFiles(t, root)["chunk.bin"]
	p := start(t, contractBackend, root, "127.0.0.1:0")
	g := startTFTPGW(t, "-backend", p.addr)
	tests := []struct {
		name  string
		chunk int
		ok    bool
	}{
		{"4 MiB", 4 << 20, true},
		{"4 MiB + 1", 4<<20 + 1, false},
		{"16 MiB", 16 << 20, false},
	}
	limitLine := regexp.MustCompile(`(?m)^.*"level":"(WARN|ERROR)".*data chunks of at most 4194304 bytes.*$`)
	for _, tt := range tests {
		path := fmt.Sprintf("chunk=%d/chunk.bin", tt.chunk)
		t.Run(tt.name, func(t *testing.T) {
			r := strictGet(t, g, path, tftpclient.Options{BlockSize: 65464, WindowSize: 16, TSize: true})
			if tt.ok {
				if r.err != nil || !bytes.Equal(r.data, data) {
					t.Errorf("got %v with %d bytes; want the file's %d", r.err, len(r.data), len(data))
				}
				return
			}
			wantTFTPError(t, r, "backend error", data, 65464)
			if !waitFor(func() bool { return len(limitLine.FindAllString(g.logs.String(), -1)) > 0 }) {
				t.Errorf("no log line names the 4 MiB limit")
			}
		})
		t.Run(tt.name+" with curl", func(t *testing.T) {
			r := curlGet(t, g, path, "--tftp-blksize", "65464")
			switch {
			case tt.ok && (r.err != nil || !bytes.Equal(r.data, data)):
				t.Errorf("got %v with %d bytes; want the file's %d", r.err, len(r.data), len(data))
			case !tt.ok && r.err == nil:
				t.Errorf("curl succeeded with %d bytes; want an ERROR", len(r.data))
			}
		})
	}
	// One line per refused transfer: two clients, two sizes.
	if n := len(limitLine.FindAllString(g.logs.String(), -1)); !t.Failed() && n < 2 {
		t.Errorf("%d log lines name the limit, want one per refused transfer", n)
	}
}

// TestContractDigest: a header's digest is checked end to end. The right
// one lets the transfer complete; a wrong one ends it with ERROR 0
// "integrity check failed" before the final block, with and without a
// size in the header. (A resume across two backends with the digest is in
// TestContractResumeNeverSplices.)
func TestContractDigest(t *testing.T) {
	need(t, contractBackend)
	root := t.TempDir()
	files := contractFiles(t, root)
	p := start(t, contractBackend, root, "127.0.0.1:0")
	g := startTFTPGW(t, "-backend", p.addr)
	tests := []struct {
		name, modes, file string
		ok                bool
	}{
		{"right digest", "digest", "f.bin", true},
		{"right digest, no size", "digest,nosize", "f.bin", true},
		{"wrong digest", "baddigest", "f.bin", false},
		{"wrong digest, no size", "baddigest,nosize", "f.bin", false},
		// The final block is an empty DATA: a lock-step client (curl) may
		// have every byte when the ERROR comes in its place.
		{"wrong digest, size a multiple of the block size", "baddigest", "k.bin", false},
	}
	failures := 0
	for _, tt := range tests {
		path, want := tt.modes+"/"+tt.file, files[tt.file]
		if !tt.ok {
			failures += 2
		}
		t.Run(tt.name, func(t *testing.T) {
			r := strictGet(t, g, path, tftpclient.Options{BlockSize: blockSize, WindowSize: 8, TSize: true})
			if tt.ok {
				if r.err != nil || !bytes.Equal(r.data, want) {
					t.Errorf("got %v with %d bytes; want the file's %d", r.err, len(r.data), len(want))
				}
				return
			}
			wantTFTPError(t, r, "integrity check failed", want, blockSize)
		})
		t.Run(tt.name+" with curl", func(t *testing.T) {
			r := curlGet(t, g, path, "--tftp-blksize", strconv.Itoa(blockSize))
			switch {
			case tt.ok && (r.err != nil || !bytes.Equal(r.data, want)):
				t.Errorf("got %v with %d bytes; want the file's %d", r.err, len(r.data), len(want))
			case !tt.ok && r.err == nil:
				t.Errorf("curl succeeded with %d bytes of %d; want an ERROR in place of the final block", len(r.data), len(want))
			case !tt.ok && len(r.data) > len(want)-len(want)%blockSize:
				t.Errorf("curl has %d bytes of %d: the final block was sent", len(r.data), len(want))
			}
		})
	}
	if n := integrityFailures(g, failures); !t.Failed() && n != failures {
		t.Errorf("tftpgw logged %d integrity failures, want %d (one per refused transfer)", n, failures)
	}
}

// integrityFailures counts the session ends of g's log with the integrity
// error, waiting for want of them.
func integrityFailures(g *gwProc, want int) int {
	n := 0
	waitFor(func() bool {
		n = 0
		sc := bufio.NewScanner(strings.NewReader(g.logs.String()))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"session end"`) && strings.Contains(sc.Text(), "integrity check failed") {
				n++
			}
		}
		return n >= want
	})
	return n
}

// asciiLower lower-cases the ASCII letters of s, as the edge does to an
// option's name (strings.ToLower would turn the bytes that are not UTF-8
// into U+FFFD).
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// waitFor polls cond for up to logTimeout.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(logTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
