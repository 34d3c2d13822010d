package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway/stats"
)

// TestMetricsConnectionsCannotStarveTFTP is a regression test (issue 14
// point 5): under a 128 file limit, 118 idle connections held to -metrics
// made TFTP stop answering, and the metrics server never closed idle
// keep-alive connections. tftpgw runs here under prlimit --nofile=128 with
// 200 connections held to -metrics: it holds at most stats.HTTPMaxConns
// of them, a TFTP transfer (which needs a socket of its own) succeeds, and
// an idle keep-alive connection is closed after stats.HTTPIdleTimeout.
func TestMetricsConnectionsCannotStarveTFTP(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc and prlimit")
	}
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) is not installed")
	}
	root := t.TempDir()
	want := randomFile(t, root, "f", 1500) // three blocks
	g := startGatewayCmd(t, []string{prlimit, "--nofile=128:128", "--"}, nil, "-root", root, "-metrics", "127.0.0.1:0")
	addr := metricsAddr(t, g)
	pid := g.cmd.Process.Pid
	base := fdCount(t, pid)

	const held = 200
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range held {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	// Let the server accept what it will: wait until its descriptors stop
	// changing for 300 ms (at most 5 s).
	fds, stable := fdCount(t, pid), 0
	for i := 0; i < 100 && stable < 6; i++ {
		time.Sleep(50 * time.Millisecond)
		if n := fdCount(t, pid); n == fds {
			stable++
		} else {
			fds, stable = n, 0
		}
	}
	if fds > base+stats.HTTPMaxConns {
		t.Errorf("%d descriptors with %d connections held, %d before: want at most %d more\n%s",
			fds, held, base, stats.HTTPMaxConns, lsFD(pid))
	}

	c := newPeer(t)
	c.rrq(g.port, "f")
	var got []byte
	for block := uint16(1); block <= 3; block++ {
		got = append(got, c.expectData(block)...)
		c.ack(block)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d", len(got), len(want))
	}

	for _, c := range conns {
		c.Close()
	}
	conns = nil
	// A keep-alive connection, once idle, is closed by the server.
	ka, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ka.Close()
	ka.SetDeadline(time.Now().Add(stats.HTTPIdleTimeout + 30*time.Second))
	io.WriteString(ka, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	r := bufio.NewReader(ka)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("GET /healthz after the held connections closed: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("GET /healthz: %s, close %v", resp.Status, resp.Close)
	}
	start := time.Now()
	if n, err := r.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle keep-alive connection: read %d, %v; want EOF (closed by the server)", n, err)
	}
	t.Logf("idle keep-alive connection closed after %v (HTTPIdleTimeout %v)", time.Since(start).Round(time.Millisecond), stats.HTTPIdleTimeout)
}
