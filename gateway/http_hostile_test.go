package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
)

// waitHTTPIdle waits (at most 10 s) until srv runs no HTTP request, and
// fails the test if one still runs then.
func waitHTTPIdle(t *testing.T, srv *gateway.Server) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); srv.Stats().HTTPActive != 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := srv.Stats().HTTPActive; n != 0 {
		t.Fatalf("%d HTTP requests still running", n)
	}
}

// TestHTTPRequestWithUnsentBodyDoesNotPinTheSession: a GET that announces
// a body and never sends it must not hold its session (a per-client
// limit, the content: a backend stream, cached bytes) once the response
// is under way. net/http reads such a body before it sends the response
// header, without a deadline, unless the connection is to be closed.
func TestHTTPRequestWithUnsentBodyDoesNotPinTheSession(t *testing.T) {
	h := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		return gateway.NewContent(bytes.NewReader(kernel), int64(len(kernel))), nil
	})
	srv := &gateway.Server{Handler: h, MaxSessionsPerClient: 1, HTTPTimeout: 300 * time.Millisecond}
	base := httpEdge(t, srv)
	for _, tc := range []struct{ name, method, header string }{
		{"content-length", "GET", "Content-Length: 10\r\n"},
		{"chunked", "GET", "Transfer-Encoding: chunked\r\n"},
		{"HEAD", "HEAD", "Content-Length: 10\r\n"},
		{"POST", "POST", "Content-Length: 10\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			must(t, err)
			defer c.Close()
			fmt.Fprintf(c, "%s /vmlinuz HTTP/1.1\r\nHost: x\r\n%s\r\n", tc.method, tc.header)
			// The body never comes; the response must.
			must(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
			req, _ := http.NewRequest(tc.method, "/", nil)
			resp, err := http.ReadResponse(bufio.NewReader(c), req)
			if err != nil {
				t.Fatalf("no response while the announced body is not sent: %v", err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if tc.method == "GET" && (err != nil || n != int64(len(kernel))) {
				t.Fatalf("%s: %d bytes, %v", resp.Status, n, err)
			}
			waitHTTPIdle(t, srv)
			// The client's one session is free again.
			if resp, _ := get(t, base+"/vmlinuz"); resp.StatusCode != 200 {
				t.Fatalf("the next request of the client: %s", resp.Status)
			}
		})
	}
}

// exchange sends one raw request on br/c and reads its response.
func exchange(t *testing.T, c net.Conn, br *bufio.Reader, method, target string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n", method, target, strings.Join(hdr, ""))
	req, _ := http.NewRequest(method, target, nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, target, err)
	}
	return resp, b
}

// TestHTTPKeepAliveAnswersAfterAPause: a keep-alive client that pauses for
// longer than HTTPTimeout between two requests (but less than the idle
// timeout) gets its answers: a 304, a HEAD, an error, a busy refusal are
// written without a Write of the body, and must not meet the write
// deadline of the previous response.
func TestHTTPKeepAliveAnswersAfterAPause(t *testing.T) {
	timeout := 200 * time.Millisecond
	srv := &gateway.Server{
		Handler:     gateway.FileServer(fileRoot(t, map[string][]byte{"vmlinuz": kernel})),
		HTTPTimeout: timeout,
	}
	base := httpEdge(t, srv)
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	must(t, err)
	defer c.Close()
	must(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	br := bufio.NewReader(c)
	resp, body := exchange(t, c, br, "GET", "/vmlinuz")
	if resp.StatusCode != 200 || !bytes.Equal(body, kernel) {
		t.Fatalf("GET: %s %d bytes", resp.Status, len(body))
	}
	etag := resp.Header.Get("Etag")
	for _, tc := range []struct {
		method, target, hdr string
		status              int
	}{
		{"GET", "/vmlinuz", "If-None-Match: " + etag + "\r\n", 304},
		{"HEAD", "/vmlinuz", "", 200},
		{"GET", "/missing", "", 404},
		{"GET", "/vmlinuz", "Range: bytes=0-9\r\n", 206},
		{"DELETE", "/vmlinuz", "", 405},
	} {
		time.Sleep(3 * timeout)
		resp, _ := exchange(t, c, br, tc.method, tc.target, tc.hdr)
		if resp.StatusCode != tc.status {
			t.Fatalf("%s %s %s: %s, want %d", tc.method, tc.target, tc.hdr, resp.Status, tc.status)
		}
	}
}

// seekCounter is a content that counts its seeks.
type seekCounter struct {
	*bytes.Reader
	seeks *atomic.Int32
}

func (s seekCounter) Seek(off int64, whence int) (int64, error) {
	s.seeks.Add(1)
	return s.Reader.Seek(off, whence)
}
func (s seekCounter) Size() int64  { return s.Reader.Size() }
func (s seekCounter) Close() error { return nil }

// TestHTTPManyRangesAreServedWhole: a Range of very many ranges, or of
// ranges out of order or overlapping (RFC 9110 14.2: signs of a broken
// client or of a denial-of-service attack), is served as the whole
// content (200), not as one seek of the content per range: a seek of a
// gRPC backend's content is a new backend call. A few ascending ranges
// are served as ranges.
func TestHTTPManyRangesAreServedWhole(t *testing.T) {
	var seeks atomic.Int32
	h := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		return seekCounter{Reader: bytes.NewReader(kernel), seeks: &seeks}, nil
	})
	base := httpEdge(t, &gateway.Server{Handler: h})
	many := func(n int, spec func(i int) string) string {
		var b strings.Builder
		b.WriteString("bytes=")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(spec(i))
		}
		return b.String()
	}
	for _, tc := range []struct {
		name, rng string
		whole     bool
	}{
		{"backwards and forwards", many(1000, func(i int) string {
			if i%2 == 0 {
				return "200000-200000"
			}
			return "0-0"
		}), true},
		{"very many ascending", many(1000, func(i int) string { return fmt.Sprintf("%d-%d", i*200, i*200) }), true},
		{"descending", "bytes=2000-2099,0-99", true},
		{"overlapping", "bytes=0-999,500-1499", true},
		{"suffix overlapping", "bytes=299000-299099,-1500", true},
		{"a few ascending", "bytes=0-99,1000-1099,-100", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seeks.Store(0)
			resp, body := get(t, base+"/k", "Range", tc.rng)
			switch {
			case tc.whole && (resp.StatusCode != 200 || !bytes.Equal(body, kernel)):
				t.Fatalf("%s, %d bytes; want the whole content", resp.Status, len(body))
			case !tc.whole && resp.StatusCode != 206:
				t.Fatalf("%s; want 206", resp.Status)
			}
			if n := seeks.Load(); n > 5 {
				t.Fatalf("%d seeks of the content for one request", n)
			}
		})
	}
}

// panicReader gives n bytes of kernel, then panics.
type panicReader struct {
	*bytes.Reader
	n int64
}

func (p panicReader) Read(b []byte) (int, error) {
	if off := p.Reader.Size() - int64(p.Reader.Len()); off >= p.n {
		panic("content bug")
	}
	return p.Reader.Read(b)
}
func (p panicReader) Size() int64  { return p.Reader.Size() }
func (p panicReader) Close() error { return nil }

// TestHTTPContentPanicDoesNotStopTheServer: a panic in a content's Read
// ends that request (as it ends a TFTP session: see Handler), including
// when several ranges are sent from net/http's own goroutine, where a
// panic nobody recovers would end the process.
func TestHTTPContentPanicDoesNotStopTheServer(t *testing.T) {
	sink := &statsSink{}
	h := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		return panicReader{Reader: bytes.NewReader(kernel), n: 100_000}, nil
	})
	srv := &gateway.Server{Handler: h, SessionStatsFunc: sink.add, MaxSessionsPerClient: 1}
	base := httpEdge(t, srv)
	for _, rng := range []string{"", "bytes=150000-150099", "bytes=0-9,150000-150099", "bytes=0-9,-100"} {
		resp, err := http.DefaultClient.Do(func() *http.Request {
			req, _ := http.NewRequest("GET", base+"/k", nil)
			if rng != "" {
				req.Header.Set("Range", rng)
			}
			return req
		}())
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Errorf("Range %q: %s without an error", rng, resp.Status)
			}
		}
	}
	waitHTTPIdle(t, srv)
	for _, s := range sink.all() {
		if s.Outcome != gateway.OutcomeError {
			t.Errorf("%+v: outcome %v", s.HTTPStatus, s.Outcome)
		}
	}
	if n := len(sink.all()); n < 4 {
		t.Errorf("%d session stats", n)
	}
}

// TestHTTP10ClientSeesAFailedContentOfUnknownSize: a response to an
// HTTP/1.0 client, of a content of unknown size, ends where the
// connection does (no chunked encoding in HTTP/1.0): a content that
// fails must reset the connection, not close it as if the file were
// whole.
func TestHTTP10ClientSeesAFailedContentOfUnknownSize(t *testing.T) {
	sink := &statsSink{}
	h := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		if req.Path == "good" {
			return gateway.NewContent(bytes.NewReader(kernel), -1), nil
		}
		return gateway.NewContent(&failingReader{n: 100_000}, -1), nil
	})
	srv := &gateway.Server{Handler: h, SessionStatsFunc: sink.add}
	base := httpEdge(t, srv)
	for _, tc := range []struct {
		path string
		ok   bool
	}{{"fails", false}, {"good", true}} {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		must(t, err)
		defer c.Close()
		must(t, c.SetDeadline(time.Now().Add(10*time.Second)))
		fmt.Fprintf(c, "GET /%s HTTP/1.0\r\n\r\n", tc.path)
		req, _ := http.NewRequest("GET", "/"+tc.path, nil)
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			if tc.ok {
				t.Fatalf("%s: %v", tc.path, err)
			}
			continue // failed before the header: fine too
		}
		b, err := io.ReadAll(resp.Body)
		switch {
		case tc.ok && (err != nil || !bytes.Equal(b, kernel)):
			t.Errorf("%s: %d bytes, %v", tc.path, len(b), err)
		case !tc.ok && err == nil:
			t.Errorf("%s: %s, %d bytes and a clean end: looks whole", tc.path, resp.Status, len(b))
		}
	}
	waitHTTPIdle(t, srv)
	if s := sink.all(); len(s) != 2 || s[0].Outcome != gateway.OutcomeError {
		t.Errorf("stats: %+v", s)
	}
}

// TestHTTPEmptySuffixRangeIsUnsatisfiable: "bytes=-0" selects no byte:
// 416 with "bytes */size" (RFC 9110 14.1.1, 15.5.17), not a 206 with a
// Content-Range whose last byte comes before its first (what
// http.ServeContent sends for it, and for a suffix range of an empty
// file, which gets the empty file, 200, as its other ranges do).
func TestHTTPEmptySuffixRangeIsUnsatisfiable(t *testing.T) {
	base := httpEdge(t, &gateway.Server{Handler: gateway.FileServer(fileRoot(t, map[string][]byte{"k": kernel, "empty": nil}))})
	n := len(kernel)
	for _, tc := range []struct {
		path, rng, contentRange string
		status                  int
		body                    []byte
	}{
		{"k", "bytes=-0", fmt.Sprintf("bytes */%d", n), 416, nil},
		{"k", "bytes= -0 , 10-19", fmt.Sprintf("bytes 10-19/%d", n), 206, kernel[10:20]},
		{"k", "bytes=-00", fmt.Sprintf("bytes */%d", n), 416, nil},
		{"empty", "bytes=-5", "", 200, []byte{}}, // as any range of an empty file
		{"k", "bytes=-5", fmt.Sprintf("bytes %d-%d/%d", n-5, n-1, n), 206, kernel[n-5:]},
	} {
		resp, body := get(t, base+"/"+tc.path, "Range", tc.rng)
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Range") != tc.contentRange || tc.body != nil && !bytes.Equal(body, tc.body) {
			t.Errorf("%s %q: %s, Content-Range %q, %d bytes; want %d, %q",
				tc.path, tc.rng, resp.Status, resp.Header.Get("Content-Range"), len(body), tc.status, tc.contentRange)
		}
	}
}
