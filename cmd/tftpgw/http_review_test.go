package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/backend"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// TestHTTPSIGTERMWithStuckClientsEndsAtDrainTimeout: SIGTERM while an HTTP
// client reads nothing of a large download, another holds an idle
// keep-alive connection and a third has sent half a request header: the
// process ends soon after -drain-timeout (not after -http-timeout), with
// exit code 0.
func TestHTTPSIGTERMWithStuckClientsEndsAtDrainTimeout(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "big"), 32<<20)
	writeRandom(t, filepath.Join(dir, "small"), 100)
	g := startGateway(t, "-root", dir, "-http", "127.0.0.1:0", "-http-timeout", "60s", "-drain-timeout", "500ms")
	addr := strings.TrimPrefix(httpURL(t, g), "http://")
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	slow := dial()
	slow.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(slow, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	idle := dial()
	fmt.Fprintf(idle, "GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	half := dial()
	fmt.Fprintf(half, "GET /small HTTP/1.1\r\nHo")
	g.waitLog(t, `"protocol":"http"`) // the idle one's request
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := g.wait(t, 10*time.Second); err != nil {
		t.Errorf("exit: %v\n%s", err, g.logText())
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("exited %v after SIGTERM, -drain-timeout 500ms", d)
	}
	t.Logf("exit %v after SIGTERM", time.Since(start))
}

// TestHTTPNoLeaksAfterLoad: a burst of 80 HTTP requests through a backend
// (whole files, ranges, HEAD, 404, clients that vanish mid-body) leaves the
// process with the descriptors and goroutines it had, and no request
// running.
func TestHTTPNoLeaksAfterLoad(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "k"), 3<<20)
	be := startSDKBackend(t, nil, dir, 0, backend.Config{})
	g := startGateway(t, "-backend", be.addr, "-http", "127.0.0.1:0", "-metrics", "127.0.0.1:0", "-http-timeout", "2s")
	base := httpURL(t, g)
	addr := strings.TrimPrefix(base, "http://")
	maddr := metricsAddr(t, g)
	pid := g.cmd.Process.Pid
	curlHTTP(t, "-o", "/dev/null", base+"/k")
	time.Sleep(300 * time.Millisecond)
	before := sampleProc(t, pid, maddr)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				switch (w + i) % 5 {
				case 0:
					exec.Command("curl", "-s", "-o", "/dev/null", base+"/k").Run()
				case 1:
					exec.Command("curl", "-s", "-o", "/dev/null", "-r", "1000000-1000999,2000000-2000999", base+"/k").Run()
				case 2:
					exec.Command("curl", "-s", "-o", "/dev/null", "-I", base+"/k").Run()
				case 3:
					exec.Command("curl", "-s", "-o", "/dev/null", base+"/missing").Run()
				case 4:
					c, err := net.Dial("tcp", addr)
					if err != nil {
						continue
					}
					fmt.Fprintf(c, "GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
					buf := make([]byte, 70000)
					io.ReadFull(c, buf)
					c.Close()
				}
			}
		}()
	}
	wg.Wait()
	var after procSample
	var m map[string]float64
	for range 100 {
		time.Sleep(100 * time.Millisecond)
		m = scrapeMetrics(t, maddr)
		after = sampleProc(t, pid, maddr)
		if m["tftpgw_active_http_requests"] == 0 && after.fds <= before.fds+2 && after.goroutines <= before.goroutines+4 {
			break
		}
	}
	t.Logf("before %+v after %+v; backend calls %d", before, after, be.count())
	if m["tftpgw_active_http_requests"] != 0 || after.fds > before.fds+2 || after.goroutines > before.goroutines+4 {
		t.Errorf("after the load: %v active; %d fds (%d before), %d goroutines (%d before)\n%s",
			m["tftpgw_active_http_requests"], after.fds, before.fds, after.goroutines, before.goroutines, lsFD(pid))
	}
}

// TestHTTPManyRangesCostOneBackendCall: a request for a thousand ranges
// that jump back and forth in a backend's file (a seek each, and a seek of
// uncached content is a new backend call) is served whole, with one
// backend call.
func TestHTTPManyRangesCostOneBackendCall(t *testing.T) {
	dir := t.TempDir()
	want := writeRandom(t, filepath.Join(dir, "k"), 1<<20)
	be := startSDKBackend(t, nil, dir, 0, backend.Config{})
	// Without the edge cache (-cache-size 0; or a file larger than a
	// quarter of it, as an installer image is), a seek reaches the backend.
	g := startGateway(t, "-backend", be.addr, "-http", "127.0.0.1:0", "-cache-size", "0")
	var rng strings.Builder
	for i := range 1000 {
		if i > 0 {
			rng.WriteString(",")
		}
		if i%2 == 0 {
			rng.WriteString("900000-900000")
		} else {
			rng.WriteString("0-0")
		}
	}
	out := curlHTTP(t, "-H", "Range: bytes="+rng.String(), httpURL(t, g)+"/k")
	if string(out) != string(want) {
		t.Errorf("%d bytes, want the whole file (%d)", len(out), len(want))
	}
	if n := be.count(); n != 1 {
		t.Errorf("%d backend calls for one request", n)
	}
}

// TestHTTPUnsentBodiesDoNotStarveTFTP: HTTP GETs that announce a body and
// never send it, from several addresses, as many as -max-sessions, must
// not hold the sessions: TFTP requests are served after -http-timeout.
func TestHTTPUnsentBodiesDoNotStarveTFTP(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "big"), 8<<20)
	writeRandom(t, filepath.Join(dir, "pxelinux.0"), 40_000)
	g := startGateway(t, "-root", dir, "-http", "127.0.0.1:0", "-http-timeout", "1s", "-max-sessions", "4")
	addr := strings.TrimPrefix(httpURL(t, g), "http://")
	for i := range 4 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 3, byte(10+i))}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n")
		// Read the response, never send the body.
		go io.Copy(io.Discard, c)
	}
	time.Sleep(3 * time.Second) // -http-timeout, and then some
	server := "127.0.0.1:" + strconv.Itoa(g.port)
	var buf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := tftpclient.Get(ctx, server, "pxelinux.0", &buf, tftpclient.Options{BlockSize: 1468}); err != nil {
		t.Fatalf("TFTP with 4 HTTP requests holding their bodies back: %v", err)
	}
}
