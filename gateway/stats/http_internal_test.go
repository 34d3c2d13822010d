package stats

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

func startTestHTTP(t *testing.T, lim httpLimits) *HTTPServer {
	t.Helper()
	h, err := startHTTP("127.0.0.1:0", NewMetrics().Handler(), nil, lim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Shutdown(ctx)
	})
	return h
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// get sends GET path on c (keep-alive) and reads the response, waiting at
// most d; it reports whether a response came.
func get(t *testing.T, c net.Conn, r *bufio.Reader, path string, d time.Duration) bool {
	t.Helper()
	c.SetDeadline(time.Now().Add(d))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestHTTPIdleConnectionsClosed is a regression test (issue 14 point 5):
// the metrics server never closed idle keep-alive connections (only
// ReadHeaderTimeout was set). Now a keep-alive connection idle for the
// idle timeout is closed, and so is one that never sends its header.
func TestHTTPIdleConnectionsClosed(t *testing.T) {
	lim := httpLimits{maxConns: 4, readHeaderTimeout: 300 * time.Millisecond, readTimeout: time.Second,
		writeTimeout: time.Second, idleTimeout: 300 * time.Millisecond}
	h := startTestHTTP(t, lim)
	addr := h.Addr().String()

	keepAlive := dial(t, addr)
	r := bufio.NewReader(keepAlive)
	if !get(t, keepAlive, r, "/metrics", 5*time.Second) {
		t.Fatal("no answer")
	}
	silent := dial(t, addr)
	for name, c := range map[string]net.Conn{"idle keep-alive": keepAlive, "silent": silent} {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("%s connection: read %d, %v; want EOF (closed by the server)", name, n, err)
		}
	}
}

// TestHTTPConnectionsCapped is a regression test (issue 14 point 5): held
// connections to the metrics server took every file descriptor of the
// process. Now the server holds at most maxConns connections; the next
// one is served once a held one closes.
func TestHTTPConnectionsCapped(t *testing.T) {
	lim := httpLimits{maxConns: 2, readHeaderTimeout: time.Minute, readTimeout: time.Minute,
		writeTimeout: time.Minute, idleTimeout: time.Minute}
	h := startTestHTTP(t, lim)
	addr := h.Addr().String()

	held := []net.Conn{dial(t, addr), dial(t, addr)}
	for _, c := range held {
		r := bufio.NewReader(c)
		if !get(t, c, r, "/healthz", 5*time.Second) {
			t.Fatal("a held connection was not served")
		}
	}
	third := dial(t, addr)
	r := bufio.NewReader(third)
	if get(t, third, r, "/healthz", 300*time.Millisecond) {
		t.Fatal("a third connection was served while two were held")
	}
	held[0].Close()
	// The request already sent is answered once a slot is free.
	third.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("third connection after one closed: %v", err)
	}
	resp.Body.Close()
}
