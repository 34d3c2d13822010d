package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	sdk "github.com/tftpgw/tftpgw/backend"
	"github.com/tftpgw/tftpgw/gateway"
	gwstats "github.com/tftpgw/tftpgw/gateway/stats"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// memStore is an in-memory WriteHandler behind the SDK. Each upload is
// delivered on ended when it is committed or aborted.
type memStore struct {
	refuse    error
	writeErr  error // Write fails once more than failAfter bytes arrived
	failAfter int
	commitErr error
	ended     chan *memUpload
}

func newMemStore() *memStore { return &memStore{ended: make(chan *memUpload, 4)} }

func (s *memStore) ReceiveTFTP(ctx context.Context, req *gateway.Request) (gateway.Upload, error) {
	if s.refuse != nil {
		return nil, s.refuse
	}
	return &memUpload{s: s, ctx: ctx, req: req}, nil
}

type memUpload struct {
	s               *memStore
	ctx             context.Context
	req             *gateway.Request
	buf             bytes.Buffer
	committed       bool
	aborted         bool
	ctxWasCancelled bool // when Abort was called
}

func (u *memUpload) Write(p []byte) (int, error) {
	if u.s.writeErr != nil && u.buf.Len()+len(p) > u.s.failAfter {
		return 0, u.s.writeErr
	}
	return u.buf.Write(p)
}

func (u *memUpload) Commit() error {
	if u.s.commitErr != nil {
		return u.s.commitErr
	}
	u.committed = true
	u.s.ended <- u
	return nil
}

func (u *memUpload) Abort() {
	u.aborted = true
	u.ctxWasCancelled = u.ctx.Err() != nil
	u.s.ended <- u
}

func (s *memStore) waitEnded(t *testing.T, within time.Duration) *memUpload {
	t.Helper()
	select {
	case u := <-s.ended:
		return u
	case <-time.After(within):
		t.Fatalf("the backend's upload was neither committed nor aborted within %s", within)
		return nil
	}
}

// startSDK serves wh with the SDK's NewServer on a loopback port.
func startSDK(t testing.TB, wh gateway.WriteHandler, cfg sdk.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger, _ = testLogger(t)
	}
	cfg.WriteHandler = wh
	srv := sdk.NewServer(nil, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return ln.Addr().String()
}

// writeFunc serves one Write call of a fake backend.
type writeFunc func(s grpc.BidiStreamingServer[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse]) error

type writeFake struct {
	tftpgwv1.UnimplementedContentServiceServer
	write     writeFunc
	cancelled chan struct{} // a call ended cancelled by the edge
}

func (f *writeFake) Write(s grpc.BidiStreamingServer[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse]) error {
	err := f.write(s)
	if s.Context().Err() != nil {
		select {
		case f.cancelled <- struct{}{}:
		default:
		}
	}
	return err
}

// startWriteFake serves write (nil: a ContentService without Write) on a
// loopback port.
func startWriteFake(t testing.TB, write writeFunc) (string, *writeFake) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	f := &writeFake{write: write, cancelled: make(chan struct{}, 1)}
	if write == nil {
		tftpgwv1.RegisterContentServiceServer(srv, &fake{read: (&file{}).serve})
	} else {
		tftpgwv1.RegisterContentServiceServer(srv, f)
	}
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return ln.Addr().String(), f
}

var accepted = &tftpgwv1.WriteResponse{Msg: &tftpgwv1.WriteResponse_Accepted{Accepted: &tftpgwv1.WriteAccepted{}}}

func storedMsg(n int64) *tftpgwv1.WriteResponse {
	return &tftpgwv1.WriteResponse{Msg: &tftpgwv1.WriteResponse_Stored{Stored: &tftpgwv1.WriteStored{Size: n}}}
}

// drain receives until end, returning the bytes received.
func drain(s grpc.BidiStreamingServer[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse]) (int64, error) {
	var n int64
	for {
		m, err := s.Recv()
		if err != nil {
			return n, err
		}
		if m.GetEnd() != nil {
			return n, nil
		}
		n += int64(len(m.GetData()))
	}
}

// acceptThen answers start with accepted, receives the data and end, then
// runs after.
func acceptThen(after func(s grpc.BidiStreamingServer[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse], n int64) error) writeFunc {
	return func(s grpc.BidiStreamingServer[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse]) error {
		if _, err := s.Recv(); err != nil {
			return err
		}
		if err := s.Send(accepted); err != nil {
			return err
		}
		n, err := drain(s)
		if err != nil {
			return err
		}
		return after(s, n)
	}
}

func uploadRequest(id, path string, size int) *gateway.Request {
	r := request(id, path)
	r.Options = []gateway.Option{{Name: "blksize", Value: "1468"}, {Name: "tsize", Value: fmt.Sprint(size)}}
	r.RemoteAddr = netip.MustParseAddrPort("192.0.2.7:3000")
	r.LocalAddr = netip.MustParseAddrPort("192.0.2.1:69")
	return r
}

// writeBlocks writes data to u the way the TFTP engine does, a block at a
// time.
func writeBlocks(u gateway.Upload, data []byte, bs int) error {
	for off := 0; off < len(data); off += bs {
		if _, err := u.Write(data[off:min(off+bs, len(data))]); err != nil {
			return err
		}
	}
	return nil
}

// writeUntilError writes to u until a Write fails (a call that the
// backend ended is noticed by the next Send after the news arrived), at
// most 64 MiB.
func writeUntilError(u gateway.Upload) error {
	block := pattern(1468)
	for range (64 << 20) / len(block) {
		if _, err := u.Write(block); err != nil {
			return err
		}
	}
	return nil
}

func TestUploadRoundTripIsByteIdentical(t *testing.T) {
	for _, size := range []int{0, 1, WriteChunkSize, WriteChunkSize + 1, 3 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			st := newMemStore()
			addr := startSDK(t, st, sdk.Config{Token: "s3cret"})
			h := dial(t, addr, Config{Token: "s3cret"})
			data := pattern(size)
			u, err := h.ReceiveTFTP(ctxT(t, 30*time.Second), uploadRequest("s1", "up/a.bin", size))
			if err != nil {
				t.Fatal(err)
			}
			if err := writeBlocks(u, data, 1468); err != nil {
				t.Fatal(err)
			}
			if err := u.Commit(); err != nil {
				t.Fatal(err)
			}
			got := st.waitEnded(t, 5*time.Second)
			if !got.committed || got.aborted || !bytes.Equal(got.buf.Bytes(), data) {
				t.Fatalf("backend: committed %v, aborted %v, %d bytes; want the %d bytes committed", got.committed, got.aborted, got.buf.Len(), size)
			}
			r := got.req
			if r.SessionID != "s1" || r.Path != "up/a.bin" || r.Mode != "octet" || r.RemoteAddr.String() != "192.0.2.7:3000" ||
				r.LocalAddr.String() != "192.0.2.1:69" || len(r.Options) != 2 || r.Options[1].Value != fmt.Sprint(size) {
				t.Errorf("backend got request %+v", r)
			}
			bs := u.(interface{ BackendStats() gateway.BackendStats }).BackendStats()
			if bs.Target != addr || bs.Peer != addr || bs.HeaderLatency <= 0 {
				t.Errorf("BackendStats = %+v", bs)
			}
			u.Abort() // after a successful Commit: nothing happens
			select {
			case <-st.ended:
				t.Error("Abort after Commit reached the backend")
			case <-time.After(20 * time.Millisecond):
			}
		})
	}
}

func TestWriteStartCarriesTheRequest(t *testing.T) {
	for _, tc := range []struct {
		tsize    string
		wantSize *int64
	}{
		{"1234", func() *int64 { n := int64(1234); return &n }()},
		{"0", func() *int64 { n := int64(0); return &n }()},
		{"-1", nil},
		{"12k", nil},
		{"", nil},
	} {
		r := request("s9", "a\xffb")
		r.RawPath = "\\a\xffb"
		r.Options = []gateway.Option{{Name: "tsize", Value: tc.tsize}}
		r.RemoteAddr = netip.MustParseAddrPort("[::ffff:192.0.2.7]:3000")
		ws := writeStart(r, "edge-1")
		if (ws.Size == nil) != (tc.wantSize == nil) || (ws.Size != nil && *ws.Size != *tc.wantSize) {
			t.Errorf("tsize %q: size %v, want %v", tc.tsize, ws.Size, tc.wantSize)
		}
		if ws.GetPath() != "a\ufffdb" || string(ws.GetPathBytes()) != "a\xffb" || string(ws.GetRawPathBytes()) != "\\a\xffb" ||
			ws.GetSessionId() != "s9" || ws.GetEdgeId() != "edge-1" || ws.GetMode() != "octet" ||
			ws.GetClient().GetIp() != "192.0.2.7" || ws.GetClient().GetPort() != 3000 || ws.GetLocalAddress() != nil ||
			len(ws.GetOptions()) != 1 || string(ws.GetOptions()[0].GetValueBytes()) != tc.tsize {
			t.Errorf("tsize %q: WriteStart %v", tc.tsize, ws)
		}
	}
}

func TestUploadRefusalMapsToTFTPError(t *testing.T) {
	sdkRefusing := func(err error) func(t *testing.T) (string, Config) {
		return func(t *testing.T) (string, Config) {
			st := newMemStore()
			st.refuse = err
			return startSDK(t, st, sdk.Config{}), Config{}
		}
	}
	fakeFailing := func(err error) func(t *testing.T) (string, Config) {
		return func(t *testing.T) (string, Config) {
			addr, _ := startWriteFake(t, func(grpc.BidiStreamingServer[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse]) error { return err })
			return addr, Config{}
		}
	}
	withDetail, _ := status.New(codes.ResourceExhausted, "quota of 10.0.0.9").WithDetails(&tftpgwv1.TFTPError{Code: 7, Message: "no such user"})
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) (string, Config)
		code  gateway.ErrorCode
		msg   string
	}{
		{"sdk exists", sdkRefusing(fs.ErrExist), gateway.ErrFileExists, "file already exists"},
		{"sdk too large", sdkRefusing(gateway.ErrUploadTooLarge), gateway.ErrDiskFull, "file too large"},
		{"sdk refused", sdkRefusing(gateway.ErrUploadRefused), gateway.ErrAccessViolation, "upload not allowed"},
		{"sdk denied", sdkRefusing(fs.ErrPermission), gateway.ErrAccessViolation, "access violation"},
		{"sdk without write handler", func(t *testing.T) (string, Config) { return startSDK(t, nil, sdk.Config{}), Config{} },
			gateway.ErrAccessViolation, "uploads not supported"},
		{"sdk wrong token", func(t *testing.T) (string, Config) {
			return startSDK(t, newMemStore(), sdk.Config{Token: "right"}), Config{Token: "wrong"}
		}, gateway.ErrAccessViolation, "access violation"},
		{"already exists", fakeFailing(status.Error(codes.AlreadyExists, "x")), gateway.ErrFileExists, "file already exists"},
		{"resource exhausted", fakeFailing(status.Error(codes.ResourceExhausted, "x")), gateway.ErrDiskFull, "disk full or allocation exceeded"},
		{"permission denied", fakeFailing(status.Error(codes.PermissionDenied, "x")), gateway.ErrAccessViolation, "access violation"},
		{"not found", fakeFailing(status.Error(codes.NotFound, "x")), gateway.ErrFileNotFound, "file not found"},
		{"other code", fakeFailing(status.Error(codes.Internal, "x")), gateway.ErrNotDefined, "backend error"},
		{"TFTPError detail wins", fakeFailing(withDetail.Err()), gateway.ErrNoSuchUser, "no such user"},
		{"no Write method", func(t *testing.T) (string, Config) { addr, _ := startWriteFake(t, nil); return addr, Config{} },
			gateway.ErrAccessViolation, "uploads not supported"},
		{"OK before accepted", fakeFailing(nil), gateway.ErrNotDefined, "backend error"},
		{"stored before accepted", func(t *testing.T) (string, Config) {
			addr, _ := startWriteFake(t, func(s grpc.BidiStreamingServer[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse]) error {
				return s.Send(storedMsg(0))
			})
			return addr, Config{}
		}, gateway.ErrNotDefined, "backend error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, cfg := tc.start(t)
			h := dial(t, addr, cfg)
			u, err := h.ReceiveTFTP(ctxT(t, 10*time.Second), uploadRequest("s1", "a", 10))
			if err == nil {
				u.Abort()
				t.Fatal("upload accepted")
			}
			if te := gateway.ErrorFor(err); te.Code != tc.code || te.Message != tc.msg {
				t.Errorf("ErrorFor(%v) = %d %q, want %d %q", err, te.Code, te.Message, tc.code, tc.msg)
			}
			var be interface{ BackendStats() gateway.BackendStats }
			if !errors.As(err, &be) || be.BackendStats().Target != addr {
				t.Errorf("error without BackendStats of %s: %v", addr, err)
			}
		})
	}
}

func TestUploadNotAcceptedInTimeIsTimeout(t *testing.T) {
	const budget = 300 * time.Millisecond
	silent := func(s grpc.BidiStreamingServer[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse]) error {
		<-s.Context().Done()
		return s.Context().Err()
	}
	for _, tc := range []struct {
		name   string
		target func(t *testing.T) (string, *writeFake)
	}{
		{"backend never accepts", func(t *testing.T) (string, *writeFake) { return startWriteFake(t, silent) }},
		{"no backend listening", func(t *testing.T) (string, *writeFake) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			return addr, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, f := tc.target(t)
			h := dial(t, addr, Config{HeaderTimeout: budget})
			t0 := time.Now()
			_, err := h.ReceiveTFTP(ctxT(t, 10*time.Second), uploadRequest("s1", "a", 10))
			took := time.Since(t0)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want one wrapping context.DeadlineExceeded", err)
			}
			if te := gateway.ErrorFor(err); te.Code != gateway.ErrNotDefined || te.Message != "backend timeout" {
				t.Errorf("ErrorFor = %v, want ERROR 0 backend timeout", te)
			}
			if took < budget || took > budget+time.Second {
				t.Errorf("took %s with a budget of %s", took, budget)
			}
			if f != nil {
				select {
				case <-f.cancelled:
				case <-time.After(5 * time.Second):
					t.Error("the backend did not see the call cancelled")
				}
			}
		})
	}
}

// TestUploadEndedByTheEdgeAbortsTheBackend: the edge giving up mid-upload
// (Abort, or the session's context cancelled) makes the backend's Upload
// abort, with its context cancelled.
func TestUploadEndedByTheEdgeAbortsTheBackend(t *testing.T) {
	for _, how := range []string{"Abort", "session ended", "Abort after a failed Commit"} {
		t.Run(how, func(t *testing.T) {
			st := newMemStore()
			if how == "Abort after a failed Commit" {
				st.commitErr = errors.New("disk gone")
			}
			h := dial(t, startSDK(t, st, sdk.Config{}), Config{})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			u, err := h.ReceiveTFTP(ctx, uploadRequest("s1", "a", 0))
			if err != nil {
				t.Fatal(err)
			}
			if err := writeBlocks(u, pattern(100_000), 512); err != nil {
				t.Fatal(err)
			}
			switch how {
			case "Abort":
				u.Abort()
				u.Abort() // idempotent
			case "session ended":
				cancel()
			default:
				err := u.Commit()
				if te := gateway.ErrorFor(err); te.Code != gateway.ErrNotDefined {
					t.Errorf("Commit = %v (%v), want ERROR 0", err, te)
				}
				u.Abort()
				u.Abort()
			}
			got := st.waitEnded(t, 5*time.Second)
			// After its own Commit failed, the backend aborts at once.
			cancelled := got.ctxWasCancelled || how == "Abort after a failed Commit"
			if !got.aborted || got.committed || !cancelled {
				t.Errorf("backend upload: aborted %v, committed %v, context cancelled %v; want aborted after its context was cancelled",
					got.aborted, got.committed, got.ctxWasCancelled)
			}
			if _, err := u.Write([]byte("more")); err == nil {
				t.Error("Write after the end succeeded")
			}
			if err := u.Commit(); err == nil {
				t.Error("Commit after the end succeeded")
			}
			u.Abort()
		})
	}
}

func TestUploadFailingMidStreamReturnsMappedError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) string
		code  gateway.ErrorCode
		msg   string
		// inCommit: the error comes from Commit, not Write.
		inCommit bool
	}{
		{"write refused past a limit", func(t *testing.T) string {
			st := newMemStore()
			st.writeErr, st.failAfter = gateway.ErrUploadTooLarge, 40_000
			return startSDK(t, st, sdk.Config{})
		}, gateway.ErrDiskFull, "file too large", false},
		{"disk full without detail", func(t *testing.T) string {
			addr, _ := startWriteFake(t, func(s grpc.BidiStreamingServer[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse]) error {
				s.Recv()
				s.Send(accepted)
				s.Recv()
				return status.Error(codes.ResourceExhausted, "quota")
			})
			return addr
		}, gateway.ErrDiskFull, "disk full or allocation exceeded", false},
		{"commit finds the file exists", func(t *testing.T) string {
			st := newMemStore()
			st.commitErr = fs.ErrExist
			return startSDK(t, st, sdk.Config{})
		}, gateway.ErrFileExists, "file already exists", true},
		{"data loss at end", func(t *testing.T) string {
			addr, _ := startWriteFake(t, acceptThen(func(_ grpc.BidiStreamingServer[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse], _ int64) error {
				return status.Error(codes.DataLoss, "sha256 differs")
			}))
			return addr
		}, gateway.ErrNotDefined, "backend error", true},
		{"OK without stored", func(t *testing.T) string {
			addr, _ := startWriteFake(t, acceptThen(func(grpc.BidiStreamingServer[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse], int64) error {
				return nil
			}))
			return addr
		}, gateway.ErrNotDefined, "backend error", true},
		{"stored but the call fails", func(t *testing.T) string {
			addr, _ := startWriteFake(t, acceptThen(func(s grpc.BidiStreamingServer[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse], n int64) error {
				s.Send(storedMsg(n))
				return status.Error(codes.Internal, "oops")
			}))
			return addr
		}, gateway.ErrNotDefined, "backend error", true},
		{"stored twice", func(t *testing.T) string {
			addr, _ := startWriteFake(t, acceptThen(func(s grpc.BidiStreamingServer[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse], n int64) error {
				s.Send(storedMsg(n))
				return s.Send(storedMsg(n))
			}))
			return addr
		}, gateway.ErrNotDefined, "backend error", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := dial(t, tc.start(t), Config{})
			u, err := h.ReceiveTFTP(ctxT(t, 10*time.Second), uploadRequest("s1", "a", 0))
			if err != nil {
				t.Fatal(err)
			}
			defer u.Abort()
			if tc.inCommit {
				if err := writeBlocks(u, pattern(200_000), 512); err != nil {
					t.Fatalf("Write: %v", err)
				}
				err = u.Commit()
			} else {
				err = writeUntilError(u)
			}
			if te := gateway.ErrorFor(err); te.Code != tc.code || te.Message != tc.msg {
				t.Errorf("ErrorFor(%v) = %d %q, want %d %q", err, te.Code, te.Message, tc.code, tc.msg)
			}
		})
	}
}

func TestUploadStoredSizeMismatchFailsCommit(t *testing.T) {
	addr, _ := startWriteFake(t, acceptThen(func(s grpc.BidiStreamingServer[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse], n int64) error {
		return s.Send(storedMsg(n - 1))
	}))
	logger, logs := testLogger(t)
	h := dial(t, addr, Config{Logger: logger})
	u, err := h.ReceiveTFTP(ctxT(t, 10*time.Second), uploadRequest("s1", "a", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Abort()
	if err := writeBlocks(u, pattern(5000), 512); err != nil {
		t.Fatal(err)
	}
	err = u.Commit()
	if te := gateway.ErrorFor(err); te.Code != gateway.ErrNotDefined || te.Message != "backend error" {
		t.Errorf("Commit = %v, want ERROR 0 backend error", err)
	}
	if len(logs.lines("stored another size", "sent=5000", "stored=4999")) != 1 {
		t.Errorf("no log line for the size:\n%s", logs.String())
	}
}

func TestUploadCommitDeadline(t *testing.T) {
	const budget = 300 * time.Millisecond
	addr, f := startWriteFake(t, acceptThen(func(s grpc.BidiStreamingServer[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse], _ int64) error {
		<-s.Context().Done() // never stores
		return s.Context().Err()
	}))
	h := dial(t, addr, Config{CommitTimeout: budget})
	u, err := h.ReceiveTFTP(ctxT(t, 10*time.Second), uploadRequest("s1", "a", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Abort()
	if err := writeBlocks(u, pattern(1000), 512); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	err = u.Commit()
	took := time.Since(t0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Commit = %v, want one wrapping context.DeadlineExceeded", err)
	}
	if te := gateway.ErrorFor(err); te.Code != gateway.ErrNotDefined || te.Message != "backend timeout" {
		t.Errorf("ErrorFor = %v, want ERROR 0 backend timeout", te)
	}
	if took < budget || took > budget+time.Second {
		t.Errorf("Commit took %s with a budget of %s", took, budget)
	}
	select {
	case <-f.cancelled:
	case <-time.After(5 * time.Second):
		t.Error("the backend did not see the call cancelled")
	}
}

// TestUploadBackendErrorsAreCounted: Write calls go through the
// connection's interceptors, like Read calls, so a failed one is counted
// in tftpgw_backend_errors_total.
func TestUploadBackendErrorsAreCounted(t *testing.T) {
	st := newMemStore()
	st.refuse = fs.ErrExist
	m := gwstats.NewMetrics()
	h := dial(t, startSDK(t, st, sdk.Config{}), Config{DialOptions: m.GRPCDialOptions()})
	if _, err := h.ReceiveTFTP(ctxT(t, 10*time.Second), uploadRequest("s1", "a", 0)); err == nil {
		t.Fatal("upload accepted")
	}
	st.refuse = nil
	st.writeErr, st.failAfter = gateway.ErrUploadTooLarge, 0
	u, err := h.ReceiveTFTP(ctxT(t, 10*time.Second), uploadRequest("s2", "a", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Abort()
	if err := writeUntilError(u); err == nil {
		t.Fatal("every Write succeeded")
	}
	got := m.BackendErrors()
	if got["AlreadyExists"] != 1 || got["ResourceExhausted"] != 1 {
		t.Errorf("BackendErrors = %v, want AlreadyExists 1 and ResourceExhausted 1", got)
	}
}

// TestUploadWriteDoesNotAllocate: a Write that fills the buffer without
// sending it allocates nothing; a sent chunk's allocations are gRPC's
// (see BenchmarkUploadWrite).
func TestUploadWriteDoesNotAllocate(t *testing.T) {
	h := dial(t, startSDK(t, newMemStore(), sdk.Config{}), Config{})
	u, err := h.ReceiveTFTP(ctxT(t, 10*time.Second), uploadRequest("s1", "a", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Abort()
	block := pattern(512)
	if _, err := u.Write(block); err != nil { // takes the buffer from the pool
		t.Fatal(err)
	}
	// 1 + 50 writes of 512 bytes stay within one chunk.
	if n := testing.AllocsPerRun(50, func() { u.Write(block) }); n != 0 {
		t.Errorf("%v allocations per Write", n)
	}
}

// BenchmarkUploadWrite writes TFTP blocks to an upload whose backend, in
// the same process, discards them: the allocations reported are the
// edge's and the backend's gRPC messages.
func BenchmarkUploadWrite(b *testing.B) {
	addr, _ := startWriteFake(b, acceptThen(func(s grpc.BidiStreamingServer[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse], n int64) error {
		return s.Send(storedMsg(n))
	}))
	h := dial(b, addr, Config{})
	u, err := h.ReceiveTFTP(context.Background(), uploadRequest("s1", "a", 0))
	if err != nil {
		b.Fatal(err)
	}
	block := pattern(1468)
	b.SetBytes(int64(len(block)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := u.Write(block); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := u.Commit(); err != nil {
		b.Fatal(err)
	}
}
