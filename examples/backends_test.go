package examples_test

// The example content services (python-backend, node-backend) run here as
// processes behind an in-process tftpgw edge, next to the Go reference
// backend (cmd/tftp-backend), and every test runs against all three: the
// Go run checks that the expectations are the reference's behaviour, the
// others that the examples match it.
//
// A missing runtime (/usr/bin/python3 with grpcio and protobuf, node with
// examples/node-backend/node_modules) skips its backend's tests, except in
// CI (CI=true), where it fails them: `make test` installs both, as root,
// with .ci/install-examples.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/gateway/remote"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
	"github.com/tftpgw/tftpgw/internal/wire"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

const (
	python    = "/usr/bin/python3" // Debian's, which sees python3-grpcio
	blockSize = 1468

	startTimeout    = 20 * time.Second // a backend process announcing its address
	transferTimeout = 30 * time.Second // one TFTP transfer or gRPC call
	logTimeout      = 10 * time.Second // a backend logging a finished call
	stopTimeout     = 15 * time.Second // a backend exiting after SIGTERM
	defaultMaxAge   = 10 * time.Second // every backend's -max-age default
	maxChunk        = 256 << 10        // the largest data chunk the proto advises
)

// tftpBackend is the Go reference backend, built by TestMain (as are
// tftpgwBin, the edge, and goExample, examples/go-backend).
var tftpBackend string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tftpgw-examples")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tftpBackend = filepath.Join(dir, "tftp-backend")
	tftpgwBin = filepath.Join(dir, "tftpgw")
	goExample = filepath.Join(dir, "go-backend")
	for bin, pkg := range map[string]string{tftpBackend: "../cmd/tftp-backend", tftpgwBin: "../cmd/tftpgw", goExample: "./go-backend"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// backend is one content service implementation, run as a process.
type backend struct {
	name string
	// missing says why the backend cannot run here, "" if it can.
	missing func() string
	// command returns the command line serving root on listen, with the
	// extra flags.
	command func(root, listen string, extra ...string) []string
	// digestOff is the flag that turns the digest off, syncMax the one
	// that sets the largest file hashed before its header, digestWait the
	// one that bounds the wait for it.
	digestOff, syncMax, digestWait string
	// serving matches the log line announcing the address (group 1).
	serving *regexp.Regexp
	// cancelled, given a path, matches the log line of a Read of that path
	// that ended because the edge cancelled it; its group 1, if any, is
	// the number of bytes sent.
	cancelled func(path string) *regexp.Regexp
	// resumed, given a path, matches the log line of a successful Read of
	// that path at a non-zero offset; nil if the backend does not log
	// paths.
	resumed func(path string) *regexp.Regexp
}

// The log lines of the Python and Node examples have the same format.
var (
	exampleServing   = regexp.MustCompile(`serving on (\S+)`)
	exampleCancelled = func(p string) *regexp.Regexp {
		return regexp.MustCompile(`read .*path="` + regexp.QuoteMeta(p) + `" .*status=CANCELLED bytes=(\d+)`)
	}
	exampleResumed = func(p string) *regexp.Regexp {
		return regexp.MustCompile(`read .*path="` + regexp.QuoteMeta(p) + `" offset=[1-9]\d* status=OK`)
	}
)

var (
	goBackend = backend{
		name:    "go",
		missing: func() string { return "" },
		command: func(root, listen string, extra ...string) []string {
			return append([]string{tftpBackend, "-root", root, "-listen", listen}, extra...)
		},
		digestOff:  "-digest=false",
		syncMax:    "-digest-sync-max",
		digestWait: "-digest-wait",
		serving:    regexp.MustCompile(`tftp-backend serving.* addr=(\S+)`),
		cancelled: func(string) *regexp.Regexp {
			return regexp.MustCompile(`finished call.*grpc.method=Read.*grpc.code=Canceled`)
		},
	}
	pythonBackend = backend{
		name:    "python",
		missing: pythonMissing,
		command: func(root, listen string, extra ...string) []string {
			return append([]string{python, "python-backend/server.py", "--root", root, "--listen", listen}, extra...)
		},
		digestOff:  "--no-digest",
		syncMax:    "--digest-sync-max",
		digestWait: "--digest-wait",
		serving:    exampleServing,
		cancelled:  exampleCancelled,
		resumed:    exampleResumed,
	}
	nodeBackend = backend{
		name:    "node",
		missing: nodeMissing,
		command: func(root, listen string, extra ...string) []string {
			return append([]string{"node", "node-backend/server.js", "--root", root, "--listen", listen}, extra...)
		},
		digestOff:  "--no-digest",
		syncMax:    "--digest-sync-max",
		digestWait: "--digest-wait",
		serving:    exampleServing,
		cancelled:  exampleCancelled,
		resumed:    exampleResumed,
	}
	backends = []backend{goBackend, pythonBackend, nodeBackend}
)

var pythonMissing = sync.OnceValue(func() string {
	if _, err := os.Stat(python); err != nil {
		return python + " is not installed (apt-get install python3)"
	}
	out, err := exec.Command(python, "-c", "import grpc, google.protobuf").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%s cannot import grpc and google.protobuf (apt-get install python3-grpcio python3-protobuf): %v: %s",
			python, err, lastLine(out))
	}
	return ""
})

func nodeMissing() string {
	if _, err := exec.LookPath("node"); err != nil {
		return "node is not installed (apt-get install nodejs npm)"
	}
	if _, err := os.Stat("node-backend/node_modules/@grpc/grpc-js/package.json"); err != nil {
		return "node-backend/node_modules is missing (run npm ci in examples/node-backend)"
	}
	return ""
}

// need skips the test when b cannot run here, or fails it in CI.
func need(t *testing.T, b backend) {
	t.Helper()
	why := b.missing()
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s backend: %s; CI must provide it (make test runs .ci/install-examples as root)", b.name, why)
	}
	t.Skipf("%s backend: %s; make test installs it (its apt-get step needs root)", b.name, why)
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// --- backend processes ---------------------------------------------------

// proc is a running backend process.
type proc struct {
	b    backend
	cmd  *exec.Cmd
	addr string // host:port it serves on
	logs *syncbuf.Buffer
	done chan struct{} // closed when it has exited
	err  error         // Wait's result, once done is closed
	once sync.Once
}

// start runs b serving root on listen ("127.0.0.1:0" for any free port),
// with the extra flags, waits until it accepts connections, and stops it
// when the test ends.
func start(t *testing.T, b backend, root, listen string, extra ...string) *proc {
	t.Helper()
	args := b.command(root, listen, extra...)
	p := &proc{b: b, cmd: exec.Command(args[0], args[1:]...), logs: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s backend: %v", b.name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("%s backend: %v", b.name, err)
		}
		if t.Failed() {
			t.Logf("%s backend log:\n%s", b.name, p.logs)
		}
	})

	deadline := time.Now().Add(startTimeout)
	for p.addr == "" {
		if m := b.serving.FindStringSubmatch(p.logs.String()); m != nil {
			p.addr = m[1]
			break
		}
		select {
		case <-p.done:
			t.Fatalf("%s backend exited before serving: %v\n%s", b.name, p.err, p.logs)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s backend announced no address within %s:\n%s", b.name, startTimeout, p.logs)
		}
	}
	for {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s backend does not accept connections on %s: %v\n%s", b.name, p.addr, err, p.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the process with SIGTERM (SIGKILL if it lingers) and reports
// a process that did not stop cleanly.
func (p *proc) stop() error {
	var err error
	p.once.Do(func() {
		select {
		case <-p.done:
			err = fmt.Errorf("exited early: %v", p.err)
			return
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			if p.err != nil {
				err = fmt.Errorf("exit after SIGTERM: %v", p.err)
			}
		case <-time.After(stopTimeout):
			p.cmd.Process.Kill()
			<-p.done
			err = fmt.Errorf("still running %s after SIGTERM; killed", stopTimeout)
		}
	})
	return err
}

// kill ends the process at once, as a crash would.
func (p *proc) kill() {
	p.once.Do(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
}

// waitLog waits for a log line matching re and returns its submatches.
func (p *proc) waitLog(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(logTimeout)
	for {
		if m := re.FindStringSubmatch(p.logs.String()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s backend logged no line matching %q within %s", p.b.name, re, logTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// --- the files served -----------------------------------------------------

// corpus is a directory of files to serve, with traps around it.
type corpus struct {
	root  string
	files map[string][]byte // the regular files, by path under root
}

func newCorpus(t *testing.T) *corpus {
	t.Helper()
	base := t.TempDir()
	c := &corpus{root: filepath.Join(base, "root"), files: map[string][]byte{}}
	outside := filepath.Join(base, "outside")
	rng := rand.New(rand.NewChaCha8([32]byte{'t', 'f', 't', 'p', 'g', 'w'}))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	c.files = map[string][]byte{
		"small.txt":          []byte(strings.Repeat("a small text file\n", 40)),
		"exact.bin":          random(16 * blockSize), // an exact multiple of the block size
		"big.bin":            random(4<<20 + 12345),  // many 64 KiB chunks
		"probe.bin":          random(4 << 20),        // only size-probed
		"empty":              {},
		"sub/dir/nested.cfg": []byte("default linux\n"),
	}
	// File names that are not UTF-8: a Latin-1 one, and next to it the
	// name its text form (U+FFFD for the 0xE9 byte) would open, with other
	// bytes, so that a backend opening the text path serves the wrong file.
	c.files["caf\xe9.cfg"] = []byte("latin-1 name: the bytes the client sent\n")
	c.files["caf\uFFFD.cfg"] = []byte("U+FFFD name: a backend that opened the text path\n")
	c.files["na\u00efve.txt"] = []byte("UTF-8 name\n")
	for name, data := range c.files {
		mustWrite(t, filepath.Join(c.root, name), data)
	}
	mustWrite(t, filepath.Join(outside, "secret.txt"), []byte("outside the root\n"))
	for link, target := range map[string]string{
		"link-inside":  "sub/dir/nested.cfg",
		"link-outside": filepath.Join(outside, "secret.txt"),
		"link-dotdot":  "../outside/secret.txt",
		"dir-outside":  outside,
		"dangling":     "no-such-file",
		"loop":         "loop",
	} {
		if err := os.Symlink(target, filepath.Join(c.root, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(c.root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

func mustWrite(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// etag is the reference backend's ETag of a file: size, mtime, ctime and
// inode in hex (gateway.FileServer on Linux).
func (c *corpus) etag(t *testing.T, name string) string {
	t.Helper()
	fi, err := os.Stat(filepath.Join(c.root, name))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%x-%x-%x-%x", fi.Size(), fi.ModTime().UnixNano(), st.Ctim.Nano(), st.Ino)
}

// --- the edge ---------------------------------------------------------------

var quiet = slog.New(slog.DiscardHandler)

// edge runs a gateway on 127.0.0.1 whose content comes from the backend at
// addr through gateway/remote, as tftpgw -backend does.
func edge(t *testing.T, addr string, rc remote.Config, cfg func(*gateway.Server)) *gatewaytest.Server {
	t.Helper()
	gw, _ := digestEdge(t, addr, rc, cfg)
	return gw
}

// digestEdge is edge, also returning the SHA-256 in the first header of
// each session's backend call, by path (all zero: none).
func digestEdge(t *testing.T, addr string, rc remote.Config, cfg func(*gateway.Server)) (*gatewaytest.Server, *digestLog) {
	t.Helper()
	rc.Logger = quiet
	rc.EdgeID = "examples-test"
	rh, err := remote.Dial(addr, rc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rh.Close() }) // after the server: cleanups run last-in first-out
	digests := &digestLog{m: map[string][32]byte{}}
	h := gateway.HandlerFunc(func(ctx context.Context, r *gateway.Request) (gateway.Content, error) {
		c, err := rh.ServeTFTP(ctx, r)
		if ic, ok := c.(gateway.InfoContent); ok && err == nil {
			digests.set(r.Path, ic.Info().SHA256)
		}
		return c, err
	})
	return gatewaytest.NewServer(t, h, cfg), digests
}

// digestLog is the digests an edge received, by path.
type digestLog struct {
	mu sync.Mutex
	m  map[string][32]byte
}

func (d *digestLog) set(path string, sum [32]byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[path] = sum
}

func (d *digestLog) get(path string) ([32]byte, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	sum, ok := d.m[path]
	return sum, ok
}

// --- the tests ----------------------------------------------------------------

func TestBackends(t *testing.T) {
	c := newCorpus(t)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			need(t, b)
			p := start(t, b, c.root, "127.0.0.1:0")
			gw := edge(t, p.addr, remote.Config{}, nil)
			t.Run("TFTP transfers are byte-exact", func(t *testing.T) { testTransfers(t, c, gw) })
			t.Run("TFTP errors match the reference", func(t *testing.T) { testTFTPErrors(t, gw) })
			t.Run("size probe cancels the backend call", func(t *testing.T) { testProbeCancels(t, c, gw, p) })
			t.Run("gRPC Read follows the contract", func(t *testing.T) { testRead(t, c, p.addr) })
			t.Run("names that are not UTF-8 are served as by FileServer", func(t *testing.T) { testRawNames(t, c, gw) })
			t.Run("digest not ready for a header comes in later ones", func(t *testing.T) { testBackgroundDigest(t, c, b) })
			t.Run("transfer resumes when the backend restarts", func(t *testing.T) { testResume(t, c, b) })
		})
	}
}

func testTransfers(t *testing.T, c *corpus, gw *gatewaytest.Server) {
	opts := []struct {
		name string
		o    tftpclient.Options
	}{
		{"blksize 1468", tftpclient.Options{BlockSize: blockSize, TSize: true}},
		{"blksize 1468 windowsize 8", tftpclient.Options{BlockSize: blockSize, WindowSize: 8, TSize: true}},
	}
	files := []struct {
		name, path string
		want       []byte
	}{
		{"small file", "small.txt", c.files["small.txt"]},
		{"exact multiple of the block size", "exact.bin", c.files["exact.bin"]},
		{"multi-chunk file", "big.bin", c.files["big.bin"]},
		{"empty file", "empty", c.files["empty"]},
		{"nested file", "sub/dir/nested.cfg", c.files["sub/dir/nested.cfg"]},
		{"symbolic link inside the root", "link-inside", c.files["sub/dir/nested.cfg"]},
	}
	for _, f := range files {
		for _, o := range opts {
			t.Run(f.name+" with "+o.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
				defer cancel()
				var got bytes.Buffer
				res, err := tftpclient.Get(ctx, gw.Addr().String(), f.path, &got, o.o)
				if err != nil {
					t.Fatalf("get %s: %v", f.path, err)
				}
				if !bytes.Equal(got.Bytes(), f.want) {
					t.Fatalf("got %d bytes (sha256 %x), want %d (sha256 %x)",
						got.Len(), sha256.Sum256(got.Bytes()), len(f.want), sha256.Sum256(f.want))
				}
				// An empty content's tsize is left out of the OACK (curl
				// refuses "tsize 0"): the client then knows no size.
				wantTSize := int64(len(f.want))
				if wantTSize == 0 {
					wantTSize = -1
				}
				if res.TSize != wantTSize {
					t.Errorf("tsize %d, want %d", res.TSize, wantTSize)
				}
				// A size that is a multiple of the block size ends with an
				// empty DATA packet.
				if want := int64(len(f.want)/blockSize + 1); res.Packets-res.Duplicates != want {
					t.Errorf("%d DATA packets (%d duplicates), want %d", res.Packets, res.Duplicates, want)
				}
			})
		}
	}
}

func testTFTPErrors(t *testing.T, gw *gatewaytest.Server) {
	tests := []struct {
		name, path string
		code       uint16
		msg        string
	}{
		{"missing file is error 1", "missing.bin", wire.CodeFileNotFound, "file not found"},
		{"file in a missing directory is error 1", "nodir/missing.bin", wire.CodeFileNotFound, "file not found"},
		{"dangling symbolic link is error 1", "dangling", wire.CodeFileNotFound, "file not found"},
		{"dot-dot escape is error 2", "../outside/secret.txt", wire.CodeAccessViolation, "access violation"},
		{"symbolic link out of the root is error 2", "link-outside", wire.CodeAccessViolation, "access violation"},
		{"relative symbolic link out of the root is error 2", "link-dotdot", wire.CodeAccessViolation, "access violation"},
		{"path through a linked directory out of the root is error 2", "dir-outside/secret.txt", wire.CodeAccessViolation, "access violation"},
		{"symbolic link loop is error 2", "loop", wire.CodeAccessViolation, "access violation"},
		{"directory is error 2", "sub/dir", wire.CodeAccessViolation, "not a regular file"},
		{"FIFO is error 2", "fifo", wire.CodeAccessViolation, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
			defer cancel()
			var got bytes.Buffer
			_, err := tftpclient.Get(ctx, gw.Addr().String(), tt.path, &got, tftpclient.Options{BlockSize: blockSize, TSize: true})
			var te *tftpclient.Error
			if !errors.As(err, &te) {
				t.Fatalf("get %q: %v (%d bytes), want ERROR %d %q", tt.path, err, got.Len(), tt.code, tt.msg)
			}
			if te.Code != tt.code || te.Message != tt.msg {
				t.Errorf("get %q: ERROR %d %q, want ERROR %d %q", tt.path, te.Code, te.Message, tt.code, tt.msg)
			}
		})
	}
}

// A UEFI size probe reads the OACK and aborts: the edge cancels the
// backend call, which must stop before it has read the whole file.
func testProbeCancels(t *testing.T, c *corpus, gw *gatewaytest.Server, p *proc) {
	ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
	defer cancel()
	size, err := tftpclient.Probe(ctx, gw.Addr().String(), "probe.bin", tftpclient.Options{BlockSize: blockSize})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(c.files["probe.bin"])); size != want {
		t.Errorf("tsize %d, want %d", size, want)
	}
	m := p.waitLog(t, p.b.cancelled("probe.bin"))
	if len(m) > 1 {
		sent, _ := strconv.Atoi(m[1])
		t.Logf("the backend sent %d of %d bytes before the cancel", sent, size)
		if int64(sent) >= size {
			t.Errorf("the backend sent all %d bytes: it did not stop at the cancel", sent)
		}
	}
}

// readResult is the outcome of one Read call.
type readResult struct {
	header   *tftpgwv1.Header
	data     []byte
	maxChunk int // the largest data chunk
	err      error
}

// read calls Read and checks the message order on the way.
func read(ctx context.Context, client tftpgwv1.ContentServiceClient, req *tftpgwv1.ReadRequest) readResult {
	var r readResult
	stream, err := client.Read(ctx, req)
	if err != nil {
		r.err = err
		return r
	}
	for {
		msg, err := stream.Recv()
		switch {
		case err == io.EOF:
			if r.header == nil {
				r.err = errors.New("stream ended with OK before the header")
			}
			return r
		case err != nil:
			r.err = err
			return r
		}
		switch m := msg.GetMsg().(type) {
		case *tftpgwv1.ReadResponse_Header:
			if r.header != nil {
				r.err = errors.New("second header")
				return r
			}
			r.header = m.Header
		case *tftpgwv1.ReadResponse_Data:
			switch {
			case r.header == nil:
				r.err = errors.New("data before the header")
				return r
			case len(m.Data) == 0:
				r.err = errors.New("empty data chunk")
				return r
			}
			r.data = append(r.data, m.Data...)
			r.maxChunk = max(r.maxChunk, len(m.Data))
		default:
			r.err = fmt.Errorf("message with neither header nor data: %v", msg)
			return r
		}
	}
}

// testRead calls the backend's Read directly: offsets and if_match (what a
// resuming edge sends), and requests that the edge never sends.
func testRead(t *testing.T, c *corpus, addr string) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := tftpgwv1.NewContentServiceClient(conn)

	big := c.files["big.bin"]
	bigTag := c.etag(t, "big.bin")
	type tftpErr struct {
		code uint32
		msg  string
	}
	tests := []struct {
		name string
		req  *tftpgwv1.ReadRequest
		// On success: the file whose bytes from offset are expected.
		file string
		// On failure: the status code and the TFTPError in the details
		// (none if nil).
		code codes.Code
		tftp *tftpErr
	}{
		{name: "whole file: header with size and etag, then the data",
			req: &tftpgwv1.ReadRequest{Path: "small.txt"}, file: "small.txt"},
		{name: "offset with a matching if_match sends the rest",
			req: &tftpgwv1.ReadRequest{Path: "big.bin", Offset: 1_000_001, IfMatch: bigTag}, file: "big.bin"},
		{name: "offset at the end sends only the header",
			req: &tftpgwv1.ReadRequest{Path: "big.bin", Offset: uint64(len(big)), IfMatch: bigTag}, file: "big.bin"},
		{name: "offset beyond the end sends only the header",
			req: &tftpgwv1.ReadRequest{Path: "big.bin", Offset: uint64(len(big)) + 4096}, file: "big.bin"},
		{name: "empty file sends only the header",
			req: &tftpgwv1.ReadRequest{Path: "empty"}, file: "empty"},
		{name: "path_bytes names the file, not the text path",
			req: &tftpgwv1.ReadRequest{Path: "caf\uFFFD.cfg", RawPath: "caf\uFFFD.cfg\uFFFD",
				PathBytes: []byte("caf\xe9.cfg"), RawPathBytes: []byte("caf\xe9.cfg\xff")},
			file: "caf\xe9.cfg"},
		{name: "text path without path_bytes (an older edge)",
			req: &tftpgwv1.ReadRequest{Path: "na\u00efve.txt"}, file: "na\u00efve.txt"},
		{name: "stale if_match is FAILED_PRECONDITION file changed",
			req:  &tftpgwv1.ReadRequest{Path: "big.bin", Offset: 100, IfMatch: "0-0"},
			code: codes.FailedPrecondition, tftp: &tftpErr{0, "file changed"}},
		{name: "missing file is NOT_FOUND",
			req:  &tftpgwv1.ReadRequest{Path: "missing.bin"},
			code: codes.NotFound, tftp: &tftpErr{1, "file not found"}},
		{name: "dangling symbolic link is NOT_FOUND",
			req:  &tftpgwv1.ReadRequest{Path: "dangling"},
			code: codes.NotFound, tftp: &tftpErr{1, "file not found"}},
		{name: "symbolic link out of the root is PERMISSION_DENIED",
			req:  &tftpgwv1.ReadRequest{Path: "link-outside"},
			code: codes.PermissionDenied, tftp: &tftpErr{2, "access violation"}},
		{name: "relative symbolic link out of the root is PERMISSION_DENIED",
			req:  &tftpgwv1.ReadRequest{Path: "link-dotdot"},
			code: codes.PermissionDenied, tftp: &tftpErr{2, "access violation"}},
		{name: "path through a linked directory out of the root is PERMISSION_DENIED",
			req:  &tftpgwv1.ReadRequest{Path: "dir-outside/secret.txt"},
			code: codes.PermissionDenied, tftp: &tftpErr{2, "access violation"}},
		{name: "symbolic link loop is PERMISSION_DENIED",
			req:  &tftpgwv1.ReadRequest{Path: "loop"},
			code: codes.PermissionDenied, tftp: &tftpErr{2, "access violation"}},
		{name: "file used as a directory is PERMISSION_DENIED",
			req:  &tftpgwv1.ReadRequest{Path: "small.txt/x"},
			code: codes.PermissionDenied, tftp: &tftpErr{2, "access violation"}},
		{name: "directory is PERMISSION_DENIED not a regular file",
			req:  &tftpgwv1.ReadRequest{Path: "sub"},
			code: codes.PermissionDenied, tftp: &tftpErr{2, "not a regular file"}},
		{name: "FIFO is PERMISSION_DENIED not a regular file",
			req:  &tftpgwv1.ReadRequest{Path: "fifo"},
			code: codes.PermissionDenied, tftp: &tftpErr{2, "not a regular file"}},
		{name: "empty path is PERMISSION_DENIED",
			req:  &tftpgwv1.ReadRequest{Path: ""},
			code: codes.PermissionDenied, tftp: &tftpErr{2, "access violation"}},
		{name: "dot-dot path (never sent by the edge) is INVALID_ARGUMENT",
			req:  &tftpgwv1.ReadRequest{Path: "../outside/secret.txt"},
			code: codes.InvalidArgument},
		{name: "absolute path (never sent by the edge) is INVALID_ARGUMENT",
			req:  &tftpgwv1.ReadRequest{Path: "/etc/passwd"},
			code: codes.InvalidArgument},
		{name: "offset above 2^62 is INVALID_ARGUMENT",
			req:  &tftpgwv1.ReadRequest{Path: "big.bin", Offset: 1 << 63},
			code: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
			defer cancel()
			tt.req.SessionId = "examples-test"
			tt.req.Mode = "octet"
			r := read(ctx, client, tt.req)

			if tt.file == "" { // a failure is expected
				if r.err == nil {
					t.Fatalf("Read succeeded with %d bytes; want %s", len(r.data), tt.code)
				}
				st := status.Convert(r.err)
				if st.Code() != tt.code {
					t.Errorf("status %s (%q), want %s", st.Code(), st.Message(), tt.code)
				}
				var got *tftpErr
				for _, d := range st.Details() {
					if te, ok := d.(*tftpgwv1.TFTPError); ok {
						got = &tftpErr{te.GetCode(), te.GetMessage()}
					}
				}
				switch {
				case tt.tftp == nil && got != nil:
					t.Errorf("TFTPError %+v in the details, want none", *got)
				case tt.tftp != nil && got == nil:
					t.Errorf("no TFTPError in the details (%v), want %+v", st.Details(), *tt.tftp)
				case tt.tftp != nil && *got != *tt.tftp:
					t.Errorf("TFTPError %+v, want %+v", *got, *tt.tftp)
				}
				if r.header != nil {
					t.Errorf("header %v sent before the error", r.header)
				}
				return
			}

			if r.err != nil {
				t.Fatalf("Read: %v", r.err)
			}
			want := c.files[tt.file]
			h := r.header
			if h.Size == nil || *h.Size != int64(len(want)) {
				t.Errorf("header size %v (set: %t), want %d: the full size, whatever the offset", h.GetSize(), h.Size != nil, len(want))
			}
			if etag := c.etag(t, tt.file); h.GetEtag() != etag {
				t.Errorf("header etag %q, want %q (size, mtime, ctime and inode in hex, as the Go backend)", h.GetEtag(), etag)
			}
			if got := h.GetMaxAge().AsDuration(); got != defaultMaxAge {
				t.Errorf("header max_age %v, want %v", got, defaultMaxAge)
			}
			// The offset is echoed (the edge resumes only from a header
			// that confirms it); for offset 0 it may be left out.
			if off := tt.req.GetOffset(); off > 0 && (h.Offset == nil || h.GetOffset() != off) || off == 0 && h.GetOffset() != 0 {
				t.Errorf("header offset %v (set: %t), want %d", h.GetOffset(), h.Offset != nil, off)
			}
			// Every file of the corpus is under the bound of synchronous
			// hashing (64 MiB): the first header has the digest.
			if sum := sha256.Sum256(want); !bytes.Equal(h.GetSha256(), sum[:]) {
				t.Errorf("header sha256 %x, want %x", h.GetSha256(), sum)
			}
			off := min(int(tt.req.GetOffset()), len(want))
			if !bytes.Equal(r.data, want[off:]) {
				t.Errorf("got %d bytes, want %d: the file from offset %d", len(r.data), len(want)-off, tt.req.GetOffset())
			}
			if r.maxChunk > maxChunk {
				t.Errorf("a data chunk of %d bytes, want at most %d (the proto advises 32 to 256 KiB)", r.maxChunk, maxChunk)
			}
		})
	}
}

// pausingWriter collects a transfer and blocks once, when it has at least
// at bytes, until resume is closed; the client then stops acknowledging.
type pausingWriter struct {
	buf    bytes.Buffer
	at     int
	paused chan struct{}
	resume chan struct{}
	once   sync.Once
}

func (w *pausingWriter) Write(p []byte) (int, error) {
	if w.buf.Len() >= w.at {
		w.once.Do(func() {
			close(w.paused)
			select {
			case <-w.resume:
			case <-time.After(transferTimeout):
			}
		})
	}
	return w.buf.Write(p)
}

// The backend dies in the middle of a transfer (kill -9) and a new one
// starts on the same address: the edge resumes the stream at the offset
// it had reached, with if_match, and the client gets every byte once.
func testResume(t *testing.T, c *corpus, b backend) {
	p1 := start(t, b, c.root, "127.0.0.1:0")
	gw, digests := digestEdge(t, p1.addr, remote.Config{HeaderTimeout: 5 * time.Second, ResumeTimeout: 20 * time.Second, MaxResumes: 10},
		func(s *gateway.Server) {
			// A fixed 2 s retransmission timeout and 5 retries: the
			// session outlives the client's pause while the backend
			// restarts.
			s.Timeout, s.MinTimeout = 2*time.Second, 2*time.Second
		})

	want := c.files["big.bin"]
	w := &pausingWriter{at: 1 << 20, paused: make(chan struct{}), resume: make(chan struct{})}
	resume := sync.OnceFunc(func() { close(w.resume) })
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
	var wg sync.WaitGroup
	// On the way out, failed or not: unblock the client, end it, wait.
	defer wg.Wait()
	defer cancel()
	defer resume()
	wg.Go(func() {
		_, err := tftpclient.Get(ctx, gw.Addr().String(), "big.bin", w, tftpclient.Options{BlockSize: blockSize, WindowSize: 8, TSize: true})
		done <- err
	})
	select {
	case <-w.paused:
	case err := <-done:
		t.Fatalf("transfer ended before the pause: %v", err)
	case <-time.After(transferTimeout):
		t.Fatal("transfer did not reach the pause")
	}
	p1.kill()
	p2 := start(t, b, c.root, p1.addr)
	resume()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("get: %v", err)
		}
	case <-time.After(transferTimeout + time.Second):
		t.Fatal("transfer did not end")
	}
	if !bytes.Equal(w.buf.Bytes(), want) {
		t.Fatalf("got %d bytes (sha256 %x), want %d (sha256 %x)",
			w.buf.Len(), sha256.Sum256(w.buf.Bytes()), len(want), sha256.Sum256(want))
	}
	st, ok := gw.WaitStats(logTimeout)
	switch {
	case !ok:
		t.Fatal("no session stats")
	case st.Backend == nil || st.Backend.Resumes == 0:
		t.Errorf("session stats %+v: want a resumed backend call", st.Backend)
	}
	if b.resumed != nil {
		p2.waitLog(t, b.resumed("big.bin"))
	}
	// The first header had the digest, so the edge hashed the bytes of
	// both backends' streams and found the whole file: the resumed
	// header confirmed the offset and carried the same digest (the new
	// process hashed the file anew), or the transfer would have failed.
	if sum, ok := digests.get("big.bin"); !ok || sum != sha256.Sum256(want) {
		t.Errorf("the edge got digest %x, want %x", sum, sha256.Sum256(want))
	}
}

// testRawNames requests names that are not UTF-8 (a Latin-1 name, the
// 0xFF bytes some PXE ROMs append), and options that are not either, from
// the backend and from the in-process FileServer (tftpgw -root), which
// must answer alike.
func testRawNames(t *testing.T, c *corpus, gw *gatewaytest.Server) {
	root, err := os.OpenRoot(c.root)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	ref := gatewaytest.NewServer(t, gateway.FileServer(root), nil)
	tests := []struct {
		name, raw string
		opt       [2]string
		want      string // the file expected, "" for an error
	}{
		{"Latin-1 name", "caf\xe9.cfg", [2]string{}, "caf\xe9.cfg"},
		{"Latin-1 name padded with 0xFF", "caf\xe9.cfg\xff\xff", [2]string{}, "caf\xe9.cfg"},
		{"ASCII name padded with 0xFF", "small.txt\xff\xff\xff", [2]string{}, "small.txt"},
		{"backslashes and 0xFF", "sub\\dir\\nested.cfg\xff", [2]string{}, "sub/dir/nested.cfg"},
		{"UTF-8 name", "na\u00efve.txt", [2]string{}, "na\u00efve.txt"},
		{"missing Latin-1 name is error 1", "caf\xe8.cfg", [2]string{}, ""},
		{"option value not UTF-8", "small.txt", [2]string{"x-vendor", "\xc0\xaf\xff"}, "small.txt"},
		{"option name not UTF-8", "small.txt", [2]string{"x-\xe9", "1"}, "small.txt"},
	}
	get := func(addr, raw string, opt [2]string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
		defer cancel()
		o := tftpclient.Options{BlockSize: blockSize, TSize: true}
		if opt[0] != "" {
			o.ExtraOptions = [][2]string{opt}
		}
		var buf bytes.Buffer
		_, err := tftpclient.Get(ctx, addr, raw, &buf, o)
		return buf.Bytes(), err
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, wantErr := get(ref.Addr().String(), tt.raw, tt.opt)
			got, err := get(gw.Addr().String(), tt.raw, tt.opt)
			if tt.want != "" && (wantErr != nil || !bytes.Equal(want, c.files[tt.want])) {
				t.Fatalf("FileServer: %v, %q; the test expects %s", wantErr, want, tt.want)
			}
			if fmt.Sprint(err) != fmt.Sprint(wantErr) || !bytes.Equal(got, want) {
				t.Errorf("backend: %v, %q; FileServer: %v, %q", err, got, wantErr, want)
			}
		})
	}
}

// testBackgroundDigest: a file over the backend's bound of synchronous
// hashing, or any file when headers may not wait, has no digest in its
// first header (the hash starts with it) and has the right one once the
// hash, going on in the background, is done; with the digest off, no
// header has one.
func testBackgroundDigest(t *testing.T, c *corpus, b backend) {
	dial := func(p *proc) tftpgwv1.ContentServiceClient {
		conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return tftpgwv1.NewContentServiceClient(conn)
	}
	header := func(t *testing.T, client tftpgwv1.ContentServiceClient, path string, offset uint64) *tftpgwv1.Header {
		ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
		defer cancel()
		r := read(ctx, client, &tftpgwv1.ReadRequest{Path: path, Offset: offset})
		if r.err != nil {
			t.Fatalf("Read: %v", r.err)
		}
		return r.header
	}

	tests := []struct {
		name, file string
		flags      []string
	}{
		{"file over the bound", "big.bin", []string{b.syncMax, "1MiB"}},
		{"header that may not wait", "small.txt", []string{b.digestWait, "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := sha256.Sum256(c.files[tt.file])
			size := uint64(len(c.files[tt.file]))
			client := dial(start(t, b, c.root, "127.0.0.1:0", tt.flags...))
			// An offset at the end: only the header comes, and the call
			// ends before the background hash does.
			if h := header(t, client, tt.file, size); len(h.GetSha256()) != 0 {
				t.Fatalf("first header has sha256 %x; want none with %q", h.GetSha256(), tt.flags)
			}
			deadline := time.Now().Add(transferTimeout)
			for {
				h := header(t, client, tt.file, size)
				if len(h.GetSha256()) != 0 {
					if !bytes.Equal(h.GetSha256(), want[:]) {
						t.Fatalf("sha256 %x, want %x", h.GetSha256(), want)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no digest %s after the first request", transferTimeout)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	t.Run("digest off", func(t *testing.T) {
		off := dial(start(t, b, c.root, "127.0.0.1:0", b.digestOff))
		for range 2 {
			if h := header(t, off, "big.bin", 0); len(h.GetSha256()) != 0 {
				t.Errorf("sha256 %x with %s", h.GetSha256(), b.digestOff)
			}
		}
	})
}

// The Python stubs in python-backend/tftpgw/v1 are generated from
// proto/tftpgw/v1/content.proto and committed: they must describe the same
// proto as the Go code does.
func TestPythonStubsAreFresh(t *testing.T) {
	need(t, pythonBackend)
	checkStubs(t, "python-backend", "content_pb2", tftpgwv1.File_tftpgw_v1_content_proto)
}

func errOutput(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}
