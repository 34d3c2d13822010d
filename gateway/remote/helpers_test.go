package remote

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// readFunc serves one Read call of a fake backend.
type readFunc func(req *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error

// fake is a ContentService whose behaviour each test chooses. It records
// the requests it got and the calls whose context was cancelled.
type fake struct {
	tftpgwv1.UnimplementedContentServiceServer
	name string
	read readFunc

	mu        sync.Mutex
	reqs      []*tftpgwv1.ReadRequest
	cancelled chan string // session IDs of calls cancelled by the client
}

func (f *fake) Read(req *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	err := f.read(req, s)
	if s.Context().Err() != nil && f.cancelled != nil {
		select {
		case f.cancelled <- req.GetSessionId():
		default:
		}
	}
	return err
}

func (f *fake) requests() []*tftpgwv1.ReadRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*tftpgwv1.ReadRequest(nil), f.reqs...)
}

// backend is a running fake on a loopback port.
type backend struct {
	*fake
	addr   string
	srv    *grpc.Server
	health *health.Server
	once   sync.Once
}

// kill stops the backend at once: its connections are closed and its
// calls fail on the client with UNAVAILABLE.
func (b *backend) kill() { b.once.Do(b.srv.Stop) }

func startBackend(t testing.TB, name string, read readFunc) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveBackend(t, ln, name, read)
}

func serveBackend(t testing.TB, ln net.Listener, name string, read readFunc, opts ...grpc.ServerOption) *backend {
	t.Helper()
	f := &fake{name: name, read: read, cancelled: make(chan string, 16)}
	srv := grpc.NewServer(opts...)
	tftpgwv1.RegisterContentServiceServer(srv, f)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	b := &backend{fake: f, addr: ln.Addr().String(), srv: srv, health: hs}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		b.kill()
		<-done
	})
	return b
}

// file is a content a fake serves, honouring offset and if_match like a
// real backend.
type file struct {
	data   []byte
	etag   string
	noSize bool
	maxAge time.Duration
	chunks []int // chunk sizes, repeated; 4096 if empty
	// breakAt, if > 0, makes the first call (offset 0) fail with
	// UNAVAILABLE after sending this many bytes.
	breakAt int
	// ignoreOffset sends the data from byte 0 whatever the offset asked
	// for; echo then sets Header.offset to the offset asked for anyway (a
	// lying backend), zeroOffset sets it to 0 (an honest one), and with
	// neither it is left out (an older or careless backend).
	ignoreOffset, echo, zeroOffset bool
	// digest is sent as the header's sha256 (nil: none).
	digest []byte
}

func (fl *file) serve(req *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
	if req.GetIfMatch() != "" && req.GetIfMatch() != fl.etag {
		return status.Error(codes.FailedPrecondition, "etag mismatch")
	}
	hdr := &tftpgwv1.Header{Etag: fl.etag, Sha256: fl.digest}
	switch {
	case !fl.ignoreOffset:
		hdr.Offset = proto.Uint64(req.GetOffset())
	case fl.echo:
		hdr.Offset = proto.Uint64(req.GetOffset())
	case fl.zeroOffset:
		hdr.Offset = proto.Uint64(0)
	}
	if !fl.noSize {
		n := int64(len(fl.data))
		hdr.Size = &n
	}
	if fl.maxAge != 0 { // negative: present and zero
		hdr.MaxAge = durationpb.New(max(fl.maxAge, 0))
	}
	if err := s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Header{Header: hdr}}); err != nil {
		return err
	}
	off := int(req.GetOffset())
	if fl.ignoreOffset {
		off = 0
	}
	chunks := fl.chunks
	if len(chunks) == 0 {
		chunks = []int{4096}
	}
	for i := 0; off < len(fl.data); i++ {
		n := min(chunks[i%len(chunks)], len(fl.data)-off)
		if fl.breakAt > 0 && req.GetOffset() == 0 && off+n > fl.breakAt {
			n = fl.breakAt - off
			if n > 0 {
				if err := s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Data{Data: fl.data[off : off+n]}}); err != nil {
					return err
				}
			}
			return status.Error(codes.Unavailable, "simulated break")
		}
		if err := s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Data{Data: fl.data[off : off+n]}}); err != nil {
			return err
		}
		off += n
	}
	return nil
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// logBuffer collects log output safely.
type logBuffer struct{ syncbuf.Buffer }

// lines returns the log lines containing all of subs.
func (l *logBuffer) lines(subs ...string) []string {
	var out []string
	for line := range strings.SplitSeq(l.String(), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

func testLogger(t testing.TB) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

func dial(t testing.TB, target string, cfg Config) *Handler {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger, _ = testLogger(t)
	}
	if cfg.EdgeID == "" {
		cfg.EdgeID = "edge-test"
	}
	h, err := Dial(target, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func request(id, path string) *gateway.Request {
	return &gateway.Request{SessionID: id, RawPath: path, Path: path, Mode: "octet"}
}

// readBlocks reads c the way the TFTP engine does: full blocks of size bs
// until a short one.
func readBlocks(c io.Reader, bs int) ([]byte, error) {
	var out []byte
	buf := make([]byte, bs)
	for {
		n, err := io.ReadFull(c, buf)
		out = append(out, buf[:n]...)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
