package httpupstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/tftpgw/tftpgw/backend"
	"github.com/tftpgw/tftpgw/gateway"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

const body = "0123456789abcdefghijklmnopqrstuvwxyz"

// repo is an HTTP file repository for tests.
type repo struct {
	mu     sync.Mutex
	etag   string // "" for none (then Last-Modified is the validator)
	data   string
	ranges []string // Range headers received
}

func (r *repo) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	etag, data := r.etag, r.data
	if rg := req.Header.Get("Range"); rg != "" {
		r.ranges = append(r.ranges, rg+" if-range="+req.Header.Get("If-Range"))
	}
	r.mu.Unlock()
	switch req.URL.Path {
	case "/repo/boot/file":
		if etag != "" {
			w.Header().Set("ETag", etag)
		}
		w.Header().Set("Cache-Control", "public, max-age=60")
		http.ServeContent(w, req, "file", time.Unix(1e9, 0), strings.NewReader(data))
	case "/repo/norange":
		w.Header().Set("ETag", etag)
		io.WriteString(w, data)
	case "/repo/chunked":
		w.Header().Set("ETag", etag)
		w.(http.Flusher).Flush() // no Content-Length
		io.WriteString(w, data)
	case "/repo/secret":
		http.Error(w, "no", http.StatusForbidden)
	case "/repo/login":
		http.Error(w, "no", http.StatusUnauthorized)
	case "/repo/broken":
		http.Error(w, "oops", http.StatusBadGateway)
	default:
		http.NotFound(w, req)
	}
}

func (r *repo) set(etag, data string) {
	r.mu.Lock()
	r.etag, r.data = etag, data
	r.mu.Unlock()
}

func start(t *testing.T) (*repo, *Handler) {
	t.Helper()
	r := &repo{etag: `"v1"`, data: body}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	h, err := New(srv.URL+"/repo/", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return r, h
}

func get(t *testing.T, h *Handler, p string) (gateway.Content, error) {
	t.Helper()
	return h.ServeTFTP(t.Context(), &gateway.Request{Path: p})
}

func TestFetch(t *testing.T) {
	_, h := start(t)
	c, err := get(t, h, "boot/file")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	info := c.(gateway.InfoContent).Info()
	if string(b) != body || c.Size() != int64(len(body)) || info.ETag != `"v1"` || info.MaxAge != time.Minute {
		t.Errorf("got %q size %d info %+v", b, c.Size(), info)
	}
}

func TestUnknownSize(t *testing.T) {
	_, h := start(t)
	c, err := get(t, h, "chunked")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	if string(b) != body || c.Size() != -1 {
		t.Errorf("got %q size %d", b, c.Size())
	}
}

func TestErrors(t *testing.T) {
	_, h := start(t)
	for p, want := range map[string]gateway.ErrorCode{
		"missing":  gateway.ErrFileNotFound,
		"secret":   gateway.ErrAccessViolation,
		"login":    gateway.ErrAccessViolation,
		"broken":   gateway.ErrNotDefined,
		"a/../etc": gateway.ErrAccessViolation,
	} {
		_, err := get(t, h, p)
		if err == nil || gateway.ErrorFor(err).Code != want {
			t.Errorf("%s: err %v, want TFTP error %d", p, err, want)
		}
	}
	if _, err := New("ftp://x/", nil); err == nil {
		t.Errorf("New accepted an ftp URL")
	}
}

func TestSeek(t *testing.T) {
	for _, tc := range []struct {
		name, path, etag string
		offset           int64
		want             string
		wantRange        string
	}{
		{"range with etag", "boot/file", `"v1"`, 10, body[10:], `bytes=10- if-range="v1"`},
		{"range with last-modified", "boot/file", "", 30, body[30:], "bytes=30- if-range=Sun, 09 Sep 2001 01:46:40 GMT"},
		{"weak etag", "boot/file", `W/"v1"`, 5, body[5:], "bytes=5- if-range="},
		{"range ignored", "norange", `"v1"`, 20, body[20:], `bytes=20- if-range="v1"`},
		{"at end", "boot/file", `"v1"`, int64(len(body)), "", ""},
		{"unknown size past end", "chunked", `"v1"`, 100, "", `bytes=100- if-range="v1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, h := start(t)
			r.set(tc.etag, body)
			c, err := get(t, h, tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.(io.Seeker).Seek(tc.offset, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(c)
			if err != nil || string(b) != tc.want {
				t.Errorf("read %q, %v; want %q", b, err, tc.want)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			if got := strings.Join(r.ranges, ";"); got != tc.wantRange {
				t.Errorf("ranges %q, want %q", got, tc.wantRange)
			}
		})
	}
}

func TestSeekAfterChange(t *testing.T) {
	for _, path := range []string{"boot/file", "norange"} {
		r, h := start(t)
		c, err := get(t, h, path)
		if err != nil {
			t.Fatal(err)
		}
		r.set(`"v2"`, strings.ToUpper(body))
		_, err = c.(io.Seeker).Seek(10, io.SeekStart)
		if !errors.Is(err, backend.ErrETagMismatch) {
			t.Errorf("%s: Seek after change: %v", path, err)
		}
		c.Close()
	}
}

// Through the backend SDK over gRPC, as the edge sees it: a resume at an
// offset, then the same resume after the file changed.
func TestResumeThroughBackend(t *testing.T) {
	r, h := start(t)
	lis := bufconn.Listen(1 << 20)
	srv := backend.NewServer(h, backend.Config{Logger: slog.New(slog.DiscardHandler)})
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	read := func(offset uint64, ifMatch string) (*tftpgwv1.Header, string, error) {
		stream, err := tftpgwv1.NewContentServiceClient(conn).Read(t.Context(),
			&tftpgwv1.ReadRequest{Path: "boot/file", Offset: offset, IfMatch: ifMatch})
		if err != nil {
			return nil, "", err
		}
		var (
			hdr  *tftpgwv1.Header
			data bytes.Buffer
		)
		for {
			msg, err := stream.Recv()
			if err == io.EOF {
				return hdr, data.String(), nil
			}
			if err != nil {
				return hdr, data.String(), err
			}
			if msg.GetHeader() != nil {
				hdr = msg.GetHeader()
			}
			data.Write(msg.GetData())
		}
	}

	hdr, data, err := read(0, "")
	if err != nil || data != body || hdr.GetEtag() != `"v1"` {
		t.Fatalf("first read: %v %q %v", hdr, data, err)
	}
	hdr, data, err = read(25, hdr.GetEtag())
	if err != nil || data != body[25:] || hdr.GetSize() != int64(len(body)) {
		t.Fatalf("resumed read: %v %q %v", hdr, data, err)
	}
	r.set(`"v2"`, strings.ToUpper(body))
	if _, _, err = read(25, `"v1"`); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("resume after change: %v, want FailedPrecondition", err)
	}
}

// TestIdentity: the edge gets an ETag only where the same ETag means the
// same bytes (found in review: weak ETags and same-second Last-Modified
// dates were passed on, so a rewrite within a second could be served from
// the edge cache or spliced into a resumed transfer).
func TestIdentity(t *testing.T) {
	const lm = "Sun, 09 Sep 2001 01:46:40 GMT"
	for _, tc := range []struct {
		name, etag, lastModified, date, want string
	}{
		{"strong ETag", `"v1"`, lm, lm, `"v1"`},
		{"weak ETag", `W/"v1"`, lm, "Sun, 09 Sep 2001 01:50:00 GMT", ""},
		{"Last-Modified a second before Date", "", lm, "Sun, 09 Sep 2001 01:46:41 GMT", lm},
		{"Last-Modified in Date's second", "", lm, lm, ""},
		{"Last-Modified without Date", "", lm, "", ""},
		{"no validator", "", "", "Sun, 09 Sep 2001 01:50:00 GMT", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range map[string]string{"ETag": tc.etag, "Last-Modified": tc.lastModified, "Date": tc.date} {
				if v != "" {
					h.Set(k, v)
				}
			}
			if got := identity(h); got != tc.want {
				t.Errorf("identity = %q, want %q", got, tc.want)
			}
		})
	}
}
