package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
)

// httpEdge serves srv over HTTP on loopback for the test; srv is closed
// at its end.
func httpEdge(t *testing.T, srv *gateway.Server) string {
	t.Helper()
	if srv.Logger == nil {
		srv.Logger = discardLogger()
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
	})
	return ts.URL
}

// statsSink collects the SessionStats of a server.
type statsSink struct {
	mu sync.Mutex
	s  []gateway.SessionStats
}

func (k *statsSink) add(s gateway.SessionStats) {
	k.mu.Lock()
	k.s = append(k.s, s)
	k.mu.Unlock()
}

func (k *statsSink) all() []gateway.SessionStats {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]gateway.SessionStats(nil), k.s...)
}

func fileRoot(t *testing.T, files map[string][]byte) *os.Root {
	t.Helper()
	dir := t.TempDir()
	for name, b := range files {
		p := filepath.Join(dir, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, b, 0o644))
	}
	root, err := os.OpenRoot(dir)
	must(t, err)
	t.Cleanup(func() { root.Close() })
	return root
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	must(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return resp, b
}

var kernel = func() []byte {
	b := make([]byte, 300_000)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}()

// TestHTTPServesTheHandlersFiles: the same FileServer over HTTP, with
// RFC 9110's ranges and conditional requests.
func TestHTTPServesTheHandlersFiles(t *testing.T) {
	sink := &statsSink{}
	srv := &gateway.Server{Handler: gateway.FileServer(fileRoot(t, map[string][]byte{"boot/vmlinuz": kernel})), SessionStatsFunc: sink.add}
	url := httpEdge(t, srv) + "/boot/vmlinuz"

	resp, body := get(t, url)
	if resp.StatusCode != 200 || !bytes.Equal(body, kernel) {
		t.Fatalf("GET: %s, %d bytes", resp.Status, len(body))
	}
	etag, lm := resp.Header.Get("Etag"), resp.Header.Get("Last-Modified")
	if resp.ContentLength != int64(len(kernel)) || !strings.HasPrefix(etag, `"`) || lm == "" || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("headers: %v", resp.Header)
	}
	n := len(kernel)
	ranges := []struct {
		name, rng string
		from, to  int // the bytes expected, [from, to)
	}{
		{"first bytes", "bytes=0-99", 0, 100},
		{"middle", "bytes=100000-100999", 100000, 101000},
		{"suffix", "bytes=-500", n - 500, n},
		{"open-ended", "bytes=299000-", 299000, n},
		{"past the end clipped", "bytes=299990-400000", 299990, n},
	}
	for _, tt := range ranges {
		t.Run("Range "+tt.name, func(t *testing.T) {
			resp, body := get(t, url, "Range", tt.rng)
			want := fmt.Sprintf("bytes %d-%d/%d", tt.from, tt.to-1, n)
			if resp.StatusCode != 206 || resp.Header.Get("Content-Range") != want || !bytes.Equal(body, kernel[tt.from:tt.to]) {
				t.Fatalf("%s, Content-Range %q (want %q), %d bytes", resp.Status, resp.Header.Get("Content-Range"), want, len(body))
			}
		})
	}
	t.Run("several ranges as multipart/byteranges", func(t *testing.T) {
		resp, body := get(t, url, "Range", "bytes=0-9,200000-200009")
		mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if resp.StatusCode != 206 || err != nil || mt != "multipart/byteranges" {
			t.Fatalf("%s, %q", resp.Status, resp.Header.Get("Content-Type"))
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for _, from := range []int{0, 200000} {
			p, err := mr.NextPart()
			must(t, err)
			got, _ := io.ReadAll(p)
			if !bytes.Equal(got, kernel[from:from+10]) || p.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", from, from+9, n) {
				t.Errorf("part at %d: %q %x", from, p.Header.Get("Content-Range"), got)
			}
		}
	})
	t.Run("unsatisfiable range 416", func(t *testing.T) {
		resp, _ := get(t, url, "Range", "bytes=400000-")
		if resp.StatusCode != 416 || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", n) {
			t.Fatalf("%s %q", resp.Status, resp.Header.Get("Content-Range"))
		}
	})
	conditional := []struct {
		name   string
		hdr    []string
		status int
		body   int
	}{
		{"If-None-Match 304", []string{"If-None-Match", etag}, 304, 0},
		{"If-None-Match other 200", []string{"If-None-Match", `"other"`}, 200, n},
		{"If-Modified-Since 304", []string{"If-Modified-Since", lm}, 304, 0},
		{"If-Range same etag 206", []string{"Range", "bytes=0-9", "If-Range", etag}, 206, 10},
		{"If-Range other etag 200", []string{"Range", "bytes=0-9", "If-Range", `"other"`}, 200, n},
	}
	for _, tt := range conditional {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, url, tt.hdr...)
			if resp.StatusCode != tt.status || len(body) != tt.body {
				t.Fatalf("%s, %d bytes; want %d, %d bytes", resp.Status, len(body), tt.status, tt.body)
			}
		})
	}
	t.Run("HEAD", func(t *testing.T) {
		resp, err := http.Head(url)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != int64(n) || resp.Header.Get("Etag") != etag {
			t.Fatalf("%s %d %v", resp.Status, resp.ContentLength, resp.Header)
		}
	})

	ss := sink.all()
	if len(ss) == 0 || ss[0].Protocol != gateway.ProtocolHTTP || ss[0].HTTPStatus != 200 || ss[0].BytesSent != int64(n) ||
		ss[0].Outcome != gateway.OutcomeOK || ss[0].Path != "boot/vmlinuz" || ss[0].TransferSize != int64(n) {
		t.Fatalf("first session: %+v", ss[0])
	}
	st := srv.Stats()
	if st.HTTPRequests[200] < 2 || st.HTTPRequests[206] < 5 || st.HTTPRequests[304] != 2 || st.HTTPRequests[416] != 1 || st.HTTPActive != 0 || len(st.Sessions) != 0 {
		t.Fatalf("server stats: HTTP %v active %d, TFTP sessions %v", st.HTTPRequests, st.HTTPActive, st.Sessions)
	}
}

// TestHTTPErrorStatuses: the Error model maps to HTTP statuses.
func TestHTTPErrorStatuses(t *testing.T) {
	h := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		switch req.Path {
		case "denied":
			return nil, &gateway.Error{Code: gateway.ErrAccessViolation, Message: "access violation"}
		case "busy":
			return nil, &gateway.Error{Code: gateway.ErrNotDefined, Message: "backend timeout"}
		case "broken":
			return nil, errors.New("the disk is on fire")
		case "panics":
			panic("handler bug")
		}
		return nil, os.ErrNotExist
	})
	srv := &gateway.Server{Handler: h, Logger: discardLogger()}
	base := httpEdge(t, srv)
	for _, tt := range []struct {
		path   string
		status int
	}{
		{"/missing", 404}, {"/denied", 403}, {"/busy", 503}, {"/broken", 500}, {"/panics", 500},
	} {
		resp, body := get(t, base+tt.path)
		if resp.StatusCode != tt.status || bytes.Contains(body, []byte("fire")) {
			t.Errorf("%s: %s %q, want %d", tt.path, resp.Status, body, tt.status)
		}
		if tt.status == 503 && resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", tt.path)
		}
	}
	resp, err := http.Post(base+"/missing", "text/plain", strings.NewReader("x"))
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %s %v", resp.Status, resp.Header)
	}
	// A path escaping the root, sent raw (a client would clean it).
	if got := rawGet(t, base, "/../../etc/passwd"); !strings.HasPrefix(got, "HTTP/1.1 403") {
		t.Errorf("escaping path: %q", got)
	}
}

// rawGet sends a GET for target as written and returns the status line.
func rawGet(t *testing.T, base, target string) string {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	must(t, err)
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target)
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}

// TestHTTPRequestSaysHTTP: the handler sees the protocol, the client's and
// the local address.
func TestHTTPRequestSaysHTTP(t *testing.T) {
	var got gateway.Request
	h := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		got = *req
		return gateway.BytesContent([]byte("#!ipxe\n")), nil
	})
	base := httpEdge(t, &gateway.Server{Handler: h})
	resp, body := get(t, base+"/boot.ipxe?x=1")
	if resp.StatusCode != 200 || string(body) != "#!ipxe\n" {
		t.Fatalf("%s %q", resp.Status, body)
	}
	if got.Protocol != gateway.ProtocolHTTP || got.Path != "boot.ipxe" || got.RawPath != "/boot.ipxe?x=1" || got.Mode != "octet" ||
		got.RemoteAddr.Addr() != netip.MustParseAddr("127.0.0.1") || got.LocalAddr.Port() == 0 || got.SessionID == "" ||
		got.At.IsZero() || got.At.After(time.Now()) {
		t.Fatalf("request: %+v", got)
	}
}

// failingReader gives n bytes of kernel, then fails.
type failingReader struct {
	n   int
	off int
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, errors.New("backend went away")
	}
	m := copy(p[:min(len(p), r.n-r.off)], kernel[r.off:])
	r.off += m
	return m, nil
}

// TestHTTPContentFailureAbortsTheResponse: a content that fails, or turns
// out longer than its size, never reaches the client as a complete file:
// the connection is aborted before the last bytes.
func TestHTTPContentFailureAbortsTheResponse(t *testing.T) {
	sink := &statsSink{}
	h := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		switch req.Path {
		case "fails":
			return gateway.NewContent(&failingReader{n: 100_000}, int64(len(kernel))), nil
		case "fails-unknown-size":
			return gateway.NewContent(&failingReader{n: 100_000}, -1), nil
		case "longer":
			return gateway.NewContent(bytes.NewReader(kernel), 1000), nil
		case "fails-at-end":
			return gateway.NewContent(&failingReader{n: len(kernel)}, int64(len(kernel))), nil
		}
		return nil, os.ErrNotExist
	})
	base := httpEdge(t, &gateway.Server{Handler: h, SessionStatsFunc: sink.add, Logger: discardLogger()})
	for _, p := range []string{"fails", "fails-unknown-size", "longer", "fails-at-end"} {
		t.Run(p, func(t *testing.T) {
			resp, err := http.Get(base + "/" + p)
			if err != nil {
				return // aborted before the header: fine too
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Fatalf("%s: the client read %d bytes without an error", resp.Status, len(b))
			}
		})
	}
	for _, s := range sink.all() {
		if s.Outcome != gateway.OutcomeError {
			t.Errorf("%s: outcome %v", s.Path, s.Outcome)
		}
	}
}

// TestHTTPRangeOfContentThatCannotSeek: a content read forward serves a
// range by skipping, and several ranges whole (200).
func TestHTTPRangeOfContentThatCannotSeek(t *testing.T) {
	h := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		return gateway.NewContent(io.MultiReader(bytes.NewReader(kernel)), int64(len(kernel))), nil
	})
	base := httpEdge(t, &gateway.Server{Handler: h})
	resp, body := get(t, base+"/k", "Range", "bytes=1000-1999")
	if resp.StatusCode != 206 || !bytes.Equal(body, kernel[1000:2000]) {
		t.Fatalf("%s %d", resp.Status, len(body))
	}
	resp, body = get(t, base+"/k", "Range", "bytes=5000-5009,10-19")
	if resp.StatusCode != 200 || !bytes.Equal(body, kernel) {
		t.Fatalf("several ranges: %s %d", resp.Status, len(body))
	}
}

// TestHTTPLimitsAndAdmission: a request meets the per-client limits and
// the admission hook as a TFTP request does.
func TestHTTPLimitsAndAdmission(t *testing.T) {
	release := make(chan struct{})
	var started atomic.Int32
	h := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		if req.Path == "slow" {
			started.Add(1)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return gateway.BytesContent([]byte("ok")), nil
	})
	srv := &gateway.Server{
		Handler:              h,
		MaxSessionsPerClient: 1,
		Admit: func(a gateway.Arrival) gateway.Admission {
			switch {
			case a.Protocol != gateway.ProtocolHTTP:
				panic("not HTTP")
			case a.RawPath == "/refused":
				return gateway.Admission{Action: gateway.AdmitRefuse}
			case a.RawPath == "/dropped":
				return gateway.Admission{Action: gateway.AdmitDrop}
			}
			return gateway.Admission{}
		},
	}
	base := httpEdge(t, srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(base + "/slow")
		if err == nil {
			resp.Body.Close()
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); started.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	resp, _ := get(t, base+"/other")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second request of the client: %s", resp.Status)
	}
	close(release)
	<-done
	if resp, body := get(t, base+"/other"); resp.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("after the first ended: %s", resp.Status)
	}
	if resp, _ := get(t, base+"/refused"); resp.StatusCode != 403 {
		t.Errorf("refused: %s", resp.Status)
	}
	if _, err := http.Get(base + "/dropped"); err == nil {
		t.Errorf("dropped: got an answer")
	}
	// net/http's client sends a GET again once when the connection closes
	// without an answer: one drop or two.
	if st := srv.Stats(); st.PolicyRefusals != 1 || st.PolicyDrops < 1 || st.BusyRefusals != 1 {
		t.Errorf("stats: %+v", st)
	}
}

// closeCounter is a large content that records its Close.
type closeCounter struct {
	gateway.Content
	closed chan struct{}
}

func (c *closeCounter) Close() error {
	close(c.closed)
	return c.Content.Close()
}

// TestHTTPClientThatStopsReadingIsCutOff: a client that stops reading
// does not hold the content (a backend stream, cached bytes) past
// HTTPTimeout.
func TestHTTPClientThatStopsReadingIsCutOff(t *testing.T) {
	big := make([]byte, 64<<20)
	cc := &closeCounter{Content: gateway.NewContent(bytes.NewReader(big), int64(len(big))), closed: make(chan struct{})}
	sink := &statsSink{}
	h := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) { return cc, nil })
	base := httpEdge(t, &gateway.Server{Handler: h, HTTPTimeout: 300 * time.Millisecond, SessionStatsFunc: sink.add})
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	must(t, err)
	defer c.Close()
	must(t, c.(*net.TCPConn).SetReadBuffer(4096))
	fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	// Read nothing more.
	select {
	case <-cc.closed:
	case <-time.After(20 * time.Second):
		t.Fatal("the content is still open 20 s after the client stopped reading")
	}
	for deadline := time.Now().Add(5 * time.Second); len(sink.all()) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if s := sink.all(); len(s) != 1 || s[0].Outcome != gateway.OutcomeAborted || s[0].BytesSent >= int64(len(big)) {
		t.Fatalf("stats: %+v", s)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestHTTPClientGoneDuringSeveralRanges: a client that goes away while
// several ranges are sent (net/http sends them from a goroutine of its
// own, which it does not wait for) ends the request cleanly: no read of
// the content after its close (run with -race).
func TestHTTPClientGoneDuringSeveralRanges(t *testing.T) {
	big := make([]byte, 32<<20)
	sink := &statsSink{}
	h := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		return gateway.NewContent(bytes.NewReader(big), int64(len(big))), nil
	})
	base := httpEdge(t, &gateway.Server{Handler: h, SessionStatsFunc: sink.add})
	for range 5 {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		must(t, err)
		fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9999999,20000000-29999999\r\n\r\n")
		buf := make([]byte, 4096)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	for deadline := time.Now().Add(10 * time.Second); len(sink.all()) < 5 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	for _, s := range sink.all() {
		if s.Outcome != gateway.OutcomeAborted || s.HTTPStatus != 206 {
			t.Errorf("outcome %v status %d", s.Outcome, s.HTTPStatus)
		}
	}
}
