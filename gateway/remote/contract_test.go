package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sdk "github.com/tftpgw/tftpgw/backend"
	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// Tests of the promises of content.proto (issue 13): a file is never
// reported complete with bytes the edge can know to be wrong, any request
// reaches the backend, and the limits are the documented ones.

// get fetches path with a strict client; it returns the bytes received
// and the error.
func get(t *testing.T, addr, path string, o tftpclient.Options) ([]byte, error) {
	t.Helper()
	var buf bytes.Buffer
	_, err := tftpclient.Get(ctxT(t, 30*time.Second), addr, path, &buf, o)
	return buf.Bytes(), err
}

// splicing serves a content without a size whose first call breaks after
// breakAt bytes; resumed calls are answered by resume.
func splicing(data []byte, breakAt int, resume file) readFunc {
	return func(req *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
		if req.GetOffset() == 0 {
			return (&file{data: data, etag: "v1", noSize: true, breakAt: breakAt, digest: resume.digest}).serve(req, s)
		}
		return resume.serve(req, s)
	}
}

// TestResumeThatIgnoresTheOffsetNeverSplices (issue 13 point 1): a
// content with an ETag but no size breaks after 300,000 bytes; the backend
// that takes the resume has the same ETag but streams from byte 0. The
// client got the first 300,000 bytes and then the whole file, and
// "succeeded". Now a header must confirm the offset, and one that does not
// ends the transfer with an ERROR; a backend that confirms it but lies is
// caught by the digest when there is one.
func TestResumeThatIgnoresTheOffsetNeverSplices(t *testing.T) {
	data := pattern(1_000_000)
	sum := sha256.Sum256(data)
	tests := []struct {
		name   string
		resume file
		want   string // the TFTP error message, "" for success
	}{
		{"offset ignored, header without offset", file{data: data, etag: "v1", noSize: true, ignoreOffset: true}, "content changed"},
		{"offset ignored, header at 0", file{data: data, etag: "v1", noSize: true, ignoreOffset: true, zeroOffset: true}, "content changed"},
		{"offset ignored, echoed falsely, digest", file{data: data, etag: "v1", noSize: true, ignoreOffset: true, echo: true, digest: sum[:]}, "integrity check failed"},
		{"offset honoured", file{data: data, etag: "v1", noSize: true}, ""},
		{"offset honoured, digest", file{data: data, etag: "v1", noSize: true, digest: sum[:]}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBackend(t, "b", splicing(data, 300_000, tt.resume))
			e := gatewaytest.NewServer(t, dial(t, b.addr, Config{}))
			got, err := get(t, e.Addr().String(), "f", tftpclient.Options{BlockSize: 1468, WindowSize: 8})
			st := e.NextStats(t)
			if tt.want == "" {
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("Get: %v, %d bytes; want the %d bytes of the file", err, len(got), len(data))
				}
				if st.Backend == nil || st.Backend.Resumes != 1 {
					t.Errorf("backend stats %+v, want 1 resume", st.Backend)
				}
				return
			}
			var te *tftpclient.Error
			if !errors.As(err, &te) || te.Message != tt.want {
				t.Fatalf("Get: %v after %d bytes; want ERROR 0 %q", err, len(got), tt.want)
			}
			if st.Outcome != gateway.OutcomeError {
				t.Errorf("outcome %v, want error", st.Outcome)
			}
		})
	}
}

// TestDigest: a header's sha256 is checked against the bytes received,
// across resumes, before the content ends: a wrong one fails the content
// at its end instead of io.EOF; a resume with another digest, or a digest
// that is not 32 bytes, is refused.
func TestDigest(t *testing.T) {
	data := pattern(200_000)
	good := sha256.Sum256(data)
	bad := sha256.Sum256(data[1:])
	tests := []struct {
		name    string
		read    readFunc
		wantErr error // nil: the content reads to io.EOF with data
	}{
		{"right digest", (&file{data: data, etag: "v1", digest: good[:]}).serve, nil},
		{"right digest, no size, resumed", splicing(data, 70_001, file{data: data, etag: "v1", noSize: true, digest: good[:]}), nil},
		{"wrong digest", (&file{data: data, etag: "v1", digest: bad[:]}).serve, gateway.ErrIntegrity},
		{"wrong digest, no size", (&file{data: data, etag: "v1", digest: bad[:], noSize: true}).serve, gateway.ErrIntegrity},
		{"bytes changed under a resume", func(req *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
			if req.GetOffset() == 0 {
				return (&file{data: data, etag: "v1", digest: good[:], breakAt: 100_000}).serve(req, s)
			}
			other := bytes.Clone(data)
			other[150_000] ^= 1
			return (&file{data: other, etag: "v1"}).serve(req, s)
		}, gateway.ErrIntegrity},
		{"another digest on resume", func(req *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
			if req.GetOffset() == 0 {
				return (&file{data: data, etag: "v1", digest: good[:], breakAt: 100_000}).serve(req, s)
			}
			return (&file{data: data, etag: "v1", digest: bad[:]}).serve(req, s)
		}, errChanged},
		{"digest of 20 bytes", (&file{data: data, etag: "v1", digest: good[:20]}).serve, errBackend},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBackend(t, "a", tt.read)
			h := dial(t, b.addr, Config{})
			c, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("s", "f"))
			if err == nil {
				defer c.Close()
				var got []byte
				got, err = readBlocks(c, 1468)
				if err == nil && !bytes.Equal(got, data) {
					t.Fatalf("read %d bytes, not the file", len(got))
				}
				if err == nil && c.(gateway.InfoContent).Info().SHA256 != good {
					t.Errorf("Info().SHA256 = %x, want %x", c.(gateway.InfoContent).Info().SHA256, good)
				}
			}
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestIntegrityFailureEndsBeforeTheFinalBlock: through the engine, a
// wrong digest reaches the client as ERROR 0 "integrity check failed"
// and never as a complete file, and the server counts it.
//
// With a size, the client never receives every byte, even when the size
// is a multiple of the block size (the last full block waits for the
// check). Without one, a content whose length is a multiple of the block
// size reaches the client whole but never its final (empty) DATA: the
// edge cannot know a block is the last before the stream ends.
func TestIntegrityFailureEndsBeforeTheFinalBlock(t *testing.T) {
	bad := sha256.Sum256(nil)
	for _, tc := range []struct {
		size     int
		noSize   bool
		allBytes bool // the client may hold every byte (never the final DATA)
	}{
		{50_000, false, false},
		{50_000, true, false},
		{34 * 1468, false, false},
		{34 * 1468, true, true},
	} {
		data := pattern(tc.size)
		for _, w := range []int{1, 4} {
			b := startBackend(t, "a", (&file{data: data, etag: "v1", digest: bad[:], noSize: tc.noSize}).serve)
			e := gatewaytest.NewServer(t, dial(t, b.addr, Config{}))
			got, err := get(t, e.Addr().String(), "f", tftpclient.Options{BlockSize: 1468, WindowSize: w})
			var te *tftpclient.Error
			if !errors.As(err, &te) || te.Code != 0 || te.Message != "integrity check failed" {
				t.Fatalf("%+v window %d: Get: %v after %d bytes; want ERROR 0 integrity check failed", tc, w, err, len(got))
			}
			if len(got) >= len(data) && !tc.allBytes {
				t.Errorf("%+v window %d: client got %d bytes of %d", tc, w, len(got), len(data))
			}
			e.NextStats(t)
			if n := e.Config.Stats().IntegrityFailures; n != 1 {
				t.Errorf("%+v window %d: IntegrityFailures = %d, want 1", tc, w, n)
			}
		}
	}
}

// TestRequestBytesReachTheBackend (issue 13 point 2): a filename padded
// with 0xFF (PXE ROMs), a Latin-1 name and a non-UTF-8 option value got
// ERROR 0 "backend error" behind a backend (gRPC refuses a proto string
// that is not UTF-8) while -root served them. The text fields now carry
// U+FFFD and the bytes fields the exact bytes, and a Go handler behind
// the SDK sees the same Request it would see in-process.
func TestRequestBytesReachTheBackend(t *testing.T) {
	type seen struct{ raw, path, optName, optValue string }
	var (
		mu  sync.Mutex
		got []seen
	)
	h := gateway.HandlerFunc(func(_ context.Context, r *gateway.Request) (gateway.Content, error) {
		s := seen{raw: r.RawPath, path: r.Path}
		for _, o := range r.Options {
			if o.Name != "blksize" {
				s.optName, s.optValue = o.Name, o.Value
			}
		}
		mu.Lock()
		got = append(got, s)
		mu.Unlock()
		return gateway.BytesContent([]byte("hello " + r.Path)), nil
	})
	srv := grpc.NewServer()
	tftpgwv1.RegisterContentServiceServer(srv, sdk.NewContentService(h))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	e := gatewaytest.NewServer(t, dial(t, ln.Addr().String(), Config{}))

	tests := []struct {
		name, raw, path string
		opt             [2]string
	}{
		{"0xFF padding", "pxelinux.0\xff\xff", "pxelinux.0", [2]string{}},
		{"Latin-1 name", "caf\xe9/men\xfc.cfg", "caf\xe9/men\xfc.cfg", [2]string{}},
		{"option value not UTF-8", "f", "f", [2]string{"x-vendor", "\xc0\xaf\xff"}},
		{"option name not UTF-8", "f", "f", [2]string{"x-\xe9", "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			got = nil
			mu.Unlock()
			o := tftpclient.Options{BlockSize: 1024}
			if tt.opt[0] != "" {
				o.ExtraOptions = [][2]string{tt.opt}
			}
			body, err := get(t, e.Addr().String(), tt.raw, o)
			if err != nil || string(body) != "hello "+tt.path {
				t.Fatalf("Get: %v, %q", err, body)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 1 || got[0] != (seen{tt.raw, tt.path, tt.opt[0], tt.opt[1]}) {
				t.Errorf("handler saw %q, want %q", got, []seen{{tt.raw, tt.path, tt.opt[0], tt.opt[1]}})
			}
		})
	}

	t.Run("text fields are UTF-8 with U+FFFD", func(t *testing.T) {
		r := readRequest(&gateway.Request{
			RawPath: "caf\xe9.cfg\xff", Path: "caf\xe9.cfg",
			Options: []gateway.Option{{Name: "x-\xe9", Value: "\xc0\xaf"}},
		}, "edge")
		want := &tftpgwv1.ReadRequest{
			RawPath: "caf\uFFFD.cfg\uFFFD", Path: "caf\uFFFD.cfg", EdgeId: "edge", Protocol: tftpgwv1.Protocol_PROTOCOL_TFTP,
			RawPathBytes: []byte("caf\xe9.cfg\xff"), PathBytes: []byte("caf\xe9.cfg"),
			Options: []*tftpgwv1.Option{{Name: "x-\uFFFD", Value: "\uFFFD\uFFFD", NameBytes: []byte("x-\xe9"), ValueBytes: []byte("\xc0\xaf")}},
		}
		if r.String() != want.String() {
			t.Errorf("ReadRequest\n%v\nwant\n%v", r, want)
		}
	})
}

// TestChunkLimit (issue 13 point 5): content.proto allows data chunks of
// up to 4 MiB; one of exactly 4 MiB works (it failed before: gRPC's
// default limit counts the message's framing), and a larger one fails
// with an error that names the limit.
func TestChunkLimit(t *testing.T) {
	for _, tt := range []struct {
		name  string
		chunk int
		ok    bool
	}{
		{"4 MiB", MaxChunkSize, true},
		{"4 MiB + 1", MaxChunkSize + 1, false},
		{"16 MiB", 16 << 20, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := pattern(tt.chunk + 1000)
			b := startBackend(t, "a", (&file{data: data, etag: "v1", chunks: []int{tt.chunk}}).serve)
			log, logs := testLogger(t)
			h := dial(t, b.addr, Config{Logger: log})
			c, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("s", "f"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := readBlocks(c, 65464)
			if tt.ok {
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("read %d bytes, %v", len(got), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "data chunks of at most 4194304 bytes") {
				t.Fatalf("err = %v, want one naming the 4 MiB limit", err)
			}
			if len(logs.lines("at most 4194304 bytes")) == 0 {
				t.Errorf("no log line names the limit:\n%s", logs.String())
			}
		})
	}
}

// TestRefusedRequestHasBackendStats (issue 13 point 6): a session refused
// before any header still says which backend it asked.
func TestRefusedRequestHasBackendStats(t *testing.T) {
	b := startBackend(t, "a", func(*tftpgwv1.ReadRequest, grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
		return status.Error(codes.NotFound, "no such file")
	})
	e := gatewaytest.NewServer(t, dial(t, b.addr, Config{}))
	_, err := get(t, e.Addr().String(), "missing", tftpclient.Options{})
	var te *tftpclient.Error
	if !errors.As(err, &te) || te.Code != 1 {
		t.Fatalf("Get: %v, want ERROR 1", err)
	}
	st := e.NextStats(t)
	if st.Backend == nil || st.Backend.Target != b.addr || st.Backend.Peer != "" || st.Backend.HeaderLatency != 0 {
		t.Errorf("Backend = %+v, want the target %s, no peer, no header latency", st.Backend, b.addr)
	}
}

// TestSlowSteadyBackendInAWindow (issue 13 point 3): a backend streaming
// 640 KB/s, with blksize 65464 and windowsize 64, timed out with 0 bytes
// sent: the session read a whole window (4 MiB, 6.5 s of it) before
// sending any. Its blocks now leave as they arrive.
func TestSlowSteadyBackendInAWindow(t *testing.T) {
	data := pattern(1_500_000)
	b := startBackend(t, "a", func(req *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
		n := int64(len(data))
		s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Header{Header: &tftpgwv1.Header{Size: &n, Etag: "v1", Offset: new(uint64)}}})
		for off := 0; off < len(data); off += 16 << 10 {
			select {
			case <-time.After(25 * time.Millisecond): // 16 KiB / 25 ms: 640 KB/s
			case <-s.Context().Done():
				return s.Context().Err()
			}
			s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Data{Data: data[off:min(off+16<<10, len(data))]}})
		}
		return nil
	})
	// The session waits (5+1) x 200 ms = 1.2 s for a silent client, or
	// for one block (0.1 s here); the window would take 2.3 s.
	ts := gatewaytest.NewServer(t, dial(t, b.addr, Config{}), func(s *gateway.Server) { s.Timeout, s.Retries = 200*time.Millisecond, 5 })
	got, err := get(t, ts.Addr().String(), "f", tftpclient.Options{BlockSize: 65464, WindowSize: 64, RetransmitTimeout: time.Second, Retries: 10})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get: %v, %d bytes", err, len(got))
	}
}
