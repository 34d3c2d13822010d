package examples_test

// Uploads end to end (issue 16's acceptance): real TFTP clients (tftp-hpa,
// atftp, busybox, curl) put files through the real tftpgw binary
// (-backend, -upload-allow '**') into each backend that stores uploads
// (the Go tftp-backend -upload-dir, the Python and Node examples
// --upload-dir). The files are checked on disk as soon as the client has
// exited (the edge acknowledges the last block only once the backend has
// stored it), then read back through the same edge. A second upload of a
// name gets ERROR 6 from every client, and a client killed in the middle
// of an upload leaves nothing in the upload directory.
//
// A missing runtime skips its backend, a missing client the cases that
// use it; in CI (CI=true) either fails them.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// putClient is a real TFTP client run to upload a file.
type putClient struct {
	name string // in test names
	bin  string
	argv func(port, local, remote string) []string
	// The block and window sizes the client negotiates (512 and 1: none).
	blksize, windowsize int
	// noise matches the lines the client prints on success; nil: it
	// prints nothing.
	noise *regexp.Regexp
	// The exit status and the output (a substring; "" for any) when the
	// server answers ERROR 6 "file already exists".
	existsStatus int
	existsOutput string
}

// busyboxProgress is busybox tftp's progress bar, printed to stderr even
// when it is not a terminal.
var busyboxProgress = regexp.MustCompile(`^\S+\s+\d+% \|[* ]*\|\s+\S+\s+\S+ ETA$`)

var (
	hpaPut = putClient{
		name: "tftp-hpa", bin: "tftp",
		argv: func(port, l, r string) []string {
			return []string{"127.0.0.1", port, "-m", "binary", "-c", "put", l, r}
		},
		blksize: 512, windowsize: 1,
		// tftp-hpa reports a server's ERROR and exits 0: only its output
		// tells.
		existsStatus: 0, existsOutput: "Error code 6: file already exists",
	}
	atftpPut = putClient{
		name: "atftp", bin: "atftp",
		argv: func(port, l, r string) []string {
			return []string{"-p", "-l", l, "-r", r, "127.0.0.1", port}
		},
		blksize: 512, windowsize: 1,
		existsStatus: 255, existsOutput: "tftp: error received from server <file already exists>",
	}
	// atftp 0.8.0 negotiates windowsize (RFC 7440) for put as well as get.
	atftpWindowPut = putClient{
		name: "atftp windowsize 8 blksize 1428", bin: "atftp",
		argv: func(port, l, r string) []string {
			return []string{"--option", "windowsize 8", "--option", "blksize 1428", "-p", "-l", l, "-r", r, "127.0.0.1", port}
		},
		blksize: 1428, windowsize: 8,
		noise:        regexp.MustCompile(`^Option (windowsize|blksize) = \d+$`),
		existsStatus: 255, existsOutput: "tftp: error received from server <file already exists>",
	}
	busyboxPut = putClient{
		name: "busybox", bin: "busybox",
		argv: func(port, l, r string) []string {
			return []string{"tftp", "-p", "-l", l, "-r", r, "127.0.0.1", port}
		},
		blksize: 512, windowsize: 1, noise: busyboxProgress,
		existsStatus: 1, existsOutput: "tftp: server error: (6) file already exists",
	}
	busyboxBlockPut = putClient{
		name: "busybox -b 1468", bin: "busybox",
		argv: func(port, l, r string) []string {
			return []string{"tftp", "-b", "1468", "-p", "-l", l, "-r", r, "127.0.0.1", port}
		},
		blksize: 1468, windowsize: 1, noise: busyboxProgress,
		existsStatus: 1, existsOutput: "tftp: server error: (6) file already exists",
	}
	// curl exits 73 (CURLE_REMOTE_FILE_EXISTS) on ERROR 6, but 7.88.1
	// prints "curl: (73) getpeername() failed with errno 107: Transport
	// endpoint is not connected": the message is not checked.
	curlPut = putClient{
		name: "curl", bin: "curl",
		argv: func(port, l, r string) []string {
			return []string{"-sS", "-T", l, "tftp://127.0.0.1:" + port + "/" + r}
		},
		blksize: 512, windowsize: 1, existsStatus: 73,
	}
	curlBlockPut = putClient{
		name: "curl --tftp-blksize 1468", bin: "curl",
		argv: func(port, l, r string) []string {
			return []string{"-sS", "--tftp-blksize", "1468", "-T", l, "tftp://127.0.0.1:" + port + "/" + r}
		},
		blksize: 1468, windowsize: 1, existsStatus: 73,
	}
)

// put runs c to upload local as remote through g and returns its exit
// status and output.
func (c putClient) put(t *testing.T, g *gwProc, local, remote string) (int, string) {
	t.Helper()
	bin := needClient(t, c.bin)
	ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, c.argv(g.port(), local, remote)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s did not finish within %s: %s", c.name, transferTimeout, out)
	case err != nil && !errors.As(err, &ee):
		t.Fatalf("%s: %v", c.name, err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// putOK uploads local as remote and fails the test unless the client
// reported success: exit status 0 and no output but its noise.
func (c putClient) putOK(t *testing.T, g *gwProc, local, remote string) {
	t.Helper()
	status, out := c.put(t, g, local, remote)
	if status != 0 {
		t.Fatalf("%s exited %d:\n%s", c.name, status, out)
	}
	for _, line := range strings.FieldsFunc(out, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if line = strings.TrimSpace(line); line != "" && (c.noise == nil || !c.noise.MatchString(line)) {
			t.Fatalf("%s exited 0 but printed %q:\n%s", c.name, line, out)
		}
	}
}

// writeLocal writes data to a new file for a client to upload.
func writeLocal(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "local")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fastRandom returns n pseudo-random bytes from seed, quickly enough for
// tens of MB.
func fastRandom(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{'e', '2', 'e', seed}).Read(b)
	return b
}

// sessionEnds returns the "session end" lines of g's log for uploads of
// path, decoded.
func sessionEnds(g *gwProc, path string) []map[string]any {
	var ends []map[string]any
	for _, line := range strings.Split(g.logs.String(), "\n") {
		if !strings.Contains(line, `"session end"`) {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["path"] == path && m["upload"] == true {
			ends = append(ends, m)
		}
	}
	return ends
}

// waitSessionEnd waits for g's "session end" line for an upload of path.
func waitSessionEnd(t *testing.T, g *gwProc, path string) map[string]any {
	t.Helper()
	var ends []map[string]any
	if !waitFor(func() bool { ends = sessionEnds(g, path); return len(ends) > 0 }) {
		t.Fatalf("tftpgw logged no session end for an upload of %q within %s", path, logTimeout)
	}
	return ends[0]
}

// uploadEdge runs tftpgw in front of the backend at addr taking every
// upload. A drain timeout of 1 s: curl negotiates "timeout 6", and the
// edge dallies that long after its last ACK, which would hold up the stop.
func uploadEdge(t *testing.T, addr string, extra ...string) *gwProc {
	t.Helper()
	return startTFTPGW(t, append([]string{"-backend", addr, "-upload-allow", "**", "-drain-timeout", "1s"}, extra...)...)
}

// startUploadServer runs b storing uploads in a new directory, create-only,
// and serving them to reads: the Go backend with -upload-serve (its -root
// another, empty directory), the scripts with the upload directory as their
// root (they have no -upload-serve).
func startUploadServer(t *testing.T, b backend) (*proc, string) {
	t.Helper()
	dir := t.TempDir()
	if b.name == "go" {
		return start(t, b, t.TempDir(), "127.0.0.1:0", append(uploadArgs(b, uploadConfig{dir: dir}), "-upload-serve")...), dir
	}
	return start(t, b, dir, "127.0.0.1:0", uploadArgs(b, uploadConfig{dir: dir})...), dir
}

// e2eCase is one upload by a real client.
type e2eCase struct {
	client putClient
	size   int
}

// e2eCases returns every client with every size for the Go backend (0, one
// block of 512, an exact multiple of the client's block size, which ends
// with an empty DATA, and a size that is none), and four clients with 0,
// 512 and a multi-block size for the others.
func e2eCases(b backend) []e2eCase {
	var cases []e2eCase
	if b.name != "go" {
		for _, c := range []putClient{hpaPut, atftpPut, busyboxPut, curlPut} {
			for _, size := range []int{0, 512, 100_003} {
				cases = append(cases, e2eCase{c, size})
			}
		}
		return cases
	}
	for _, c := range []putClient{hpaPut, atftpPut, atftpWindowPut, busyboxPut, busyboxBlockPut, curlPut, curlBlockPut} {
		multiple := 40 * c.blksize // 512 x 40
		if c.blksize > 512 {
			multiple = 30 * c.blksize // 1428 x 30, 1468 x 30
		}
		for _, size := range []int{0, 512, multiple, 100_003} {
			cases = append(cases, e2eCase{c, size})
		}
	}
	return cases
}

// slug turns a client's name into a path element.
func slug(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, s)
}

func TestUploadE2E(t *testing.T) {
	for _, b := range []backend{goBackend, pythonBackend, nodeBackend} {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			need(t, b)
			p, dir := startUploadServer(t, b)
			g := uploadEdge(t, p.addr, "-timeout", "500ms")
			t.Run("real clients store byte-identical files", func(t *testing.T) { testE2EClients(t, b, g, dir) })
			t.Run("second upload of a name is ERROR 6", func(t *testing.T) {
				t.Parallel()
				testE2EExists(t, g, dir)
			})
			// The Go backend and one script backend (Python): the
			// scripts discard an upload the same way.
			if b.name == "go" || b.name == "python" {
				t.Run("client killed mid-upload leaves nothing", func(t *testing.T) {
					t.Parallel()
					testE2EKilled(t, p, dir)
				})
			}
			if b.name == "go" {
				// One client (tftp-hpa, lock-step at 512) and one backend
				// (Go) only: 65,538 blocks take 2-4 s.
				t.Run("block number rollover", func(t *testing.T) {
					t.Parallel()
					testE2ERollover(t, g, dir)
				})
			}
		})
	}
}

func testE2EClients(t *testing.T, b backend, g *gwProc, dir string) {
	// The edge logs a session's end once it has dallied after its last
	// ACK: its negotiated sizes are checked once every upload is done.
	var mu sync.Mutex
	done := map[string]e2eCase{}
	t.Run("uploads", func(t *testing.T) {
		for i, tc := range e2eCases(b) {
			remote := fmt.Sprintf("clients/%s/%d.bin", slug(tc.client.name), tc.size)
			t.Run(fmt.Sprintf("%s %d bytes", tc.client.name, tc.size), func(t *testing.T) {
				t.Parallel()
				data := randomData(tc.size, byte(i))
				tc.client.putOK(t, g, writeLocal(t, data), remote)
				// On disk when the client is done: no waiting.
				wantContent(t, dir, remote, data)
				r := curlGet(t, g, remote, "--tftp-blksize", "1468")
				if r.err != nil || !bytes.Equal(r.data, data) {
					t.Errorf("read back: %v with %d bytes, want the %d uploaded", r.err, len(r.data), len(data))
				}
				mu.Lock()
				done[remote] = tc
				mu.Unlock()
			})
		}
	})
	var names []string
	for remote := range done {
		names = append(names, remote)
	}
	wantFiles(t, dir, "clients", names...) // no temporary file left
	for remote, tc := range done {
		// curl negotiates "timeout 6": its sessions end 6 s after the
		// upload. Its options are not checked.
		if tc.client.bin == "curl" {
			continue
		}
		end := waitSessionEnd(t, g, remote)
		want := map[string]any{"outcome": "ok", "upload": true, "bytes": float64(tc.size),
			"blksize": float64(tc.client.blksize), "windowsize": float64(tc.client.windowsize)}
		for k, v := range want {
			if end[k] != v {
				t.Errorf("%s: session end has %s %v, want %v: %v", remote, k, end[k], v, end)
			}
		}
	}
}

// testE2EExists: each client's second upload of a stored name gets ERROR
// 6 before it sends data, and the file is unchanged.
func testE2EExists(t *testing.T, g *gwProc, dir string) {
	const remote = "exists/switch.cfg"
	first := randomData(3000, 100)
	hpaPut.putOK(t, g, writeLocal(t, first), remote)
	clients := []putClient{hpaPut, atftpPut, busyboxPut, curlPut}
	for i, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			status, out := c.put(t, g, writeLocal(t, randomData(5000, byte(101+i))), remote)
			if status != c.existsStatus || !strings.Contains(out, c.existsOutput) {
				t.Errorf("%s exited %d with %q; want exit %d with %q", c.name, status, out, c.existsStatus, c.existsOutput)
			}
			t.Logf("%s exited %d: %q", c.name, status, out)
		})
	}
	wantContent(t, dir, remote, first)
	wantFiles(t, dir, "exists", remote)
	refused := 0
	waitFor(func() bool {
		refused = 0
		for _, end := range sessionEnds(g, remote) {
			if end["error_code"] == float64(6) && end["error"] == "file already exists" && end["bytes"] == float64(0) {
				refused++
			}
		}
		return refused >= len(clients)
	})
	if refused != len(clients) {
		t.Errorf("tftpgw logged %d sessions refused with ERROR 6 and no data, want %d", refused, len(clients))
	}
}

// testE2EKilled: tftp-hpa uploads a 256 MiB file (sparse here) in
// lock-step through an edge that gives up after 200 ms x 3; it is killed
// (SIGKILL) after 0.5 s, once the backend has a temporary file. After
// the edge's timeout, nothing is left: no final name, no temporary file.
func testE2EKilled(t *testing.T, p *proc, dir string) {
	bin := needClient(t, hpaPut.bin)
	g := uploadEdge(t, p.addr, "-timeout", "200ms", "-retries", "2", "-max-windowsize", "1")
	const remote = "killed/dump.core"
	local := filepath.Join(t.TempDir(), "dump.core")
	if err := os.WriteFile(local, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(local, 256<<20); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, hpaPut.argv(g.port(), local, remote)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	kill := func() error {
		var err error
		once.Do(func() {
			cmd.Process.Kill()
			err = <-exited
		})
		return err
	}
	t.Cleanup(func() { kill() })

	// The upload is under way: the backend writes a temporary file.
	if !waitFor(func() bool { return len(leftovers(t, dir, "killed")) > 0 }) {
		t.Fatalf("no temporary file under killed/ within %s; client output: %q", logTimeout, out.String())
	}
	time.Sleep(time.Until(began.Add(500 * time.Millisecond)))
	select {
	case err := <-exited:
		t.Fatalf("the client exited before it was killed: %v: %q", err, out.String())
	default:
	}
	tmp := leftovers(t, dir, "killed")
	var sent int64
	if len(tmp) == 1 {
		if fi, err := os.Stat(filepath.Join(dir, tmp[0])); err == nil {
			sent = fi.Size()
		}
	}
	killed := time.Now()
	if err := kill(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("the client's exit: %v, want killed", err)
	}
	end := waitSessionEnd(t, g, remote)
	gaveUp := time.Since(killed)
	if end["outcome"] != "timeout" || end["upload"] != true {
		t.Errorf("session end %v, want an upload with outcome timeout", end)
	}
	wantFiles(t, dir, "killed") // polls: the backend removes its file once the call is cancelled
	t.Logf("killed after %v with %q holding %d bytes; the edge gave up %v later, the directory was empty %v after the kill",
		killed.Sub(began).Round(time.Millisecond), tmp, sent, gaveUp.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
}

// testE2ERollover: a file of 65,538 blocks of 512 (past 65,535, the block
// number wraps to 0) from tftp-hpa, which negotiates no blksize.
func testE2ERollover(t *testing.T, g *gwProc, dir string) {
	const remote = "rollover/big.bin"
	data := fastRandom(65536*512+1000, 1)
	began := time.Now()
	hpaPut.putOK(t, g, writeLocal(t, data), remote)
	t.Logf("%d bytes in %v", len(data), time.Since(began).Round(time.Millisecond))
	wantContent(t, dir, remote, data)
	wantFiles(t, dir, "rollover", remote)
	end := waitSessionEnd(t, g, remote)
	if end["outcome"] != "ok" || end["blksize"] != float64(512) || end["bytes"] != float64(len(data)) {
		t.Errorf("session end %v, want outcome ok, blksize 512, bytes %d", end, len(data))
	}
	r := curlGet(t, g, remote, "--tftp-blksize", "1468")
	if r.err != nil || !bytes.Equal(r.data, data) {
		t.Errorf("read back: %v with %d bytes, want the %d uploaded", r.err, len(r.data), len(data))
	}
}
