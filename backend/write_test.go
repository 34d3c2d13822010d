package backend

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// store is an in-memory WriteHandler that records its uploads.
type store struct {
	refuse      error // ReceiveTFTP's error
	writeErr    error // returned by Write once more than failAfter bytes arrived
	failAfter   int
	commitErr   error
	panicIn     string // "receive", "write" or "commit"
	mu          sync.Mutex
	uploads     []*memUpload
	ended       chan *memUpload // an upload committed or aborted
	gotRequests []*gateway.Request
	edgeIDs     []string
}

func newStore() *store { return &store{ended: make(chan *memUpload, 16)} }

func (s *store) ReceiveTFTP(ctx context.Context, req *gateway.Request) (gateway.Upload, error) {
	s.mu.Lock()
	s.gotRequests = append(s.gotRequests, req)
	s.edgeIDs = append(s.edgeIDs, EdgeID(ctx))
	s.mu.Unlock()
	if s.panicIn == "receive" {
		panic("boom in ReceiveTFTP")
	}
	if s.refuse != nil {
		return nil, s.refuse
	}
	u := &memUpload{s: s, ctx: ctx}
	s.mu.Lock()
	s.uploads = append(s.uploads, u)
	s.mu.Unlock()
	return u, nil
}

// memUpload holds one upload's bytes. Its fields are read after ended
// has delivered it.
type memUpload struct {
	s         *store
	ctx       context.Context
	buf       bytes.Buffer
	commits   int
	aborts    int
	ctxCancel bool // the context was done when Abort was called
}

func (u *memUpload) Write(p []byte) (int, error) {
	if u.s.panicIn == "write" {
		panic("boom in Write")
	}
	if u.s.writeErr != nil && u.buf.Len()+len(p) > u.s.failAfter {
		return 0, u.s.writeErr
	}
	return u.buf.Write(p)
}

func (u *memUpload) Commit() error {
	if u.s.panicIn == "commit" {
		panic("boom in Commit")
	}
	if u.s.commitErr != nil {
		return u.s.commitErr
	}
	u.commits++
	u.s.ended <- u
	return nil
}

func (u *memUpload) Abort() {
	u.aborts++
	u.ctxCancel = u.ctx.Err() != nil
	u.s.ended <- u
}

// waitEnded returns the next upload to be committed or aborted.
func (s *store) waitEnded(t *testing.T) *memUpload {
	t.Helper()
	select {
	case u := <-s.ended:
		return u
	case <-time.After(5 * time.Second):
		t.Fatal("the upload was neither committed nor aborted")
		return nil
	}
}

// noMoreEnds checks that no upload ended a second time.
func (s *store) noMoreEnds(t *testing.T) {
	t.Helper()
	select {
	case u := <-s.ended:
		t.Errorf("an upload ended again: %d commits, %d aborts", u.commits, u.aborts)
	case <-time.After(20 * time.Millisecond):
	}
}

type writeStream = grpc.BidiStreamingClient[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse]

func startMsg(path string) *tftpgwv1.WriteRequest {
	return &tftpgwv1.WriteRequest{Msg: &tftpgwv1.WriteRequest_Start{Start: &tftpgwv1.WriteStart{Path: path, Mode: "octet"}}}
}

func dataMsg(b []byte) *tftpgwv1.WriteRequest {
	return &tftpgwv1.WriteRequest{Msg: &tftpgwv1.WriteRequest_Data{Data: b}}
}

func endMsg(size int64, sum []byte) *tftpgwv1.WriteRequest {
	return &tftpgwv1.WriteRequest{Msg: &tftpgwv1.WriteRequest_End{End: &tftpgwv1.WriteEnd{Size: size, Sha256: sum}}}
}

// openWrite starts a Write call, sends start and waits for accepted.
func openWrite(ctx context.Context, t *testing.T, conn *grpc.ClientConn, start *tftpgwv1.WriteRequest) (writeStream, error) {
	t.Helper()
	stream, err := tftpgwv1.NewContentServiceClient(conn).Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(start); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	msg, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if msg.GetAccepted() == nil {
		t.Fatalf("first response %v, want accepted", msg)
	}
	return stream, nil
}

// finish sends end (and closes the sending side), then returns the
// stored size and the call's status.
func finish(t *testing.T, s writeStream, end *tftpgwv1.WriteRequest) (int64, error) {
	t.Helper()
	if err := s.Send(end); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	msg, err := s.Recv()
	if err != nil {
		return -1, err
	}
	if msg.GetStored() == nil {
		t.Fatalf("response %v, want stored", msg)
	}
	if _, err := s.Recv(); err != io.EOF {
		return msg.GetStored().GetSize(), fmt.Errorf("after stored: %w", err)
	}
	return msg.GetStored().GetSize(), nil
}

func sum256(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func TestWriteStoresTheUploadedBytes(t *testing.T) {
	for _, size := range []int{0, 1, 100_000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			st := newStore()
			conn := dial(t, nil, Config{WriteHandler: st})
			data := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
			start := &tftpgwv1.WriteStart{
				SessionId: "s1", RawPath: "up/\ufffd.bin", Path: "up/\ufffd.bin", Mode: "octet", EdgeId: "edge-1",
				RawPathBytes: []byte("up/\xff.bin"), PathBytes: []byte("up/\xff.bin"),
				Options: []*tftpgwv1.Option{{Name: "tsize", Value: fmt.Sprint(size), NameBytes: []byte("tsize"), ValueBytes: []byte(fmt.Sprint(size))}},
				Client:  &tftpgwv1.Address{Ip: "192.0.2.7", Port: 3000}, LocalAddress: &tftpgwv1.Address{Ip: "192.0.2.1", Port: 69},
			}
			s, err := openWrite(t.Context(), t, conn, &tftpgwv1.WriteRequest{Msg: &tftpgwv1.WriteRequest_Start{Start: start}})
			if err != nil {
				t.Fatal(err)
			}
			for off := 0; off < size; off += 32 << 10 {
				if err := s.Send(dataMsg(data[off:min(off+32<<10, size)])); err != nil {
					t.Fatal(err)
				}
			}
			stored, err := finish(t, s, endMsg(int64(size), sum256(data)))
			if err != nil || stored != int64(size) {
				t.Fatalf("stored %d, err %v; want %d and OK", stored, err, size)
			}
			u := st.waitEnded(t)
			if u.commits != 1 || u.aborts != 0 || !bytes.Equal(u.buf.Bytes(), data) {
				t.Errorf("%d commits, %d aborts, %d bytes; want 1, 0 and the %d sent", u.commits, u.aborts, u.buf.Len(), size)
			}
			st.noMoreEnds(t)
			r := st.gotRequests[0]
			want := gateway.Request{SessionID: "s1", RawPath: "up/\xff.bin", Path: "up/\xff.bin", Mode: "octet",
				Options:    []gateway.Option{{Name: "tsize", Value: fmt.Sprint(size)}},
				RemoteAddr: netip.MustParseAddrPort("192.0.2.7:3000"), LocalAddr: netip.MustParseAddrPort("192.0.2.1:69")}
			if fmt.Sprint(*r) != fmt.Sprint(want) || st.edgeIDs[0] != "edge-1" {
				t.Errorf("request %+v (edge %q), want %+v (edge-1)", *r, st.edgeIDs[0], want)
			}
		})
	}
}

func TestWriteRefusalBecomesStatus(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		code    codes.Code
		tftp    uint32
		message string
	}{
		{"exists", &fs.PathError{Op: "open", Path: "/srv/x", Err: fs.ErrExist}, codes.AlreadyExists, 6, "file already exists"},
		{"explicit exists", &gateway.Error{Code: gateway.ErrFileExists, Message: "taken"}, codes.AlreadyExists, 6, "taken"},
		{"too large", gateway.ErrUploadTooLarge, codes.ResourceExhausted, 3, "file too large"},
		{"refused", gateway.ErrUploadRefused, codes.PermissionDenied, 2, "upload not allowed"},
		{"permission", fs.ErrPermission, codes.PermissionDenied, 2, "access violation"},
		{"generic", errors.New("disk at /srv broke"), codes.Internal, 0, "internal error"},
		{"explicit other", &gateway.Error{Code: gateway.ErrNoSuchUser, Message: "who?"}, codes.Unknown, 7, "who?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore()
			st.refuse = tc.err
			conn := dial(t, nil, Config{WriteHandler: st})
			_, err := openWrite(t.Context(), t, conn, startMsg("a"))
			if status.Code(err) != tc.code {
				t.Errorf("code = %v, want %v (%v)", status.Code(err), tc.code, err)
			}
			te := tftpError(err)
			if te == nil || te.Code != tc.tftp || te.Message != tc.message {
				t.Errorf("detail = %v, want %d %q", te, tc.tftp, tc.message)
			}
		})
	}
}

func TestWriteWithoutWriteHandlerIsUnimplemented(t *testing.T) {
	conn := dial(t, static(gateway.BytesContent(nil)), Config{})
	_, err := openWrite(t.Context(), t, conn, startMsg("a"))
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "uploads not enabled") {
		t.Errorf("err = %v, want Unimplemented: uploads not enabled", err)
	}
}

func TestWriteFirstMessageMustBeStart(t *testing.T) {
	conn := dial(t, nil, Config{WriteHandler: newStore()})
	for _, first := range []*tftpgwv1.WriteRequest{dataMsg([]byte("x")), endMsg(0, sum256(nil)), {}} {
		_, err := openWrite(t.Context(), t, conn, first)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("first message %v: err = %v, want InvalidArgument", first, err)
		}
	}
	_, err := openWrite(t.Context(), t, conn, startMsg("../etc/passwd"))
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("path with ..: err = %v, want InvalidArgument", err)
	}
}

// TestWriteAbortsUnlessCommitted: every way an upload can fail after
// accepted ends with exactly one Abort and the call's status.
func TestWriteAbortsUnlessCommitted(t *testing.T) {
	data := []byte("hello, upload")
	for _, tc := range []struct {
		name  string
		setup func(*store)
		// run drives the call after accepted and returns its status.
		run  func(t *testing.T, s writeStream, cancel context.CancelFunc) error
		code codes.Code
		tftp uint32 // the detail's code, if want detail
		msg  string
	}{
		{
			name: "size differs from end",
			run: func(t *testing.T, s writeStream, _ context.CancelFunc) error {
				s.Send(dataMsg(data))
				_, err := finish(t, s, endMsg(int64(len(data))+1, sum256(data)))
				return err
			},
			code: codes.DataLoss,
		},
		{
			name: "sha256 differs from end",
			run: func(t *testing.T, s writeStream, _ context.CancelFunc) error {
				s.Send(dataMsg(data))
				_, err := finish(t, s, endMsg(int64(len(data)), sum256([]byte("other"))))
				return err
			},
			code: codes.DataLoss,
		},
		{
			name:  "write fails",
			setup: func(s *store) { s.writeErr, s.failAfter = gateway.ErrUploadTooLarge, 5 },
			run: func(t *testing.T, s writeStream, _ context.CancelFunc) error {
				s.Send(dataMsg(data))
				_, err := s.Recv()
				return err
			},
			code: codes.ResourceExhausted, tftp: 3, msg: "file too large",
		},
		{
			name:  "commit fails",
			setup: func(s *store) { s.commitErr = fs.ErrExist },
			run: func(t *testing.T, s writeStream, _ context.CancelFunc) error {
				s.Send(dataMsg(data))
				_, err := finish(t, s, endMsg(int64(len(data)), sum256(data)))
				return err
			},
			code: codes.AlreadyExists, tftp: 6, msg: "file already exists",
		},
		{
			name: "call ends without end",
			run: func(t *testing.T, s writeStream, _ context.CancelFunc) error {
				s.Send(dataMsg(data))
				s.CloseSend()
				_, err := s.Recv()
				return err
			},
			code: codes.InvalidArgument,
		},
		{
			name: "second start",
			run: func(t *testing.T, s writeStream, _ context.CancelFunc) error {
				s.Send(startMsg("b"))
				_, err := s.Recv()
				return err
			},
			code: codes.InvalidArgument,
		},
		{
			name:  "panic in write",
			setup: func(s *store) { s.panicIn = "write" },
			run: func(t *testing.T, s writeStream, _ context.CancelFunc) error {
				s.Send(dataMsg(data))
				_, err := s.Recv()
				return err
			},
			code: codes.Internal,
		},
		{
			name:  "panic in commit",
			setup: func(s *store) { s.panicIn = "commit" },
			run: func(t *testing.T, s writeStream, _ context.CancelFunc) error {
				_, err := finish(t, s, endMsg(0, sum256(nil)))
				return err
			},
			code: codes.Internal,
		},
		{
			name: "edge cancels",
			run: func(t *testing.T, s writeStream, cancel context.CancelFunc) error {
				s.Send(dataMsg(data))
				cancel()
				_, err := s.Recv()
				return err
			},
			code: codes.Canceled,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore()
			if tc.setup != nil {
				tc.setup(st)
			}
			var logs syncbuf.Buffer
			conn := dial(t, nil, Config{WriteHandler: st, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			s, err := openWrite(ctx, t, conn, startMsg("a"))
			if err != nil {
				t.Fatal(err)
			}
			err = tc.run(t, s, cancel)
			if status.Code(err) != tc.code {
				t.Errorf("code = %v, want %v (%v)", status.Code(err), tc.code, err)
			}
			if te := tftpError(err); tc.msg != "" && (te == nil || te.Code != tc.tftp || te.Message != tc.msg) {
				t.Errorf("detail = %v, want %d %q", te, tc.tftp, tc.msg)
			}
			u := st.waitEnded(t)
			if u.aborts != 1 || u.commits != 0 {
				t.Errorf("%d aborts, %d commits; want 1 abort", u.aborts, u.commits)
			}
			if tc.name == "edge cancels" && !u.ctxCancel {
				t.Error("the handler's context was not cancelled when Abort was called")
			}
			if strings.HasPrefix(tc.name, "panic") && !strings.Contains(logs.String(), "boom") {
				t.Errorf("the panic was not logged: %s", logs.String())
			}
			st.noMoreEnds(t)
		})
	}
}

func TestWritePanicInReceiveIsInternal(t *testing.T) {
	st := newStore()
	st.panicIn = "receive"
	var logs syncbuf.Buffer
	conn := dial(t, nil, Config{WriteHandler: st, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	_, err := openWrite(t.Context(), t, conn, startMsg("a"))
	if status.Code(err) != codes.Internal {
		t.Errorf("err = %v, want Internal", err)
	}
	if !strings.Contains(logs.String(), "boom in ReceiveTFTP") {
		t.Errorf("the panic was not logged: %s", logs.String())
	}
}

func TestWriteTakesFourMiBData(t *testing.T) {
	st := newStore()
	conn := dial(t, nil, Config{WriteHandler: st})
	s, err := openWrite(t.Context(), t, conn, startMsg("big"))
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{7}, 4<<20)
	if err := s.Send(dataMsg(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := finish(t, s, endMsg(int64(len(data)), sum256(data))); err != nil {
		t.Fatalf("a 4 MiB data message: %v", err)
	}
}

// TestWriteDeclaredSizeWithoutTsize: a start's size reaches the handler
// as the tsize option when the edge sent no tsize, so a size limit sees
// it before accepted.
func TestWriteDeclaredSizeWithoutTsize(t *testing.T) {
	st := newStore()
	conn := dial(t, nil, Config{WriteHandler: st})
	size := int64(4242)
	start := &tftpgwv1.WriteRequest{Msg: &tftpgwv1.WriteRequest_Start{Start: &tftpgwv1.WriteStart{Path: "x", Mode: "octet", Size: &size}}}
	s, err := openWrite(t.Context(), t, conn, start)
	if err != nil {
		t.Fatal(err)
	}
	s.CloseSend()
	if v, ok := st.gotRequests[0].Option("tsize"); !ok || v != "4242" {
		t.Errorf("tsize %q, %v; want 4242", v, ok)
	}
}
