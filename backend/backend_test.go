package backend

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/tftpgw/tftpgw/gateway"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// dial starts NewServer(h, cfg) on a bufconn listener and returns a client
// connection; both are stopped when the test ends.
func dial(t *testing.T, h gateway.Handler, cfg Config) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	if cfg.Logger == nil {
		cfg.Logger = discardLogger()
	}
	srv := NewServer(h, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		<-done
	})
	return conn
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

type result struct {
	header *tftpgwv1.Header
	chunks [][]byte
	err    error
}

func (r result) data() []byte { return bytes.Join(r.chunks, nil) }

// read makes one Read call and collects its messages. It fails the test if
// the stream breaks the message order.
func read(ctx context.Context, t *testing.T, conn *grpc.ClientConn, req *tftpgwv1.ReadRequest) result {
	t.Helper()
	stream, err := tftpgwv1.NewContentServiceClient(conn).Read(ctx, req)
	if err != nil {
		return result{err: err}
	}
	var r result
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return r
		}
		if err != nil {
			r.err = err
			return r
		}
		switch m := msg.Msg.(type) {
		case *tftpgwv1.ReadResponse_Header:
			if r.header != nil || r.chunks != nil {
				t.Fatalf("header after another message")
			}
			r.header = m.Header
		case *tftpgwv1.ReadResponse_Data:
			if r.header == nil {
				t.Fatalf("data before the header")
			}
			if len(m.Data) == 0 {
				t.Errorf("empty data chunk")
			}
			r.chunks = append(r.chunks, m.Data)
		default:
			t.Fatalf("unexpected message %T", m)
		}
	}
}

// tftpError returns the TFTPError detail of err's status, or nil.
func tftpError(err error) *tftpgwv1.TFTPError {
	for _, d := range status.Convert(err).Details() {
		if te, ok := d.(*tftpgwv1.TFTPError); ok {
			return te
		}
	}
	return nil
}

// memContent is a seekable InfoContent that counts seeks and closes.
type memContent struct {
	*bytes.Reader
	size   int64
	info   gateway.ContentInfo
	seeks  atomic.Int32
	closed atomic.Int32
}

func newMem(s string, info gateway.ContentInfo) *memContent {
	return &memContent{Reader: bytes.NewReader([]byte(s)), size: int64(len(s)), info: info}
}

func (c *memContent) Size() int64                        { return c.size }
func (c *memContent) Info() gateway.ContentInfo          { return c.info }
func (c *memContent) Close() error                       { c.closed.Add(1); return nil }
func (c *memContent) Seek(o int64, w int) (int64, error) { c.seeks.Add(1); return c.Reader.Seek(o, w) }

func static(c gateway.Content) gateway.Handler {
	return gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) { return c, nil })
}

const alphabet = "abcdefghijklmnopqrstuvwxyz"

func TestHeaderThenData(t *testing.T) {
	c := newMem(alphabet, gateway.ContentInfo{ETag: "v1", MaxAge: 90 * time.Second})
	conn := dial(t, static(c), Config{ChunkSize: 10})
	r := read(t.Context(), t, conn, &tftpgwv1.ReadRequest{Path: "a"})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.header.Size == nil || *r.header.Size != 26 {
		t.Errorf("size = %v, want 26", r.header.Size)
	}
	if r.header.GetEtag() != "v1" || r.header.GetMaxAge().AsDuration() != 90*time.Second {
		t.Errorf("header = %v", r.header)
	}
	if got := string(r.data()); got != alphabet {
		t.Errorf("data = %q", got)
	}
	if len(r.chunks) != 3 || len(r.chunks[0]) != 10 {
		t.Errorf("chunk sizes: got %d chunks, want 10+10+6", len(r.chunks))
	}
	if n := c.closed.Load(); n != 1 {
		t.Errorf("closed %d times, want 1", n)
	}
}

func TestEmptyContent(t *testing.T) {
	conn := dial(t, static(gateway.BytesContent(nil)), Config{})
	r := read(t.Context(), t, conn, &tftpgwv1.ReadRequest{Path: "empty"})
	if r.err != nil || r.header == nil || r.header.GetSize() != 0 || len(r.chunks) != 0 {
		t.Fatalf("got %+v", r)
	}
	if r.header.MaxAge != nil || r.header.Etag != "" {
		t.Errorf("header = %v, want no etag nor max_age", r.header)
	}
}

// TestNegativeMaxAgeIsAZeroMaxAge: a content whose MaxAge is negative (no
// freshness, not even an edge's default) is sent with a max_age present
// and zero.
func TestNegativeMaxAgeIsAZeroMaxAge(t *testing.T) {
	conn := dial(t, static(newMem(alphabet, gateway.ContentInfo{ETag: "v1", MaxAge: -1})), Config{})
	r := read(t.Context(), t, conn, &tftpgwv1.ReadRequest{Path: "a"})
	if r.err != nil || r.header.MaxAge == nil || r.header.GetMaxAge().AsDuration() != 0 {
		t.Fatalf("header %v, %v", r.header, r.err)
	}
}

func TestSizeAbsentWhenUnknown(t *testing.T) {
	conn := dial(t, static(gateway.NewContent(strings.NewReader("hello"), -1)), Config{})
	r := read(t.Context(), t, conn, &tftpgwv1.ReadRequest{Path: "a"})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.header.Size != nil {
		t.Errorf("size = %d, want absent", *r.header.Size)
	}
	if string(r.data()) != "hello" {
		t.Errorf("data = %q", r.data())
	}
}

func TestRequestFields(t *testing.T) {
	var got *gateway.Request
	var edge string
	h := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		got, edge = req, EdgeID(ctx)
		return gateway.BytesContent(nil), nil
	})
	conn := dial(t, h, Config{})
	r := read(t.Context(), t, conn, &tftpgwv1.ReadRequest{
		SessionId:    "s1",
		RawPath:      `\boot\\x`,
		Path:         "boot/x",
		Mode:         "netascii",
		Options:      []*tftpgwv1.Option{{Name: "blksize", Value: "1468"}, {Name: "tsize", Value: "0"}},
		Client:       &tftpgwv1.Address{Ip: "192.0.2.7", Port: 2000},
		LocalAddress: &tftpgwv1.Address{Ip: "2001:db8::1", Port: 69},
		EdgeId:       "edge-a",
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got.SessionID != "s1" || got.RawPath != `\boot\\x` || got.Path != "boot/x" || got.Mode != "netascii" {
		t.Errorf("request = %+v", got)
	}
	if got.RemoteAddr != netip.MustParseAddrPort("192.0.2.7:2000") || got.LocalAddr != netip.MustParseAddrPort("[2001:db8::1]:69") {
		t.Errorf("addresses = %v %v", got.RemoteAddr, got.LocalAddr)
	}
	if v, ok := got.Option("BLKSIZE"); !ok || v != "1468" || len(got.Options) != 2 {
		t.Errorf("options = %v", got.Options)
	}
	if edge != "edge-a" {
		t.Errorf("EdgeID = %q", edge)
	}
}

func TestBadPath(t *testing.T) {
	conn := dial(t, static(gateway.BytesContent(nil)), Config{})
	for _, p := range []string{"/etc/passwd", "../etc/passwd", "a/../../b", `a\..\b`, ".."} {
		r := read(t.Context(), t, conn, &tftpgwv1.ReadRequest{Path: p})
		if status.Code(r.err) != codes.InvalidArgument {
			t.Errorf("path %q: err = %v, want InvalidArgument", p, r.err)
		}
	}
}

func TestOffset(t *testing.T) {
	seekable := func() gateway.Content { return newMem(alphabet, gateway.ContentInfo{ETag: "v1"}) }
	plain := func() gateway.Content { return gateway.NewContent(strings.NewReader(alphabet), 26) }
	for _, tc := range []struct {
		name     string
		content  func() gateway.Content
		offset   uint64
		want     string
		wantSeek bool
	}{
		{"seekable", seekable, 10, alphabet[10:], true},
		{"seekable at end", seekable, 26, "", true},
		{"seekable past end", seekable, 100, "", true},
		{"plain", plain, 10, alphabet[10:], false},
		{"plain at end", plain, 26, "", false},
		{"plain past end", plain, 100, "", false},
		{"plain spanning chunks", plain, 3, alphabet[3:], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.content()
			conn := dial(t, static(c), Config{ChunkSize: 4})
			r := read(t.Context(), t, conn, &tftpgwv1.ReadRequest{Path: "a", Offset: tc.offset})
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.header.GetSize() != 26 {
				t.Errorf("size = %d, want the full 26", r.header.GetSize())
			}
			if got := string(r.data()); got != tc.want {
				t.Errorf("data = %q, want %q", got, tc.want)
			}
			if m, ok := c.(*memContent); ok && (m.seeks.Load() > 0) != tc.wantSeek {
				t.Errorf("seeks = %d", m.seeks.Load())
			}
		})
	}
}

func TestIfMatch(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/f", []byte(alphabet), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	conn := dial(t, gateway.FileServer(root), Config{})

	first := read(t.Context(), t, conn, &tftpgwv1.ReadRequest{Path: "f"})
	if first.err != nil || first.header.GetEtag() == "" {
		t.Fatalf("first read: %+v", first)
	}
	resumed := read(t.Context(), t, conn, &tftpgwv1.ReadRequest{Path: "f", Offset: 20, IfMatch: first.header.GetEtag()})
	if resumed.err != nil || string(resumed.data()) != alphabet[20:] {
		t.Fatalf("resumed read: %+v", resumed)
	}

	changed := read(t.Context(), t, conn, &tftpgwv1.ReadRequest{Path: "f", Offset: 20, IfMatch: "other"})
	if status.Code(changed.err) != codes.FailedPrecondition {
		t.Errorf("etag mismatch: err = %v, want FailedPrecondition", changed.err)
	}
	if changed.header != nil {
		t.Errorf("etag mismatch: a header was sent")
	}
	if te := tftpError(changed.err); te == nil || te.Code != 0 {
		t.Errorf("etag mismatch: detail = %v", te)
	}

	// Content without an etag can never match.
	conn2 := dial(t, static(gateway.BytesContent([]byte("x"))), Config{})
	noTag := read(t.Context(), t, conn2, &tftpgwv1.ReadRequest{Path: "f", IfMatch: "v1"})
	if status.Code(noTag.err) != codes.FailedPrecondition {
		t.Errorf("no etag: err = %v, want FailedPrecondition", noTag.err)
	}
}

// seekFailContent reports a changed source when seeked.
type seekFailContent struct{ *memContent }

func (c seekFailContent) Seek(int64, int) (int64, error) {
	return 0, ErrETagMismatch
}

func TestSeekETagMismatch(t *testing.T) {
	conn := dial(t, static(seekFailContent{newMem(alphabet, gateway.ContentInfo{ETag: "v1"})}), Config{})
	r := read(t.Context(), t, conn, &tftpgwv1.ReadRequest{Path: "a", Offset: 5, IfMatch: "v1"})
	if status.Code(r.err) != codes.FailedPrecondition {
		t.Errorf("err = %v, want FailedPrecondition", r.err)
	}
}

func TestErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		code    codes.Code
		tftp    uint32
		message string
	}{
		{"not exist", &fs.PathError{Op: "open", Path: "/srv/secret", Err: fs.ErrNotExist}, codes.NotFound, 1, "file not found"},
		{"permission", &fs.PathError{Op: "open", Path: "/srv/secret", Err: fs.ErrPermission}, codes.PermissionDenied, 2, "access violation"},
		{"not regular", gateway.ErrNotRegular, codes.PermissionDenied, 2, "not a regular file"},
		{"generic", errors.New("db at 10.0.0.1 down"), codes.Internal, 0, "internal error"},
		{"explicit", &gateway.Error{Code: gateway.ErrNoSuchUser, Message: "who?"}, codes.Unknown, 7, "who?"},
		{"explicit wrapped", errors.Join(errors.New("x"), &gateway.Error{Code: gateway.ErrFileNotFound, Message: "no such image"}), codes.NotFound, 1, "no such image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) { return nil, tc.err })
			conn := dial(t, h, Config{})
			r := read(t.Context(), t, conn, &tftpgwv1.ReadRequest{Path: "a"})
			if status.Code(r.err) != tc.code {
				t.Errorf("code = %v, want %v (%v)", status.Code(r.err), tc.code, r.err)
			}
			te := tftpError(r.err)
			if te == nil || te.Code != tc.tftp || te.Message != tc.message {
				t.Errorf("detail = %v, want %d %q", te, tc.tftp, tc.message)
			}
		})
	}
}

func TestNilHandlerIsNotFound(t *testing.T) {
	conn := dial(t, nil, Config{})
	r := read(t.Context(), t, conn, &tftpgwv1.ReadRequest{Path: "a"})
	if status.Code(r.err) != codes.NotFound {
		t.Errorf("err = %v", r.err)
	}
}

// failingReader returns some bytes, then an error.
type failingReader struct{ sent bool }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.sent {
		return 0, io.ErrUnexpectedEOF
	}
	r.sent = true
	return copy(p, "abc"), nil
}

func TestReadErrorAfterData(t *testing.T) {
	conn := dial(t, static(gateway.NewContent(&failingReader{}, 10)), Config{})
	r := read(t.Context(), t, conn, &tftpgwv1.ReadRequest{Path: "a"})
	if status.Code(r.err) != codes.Internal || string(r.data()) != "abc" {
		t.Errorf("got data %q, err %v; want abc and Internal", r.data(), r.err)
	}
}

func TestAuth(t *testing.T) {
	conn := dial(t, static(gateway.BytesContent([]byte("x"))), Config{Token: "s3cret"})
	withToken := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+tok)
	}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want codes.Code
	}{
		{"no token", t.Context(), codes.Unauthenticated},
		{"wrong token", withToken("s3cres"), codes.Unauthenticated},
		{"short token", withToken("s3"), codes.Unauthenticated},
		{"right token", withToken("s3cret"), codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := read(tc.ctx, t, conn, &tftpgwv1.ReadRequest{Path: "a"})
			if status.Code(r.err) != tc.want {
				t.Errorf("err = %v, want %v", r.err, tc.want)
			}
		})
	}
	t.Run("health without token", func(t *testing.T) {
		resp, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health = %v, %v", resp, err)
		}
		resp, err = healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "tftpgw.v1.ContentService"})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of ContentService = %v, %v", resp, err)
		}
	})
}

// blockingContent blocks in Read until it is closed.
type blockingContent struct {
	closed chan struct{}
	once   atomic.Bool
}

func (c *blockingContent) Size() int64 { return -1 }
func (c *blockingContent) Read([]byte) (int, error) {
	<-c.closed
	return 0, os.ErrClosed
}
func (c *blockingContent) Close() error {
	if c.once.CompareAndSwap(false, true) {
		close(c.closed)
	}
	return nil
}

func TestCancellation(t *testing.T) {
	c := &blockingContent{closed: make(chan struct{})}
	handlerDone := make(chan struct{})
	h := gateway.HandlerFunc(func(ctx context.Context, _ *gateway.Request) (gateway.Content, error) {
		context.AfterFunc(ctx, func() { close(handlerDone) })
		return c, nil
	})
	conn := dial(t, h, Config{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := tftpgwv1.NewContentServiceClient(conn).Read(ctx, &tftpgwv1.ReadRequest{Path: "a"})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.Recv()
	if err != nil || msg.GetHeader() == nil {
		t.Fatalf("first message: %v, %v", msg, err)
	}
	cancel()
	for _, w := range []struct {
		name string
		ch   chan struct{}
	}{{"handler context cancelled", handlerDone}, {"content closed", c.closed}} {
		select {
		case <-w.ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: not observed", w.name)
		}
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("Recv after cancel: %v", err)
	}
}

func TestPanicIsInternal(t *testing.T) {
	var calls atomic.Int32
	h := gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
		if calls.Add(1) == 1 {
			panic("boom")
		}
		return gateway.BytesContent([]byte("ok")), nil
	})
	conn := dial(t, h, Config{Logger: discardLogger()})
	r := read(t.Context(), t, conn, &tftpgwv1.ReadRequest{Path: "a"})
	if status.Code(r.err) != codes.Internal {
		t.Fatalf("err = %v, want Internal", r.err)
	}
	r = read(t.Context(), t, conn, &tftpgwv1.ReadRequest{Path: "a"})
	if r.err != nil || string(r.data()) != "ok" {
		t.Fatalf("after the panic: %+v", r)
	}
}
