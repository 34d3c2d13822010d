package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/backend"
	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/testpki"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// End-to-end tests of -http: the tftpgw binary serving the same content
// over HTTP, fetched with curl.

// httpURL is the base URL the gateway logged for -http.
func httpURL(t *testing.T, g *gw) string {
	t.Helper()
	for line := range strings.SplitSeq(g.logText(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "serving HTTP" {
			return m["url"].(string)
		}
	}
	t.Fatalf("no HTTP URL logged:\n%s", g.logText())
	return ""
}

// curlHTTP runs curl with args and returns its stdout; it fails the test
// when curl fails.
func curlHTTP(t *testing.T, args ...string) []byte {
	t.Helper()
	bin := needClient(t, "curl")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append([]string{"-sS", "--fail-with-body"}, args...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %q: %v: %s", args, err, stderr.Bytes())
	}
	return out
}

func writeRandom(t *testing.T, path string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// checkRanges fetches the ranges of url with curl and compares the bytes.
func checkRanges(t *testing.T, url string, want []byte, extra ...string) {
	t.Helper()
	n := len(want)
	for _, tt := range []struct {
		rng      string
		from, to int
	}{
		{"0-99", 0, 100},
		{"100000-199999", 100000, 200000},
		{"-1000", n - 1000, n},
		{fmt.Sprintf("%d-", n-5000), n - 5000, n},
	} {
		got := curlHTTP(t, append(append([]string(nil), extra...), "-r", tt.rng, url)...)
		if !bytes.Equal(got, want[tt.from:tt.to]) {
			t.Errorf("range %s: %d bytes, want %d", tt.rng, len(got), tt.to-tt.from)
		}
	}
	// Several ranges: multipart/byteranges, each part's bytes in it.
	out := curlHTTP(t, append(append([]string(nil), extra...), "-r", "0-9,300000-300009", "-D", "-", url)...)
	if !bytes.Contains(out, []byte("multipart/byteranges")) || !bytes.Contains(out, want[0:10]) || !bytes.Contains(out, want[300000:300010]) {
		t.Errorf("several ranges: %.300q", out)
	}
}

// etagOf returns the ETag header curl printed in out (-D -).
func etagOf(t *testing.T, out []byte) string {
	t.Helper()
	m := regexp.MustCompile(`(?mi)^etag: (.*?)\r?$`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no ETag in %.300q", out)
	}
	return string(m[1])
}

// TestHTTPFromRoot: curl downloads byte-identical files from -root over
// HTTP, with ranges and a conditional GET answered 304; TFTP still works.
func TestHTTPFromRoot(t *testing.T) {
	dir := t.TempDir()
	want := writeRandom(t, filepath.Join(dir, "boot", "initrd.img"), 1_000_003)
	g := startGateway(t, "-root", dir, "-http", "127.0.0.1:0")
	url := httpURL(t, g) + "/boot/initrd.img"

	got := filepath.Join(t.TempDir(), "initrd.img")
	curlHTTP(t, "-o", got, url)
	sameFile(t, got, filepath.Join(dir, "boot", "initrd.img"))
	checkRanges(t, url, want)

	head := curlHTTP(t, "-I", url)
	etag := etagOf(t, head)
	code := curlHTTP(t, "-o", "/dev/null", "-w", "%{http_code}", "-H", "If-None-Match: "+etag, url)
	if string(code) != "304" {
		t.Errorf("If-None-Match: %s, want 304", code)
	}
	code = curlHTTP(t, "-o", "/dev/null", "-w", "%{http_code}", "-z", time.Now().Add(time.Hour).UTC().Format(time.RFC1123), url)
	if string(code) != "304" {
		t.Errorf("If-Modified-Since: %s, want 304", code)
	}
	if !bytes.Contains(bytes.ToLower(head), []byte("last-modified:")) || !bytes.Contains(head, []byte("Content-Length: 1000003")) {
		t.Errorf("HEAD: %q", head)
	}
	// Not found is 404.
	bin := needClient(t, "curl")
	out, _ := exec.Command(bin, "-s", "-o", "/dev/null", "-w", "%{http_code}", httpURL(t, g)+"/nope").Output()
	if string(out) != "404" {
		t.Errorf("missing file: %s", out)
	}
	// The TFTP side serves the same file.
	tftpGot := filepath.Join(t.TempDir(), "t")
	if out, err := curlGet(t, g.port, "boot/initrd.img", tftpGot); err != nil {
		t.Fatalf("TFTP: %v %s", err, out)
	}
	sameFile(t, tftpGot, filepath.Join(dir, "boot", "initrd.img"))
	// The session lines say which protocol.
	var httpLines int
	for _, l := range logLines(g, "INFO", "session end") {
		if strings.Contains(l, `"protocol":"http"`) && strings.Contains(l, `"status":`) {
			httpLines++
		}
	}
	if httpLines < 8 {
		t.Errorf("%d HTTP session lines:\n%s", httpLines, g.logText())
	}
}

// TestHTTPS: -http-cert and -http-key serve HTTPS.
func TestHTTPS(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "ipxe.efi"), 200_000)
	pki := t.TempDir()
	ca := testpki.NewCA(t, "tftpgw http CA")
	cert, key := testpki.WriteKeyPair(t, pki, "http", ca.IssueServer(t, "127.0.0.1"))
	caFile := ca.WriteCert(t, pki, "ca")
	g := startGateway(t, "-root", dir, "-http", "127.0.0.1:0", "-http-cert", cert, "-http-key", key)
	url := httpURL(t, g)
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("url %s", url)
	}
	got := filepath.Join(t.TempDir(), "ipxe.efi")
	curlHTTP(t, "--cacert", caFile, "-o", got, url+"/ipxe.efi")
	sameFile(t, got, filepath.Join(dir, "ipxe.efi"))
}

// TestHTTPFromBackend: curl downloads byte-identical files through
// -backend over HTTP, ranges included (read from the backend at their
// offset), and the backend sees the protocol.
func TestHTTPFromBackend(t *testing.T) {
	dir := t.TempDir()
	want := writeRandom(t, filepath.Join(dir, "vmlinuz"), 1_500_000)
	b := startSDKBackend(t, nil, dir, 0, backend.Config{})
	// No edge cache: every request reaches the backend.
	g := startGateway(t, "-backend", b.addr, "-http", "127.0.0.1:0", "-cache-size", "0")
	url := httpURL(t, g) + "/vmlinuz"
	got := filepath.Join(t.TempDir(), "vmlinuz")
	curlHTTP(t, "-o", got, url)
	sameFile(t, got, filepath.Join(dir, "vmlinuz"))
	checkRanges(t, url, want)
	if out, err := curlGet(t, g.port, "vmlinuz", got); err != nil {
		t.Fatalf("TFTP: %v %s", err, out)
	}
	if h, tf := b.byProtocol(gateway.ProtocolHTTP), b.byProtocol(gateway.ProtocolTFTP); h < 6 || tf != 1 {
		t.Errorf("the backend saw %d HTTP and %d TFTP requests", h, tf)
	}
}

// TestHTTPAndTFTPShareOneBackendRead: a file fetched over TFTP and HTTP at
// once through a backend is read from the backend once (the edge cache).
func TestHTTPAndTFTPShareOneBackendRead(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "initrd.img"), 4_000_000)
	// Slow reads keep the first fetch running while the others start.
	b := startSDKBackend(t, nil, dir, 2*time.Millisecond, backend.Config{})
	g := startGateway(t, "-backend", b.addr, "-http", "127.0.0.1:0", "-cache-max-age", "1m")
	url := httpURL(t, g) + "/initrd.img"
	out := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 2 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if o, err := curlGet(t, g.port, "initrd.img", filepath.Join(out, "tftp"+strconv.Itoa(i))); err != nil {
				errs <- fmt.Errorf("TFTP: %v %s", err, o)
			}
		}()
		go func() {
			defer wg.Done()
			bin := needClient(t, "curl")
			if o, err := exec.Command(bin, "-sS", "--fail", "-o", filepath.Join(out, "http"+strconv.Itoa(i)), url).CombinedOutput(); err != nil {
				errs <- fmt.Errorf("HTTP: %v %s", err, o)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, f := range []string{"tftp0", "tftp1", "http0", "http1"} {
		sameFile(t, filepath.Join(out, f), filepath.Join(dir, "initrd.img"))
	}
	if calls := b.count(); calls != 1 {
		t.Errorf("the backend was called %d times for 2 TFTP and 2 HTTP fetches at once, want 1", calls)
	}
}

// TestIPXEChain: an iPXE-style chain: a TFTP request for a script whose
// content names an HTTP URL on the same edge, then the HTTP fetch of that
// URL, byte-identical.
func TestIPXEChain(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "images", "kernel"), 700_000)
	g := startGateway(t, "-root", dir, "-http", "127.0.0.1:0")
	script := "#!ipxe\ndhcp\nchain " + httpURL(t, g) + "/images/kernel\n"
	if err := os.WriteFile(filepath.Join(dir, "boot.ipxe"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := tftpclient.Get(ctx, "127.0.0.1:"+strconv.Itoa(g.port), "boot.ipxe", &buf, tftpclient.Options{}); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^chain (\S+)$`).FindStringSubmatch(buf.String())
	if m == nil {
		t.Fatalf("script %q names no URL", buf.String())
	}
	got := filepath.Join(t.TempDir(), "kernel")
	curlHTTP(t, "-o", got, m[1])
	sameFile(t, got, filepath.Join(dir, "images", "kernel"))
}

// TestHTTPSlowReadersAndIdleFloodDoNotHurtTFTP: HTTP connections that
// never send a request, and clients that stop reading a large file, leave
// TFTP serving every request; the slow readers are cut off and HTTP
// serves again once they are gone.
func TestHTTPSlowReadersAndIdleFloodDoNotHurtTFTP(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "big"), 32<<20)
	writeRandom(t, filepath.Join(dir, "pxelinux.0"), 40_000)
	g := startGateway(t, "-root", dir, "-http", "127.0.0.1:0", "-http-max-conns", "32", "-http-timeout", "1s")
	addr := strings.TrimPrefix(httpURL(t, g), "http://")

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Slow readers: ask for the big file and read nothing.
	for range 8 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetReadBuffer(4096)
		fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
		conns = append(conns, c)
	}
	// An idle flood: connections that never send a request, many more
	// than -http-max-conns.
	for range 400 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break // the backlog is full: that is the point
		}
		conns = append(conns, c)
	}
	// TFTP serves every request meanwhile.
	server := "127.0.0.1:" + strconv.Itoa(g.port)
	for i := range 40 {
		var buf bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := tftpclient.Get(ctx, server, "pxelinux.0", &buf, tftpclient.Options{BlockSize: 1468})
		cancel()
		if err != nil || buf.Len() != 40_000 {
			t.Fatalf("TFTP request %d during the HTTP flood: %d bytes, %v", i, buf.Len(), err)
		}
	}
	// The slow readers are cut off after -http-timeout.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		n := 0
		for _, l := range logLines(g, "INFO", "session end") {
			if strings.Contains(l, `"protocol":"http"`) && strings.Contains(l, `"outcome":"aborted"`) {
				n++
			}
		}
		if n == 8 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	// HTTP serves again.
	got := curlHTTP(t, "-r", "0-9", "http://"+addr+"/big")
	if len(got) != 10 {
		t.Fatalf("after the flood: %d bytes", len(got))
	}
	n := 0
	for _, l := range logLines(g, "INFO", "session end") {
		if strings.Contains(l, `"protocol":"http"`) && strings.Contains(l, `"outcome":"aborted"`) {
			n++
		}
	}
	if n != 8 {
		t.Errorf("%d slow readers cut off, want 8:\n%s", n, g.logText())
	}
}

// TestHTTPPolicy: the configuration's policy applies to HTTP requests: a
// refusal is its status (ERROR 2: 403), a drop closes the connection
// without an answer, and the others are served.
func TestHTTPPolicy(t *testing.T) {
	root := t.TempDir()
	writeRandom(t, filepath.Join(root, "f"), 5000)
	cfg := writeConfig(t, `root: `+root+`
http: {listen: "127.0.0.1:0"}
policy:
  - {clients: [127.0.0.2], allow: false, error: {code: 2, message: "not from this rack"}}
  - {clients: [127.0.0.3/32], allow: false, action: drop}
`)
	g := startGateway(t, "-config", cfg)
	url := httpURL(t, g) + "/f"
	bin := needClient(t, "curl")
	for _, tt := range []struct {
		from, code string
		exit       int // curl's exit status
	}{
		{"127.0.0.1", "200", 0},
		{"127.0.0.2", "403", 0},
		{"127.0.0.3", "000", 52}, // "Empty reply from server"
	} {
		out, err := exec.Command(bin, "-s", "--interface", tt.from, "-o", "/dev/null", "-w", "%{http_code}", url).Output()
		exit := 0
		if ee, ok := err.(*exec.ExitError); ok {
			exit = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if string(out) != tt.code || exit != tt.exit {
			t.Errorf("from %s: status %s, curl exit %d; want %s, %d", tt.from, out, exit, tt.code, tt.exit)
		}
	}
}
