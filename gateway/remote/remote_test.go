package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/grpcauth"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

func TestReadDeliversHeaderAndReblockedData(t *testing.T) {
	tests := []struct {
		name     string
		file     file
		bs       int
		wantSize int64
	}{
		{"chunks larger than blocks", file{data: pattern(100_000), etag: "v1", chunks: []int{65536}}, 512, 100_000},
		{"odd chunks across blocks", file{data: pattern(50_001), etag: "v1", chunks: []int{1, 1000, 7, 33000}}, 1468, 50_001},
		{"exact multiple of block size", file{data: pattern(4 * 1024), etag: "v1", chunks: []int{1000}}, 1024, 4096},
		{"empty file", file{data: nil, etag: "v1"}, 512, 0},
		{"size absent means -1", file{data: pattern(3000), noSize: true}, 512, -1},
		{"max age", file{data: pattern(10), etag: "e", maxAge: time.Minute}, 512, 10},
		// A max_age present and zero (the fake sends one for a negative
		// maxAge) is negative: never fresh, not even by an edge default.
		{"max age present and zero", file{data: pattern(10), etag: "e", maxAge: -1}, 512, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBackend(t, "a", tt.file.serve)
			h := dial(t, b.addr, Config{})
			req := request("s1", "boot/pxe.0")
			req.RawPath = `\boot\pxe.0`
			req.Options = []gateway.Option{{Name: "blksize", Value: "1468"}, {Name: "tsize", Value: "0"}}
			req.RemoteAddr = netip.MustParseAddrPort("[::ffff:192.0.2.7]:3000")
			req.LocalAddr = netip.MustParseAddrPort("192.0.2.1:69")
			c, err := h.ServeTFTP(ctxT(t, 10*time.Second), req)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.Size(); got != tt.wantSize {
				t.Errorf("Size = %d, want %d", got, tt.wantSize)
			}
			info := c.(gateway.InfoContent).Info()
			if info.ETag != tt.file.etag || info.MaxAge != tt.file.maxAge {
				t.Errorf("Info = %+v, want etag %q max age %s", info, tt.file.etag, tt.file.maxAge)
			}
			got, err := readBlocks(c, tt.bs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.file.data) {
				t.Fatalf("read %d bytes, not the %d served", len(got), len(tt.file.data))
			}
			st := c.(gateway.BackendContent).BackendStats()
			if st.Target != b.addr || st.Peer != b.addr || st.HeaderLatency <= 0 || st.Resumes != 0 {
				t.Errorf("BackendStats = %+v", st)
			}
			r := b.requests()[0]
			if r.GetSessionId() != "s1" || r.GetPath() != "boot/pxe.0" || r.GetRawPath() != `\boot\pxe.0` || r.GetMode() != "octet" ||
				r.GetEdgeId() != "edge-test" || r.GetOffset() != 0 || r.GetIfMatch() != "" ||
				len(r.GetOptions()) != 2 || r.GetOptions()[0].GetName() != "blksize" || r.GetOptions()[0].GetValue() != "1468" ||
				r.GetClient().GetIp() != "192.0.2.7" || r.GetClient().GetPort() != 3000 ||
				r.GetLocalAddress().GetIp() != "192.0.2.1" || r.GetLocalAddress().GetPort() != 69 {
				t.Errorf("backend got request %v", r)
			}
		})
	}
}

func TestErrorMapping(t *testing.T) {
	withDetails := func(c codes.Code, te *tftpgwv1.TFTPError) error {
		st, err := status.New(c, "internal /srv/secret detail").WithDetails(te)
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	sendHeader := func(s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
		return s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Header{Header: &tftpgwv1.Header{}}})
	}
	tests := []struct {
		name string
		read readFunc
		want gateway.Error
	}{
		{"not found", func(*tftpgwv1.ReadRequest, grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
			return status.Error(codes.NotFound, "/srv/secret/x missing")
		}, gateway.Error{Code: 1, Message: "file not found"}},
		{"permission denied", func(*tftpgwv1.ReadRequest, grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
			return status.Error(codes.PermissionDenied, "/srv/secret")
		}, gateway.Error{Code: 2, Message: "access violation"}},
		{"unauthenticated", func(*tftpgwv1.ReadRequest, grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
			return status.Error(codes.Unauthenticated, "who are you")
		}, gateway.Error{Code: 2, Message: "access violation"}},
		{"internal text never reaches the client", func(*tftpgwv1.ReadRequest, grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
			return status.Error(codes.Internal, "panic at /srv/secret")
		}, gateway.Error{Code: 0, Message: "backend error"}},
		{"failed precondition on first call", func(*tftpgwv1.ReadRequest, grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
			return status.Error(codes.FailedPrecondition, "x")
		}, gateway.Error{Code: 0, Message: "backend error"}},
		{"deadline exceeded", func(*tftpgwv1.ReadRequest, grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
			return status.Error(codes.DeadlineExceeded, "upstream slow")
		}, gateway.Error{Code: 0, Message: "backend timeout"}},
		{"TFTPError details win over the code", func(*tftpgwv1.ReadRequest, grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
			return withDetails(codes.Internal, &tftpgwv1.TFTPError{Code: 2, Message: "denied by policy"})
		}, gateway.Error{Code: 2, Message: "denied by policy"}},
		{"TFTPError on not found", func(*tftpgwv1.ReadRequest, grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
			return withDetails(codes.NotFound, &tftpgwv1.TFTPError{Code: 1, Message: "no such image"})
		}, gateway.Error{Code: 1, Message: "no such image"}},
		{"TFTPError code out of range", func(*tftpgwv1.ReadRequest, grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
			return withDetails(codes.Unavailable, &tftpgwv1.TFTPError{Code: 99, Message: "busy"})
		}, gateway.Error{Code: 0, Message: "busy"}},
		{"OK before the header", func(*tftpgwv1.ReadRequest, grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
			return nil
		}, gateway.Error{Code: 0, Message: "backend error"}},
		{"data before the header", func(_ *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
			return s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Data{Data: []byte("x")}})
		}, gateway.Error{Code: 0, Message: "backend error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBackend(t, "a", tt.read)
			h := dial(t, b.addr, Config{})
			c, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("s", "f"))
			if err == nil {
				c.Close()
				t.Fatal("ServeTFTP succeeded")
			}
			if got := gateway.ErrorFor(err); *got != tt.want {
				t.Errorf("ErrorFor(%v) = %+v, want %+v", err, *got, tt.want)
			}
		})
	}

	// Errors after the header are mapped the same way, through Read.
	mid := []struct {
		name string
		err  error
		want gateway.Error
	}{
		{"not found mid-stream", status.Error(codes.NotFound, "gone"), gateway.Error{Code: 1, Message: "file not found"}},
		{"TFTPError mid-stream", withDetails(codes.Aborted, &tftpgwv1.TFTPError{Code: 3, Message: "disk full"}), gateway.Error{Code: 3, Message: "disk full"}},
		{"unknown mid-stream", status.Error(codes.Unknown, "x"), gateway.Error{Code: 0, Message: "backend error"}},
	}
	for _, tt := range mid {
		t.Run(tt.name, func(t *testing.T) {
			b := startBackend(t, "a", func(_ *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
				if err := sendHeader(s); err != nil {
					return err
				}
				if err := s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Data{Data: []byte("abc")}}); err != nil {
					return err
				}
				return tt.err
			})
			h := dial(t, b.addr, Config{})
			c, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("s", "f"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := readBlocks(c, 512)
			if string(got) != "abc" || err == nil {
				t.Fatalf("read %q, %v; want abc and an error", got, err)
			}
			if te := gateway.ErrorFor(err); *te != tt.want {
				t.Errorf("ErrorFor(%v) = %+v, want %+v", err, *te, tt.want)
			}
		})
	}
}

func TestTruncatedOrOverlongStreamIsAnError(t *testing.T) {
	for _, tt := range []struct {
		name string
		size int64
	}{{"ends before size", 10}, {"exceeds size", 2}} {
		t.Run(tt.name, func(t *testing.T) {
			b := startBackend(t, "a", func(_ *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
				size := tt.size
				s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Header{Header: &tftpgwv1.Header{Size: &size}}})
				return s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Data{Data: []byte("abcd")}})
			})
			h := dial(t, b.addr, Config{})
			c, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("s", "f"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := readBlocks(c, 512); err == nil || gateway.ErrorFor(err).Message != "backend error" {
				t.Fatalf("err = %v, want backend error", err)
			}
		})
	}
}

func TestHeaderBudgetExceededDoesNotStallOtherCalls(t *testing.T) {
	data := pattern(5000)
	b := startBackend(t, "a", func(req *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
		if req.GetPath() == "slow" {
			<-s.Context().Done()
			return s.Context().Err()
		}
		return (&file{data: data, etag: "x"}).serve(req, s)
	})
	const budget = 300 * time.Millisecond
	h := dial(t, b.addr, Config{HeaderTimeout: budget})

	var wg sync.WaitGroup
	wg.Add(1)
	var slowErr error
	var slowTook time.Duration
	go func() {
		defer wg.Done()
		start := time.Now()
		c, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("slow", "slow"))
		slowTook = time.Since(start)
		if c != nil {
			c.Close()
		}
		slowErr = err
	}()
	time.Sleep(50 * time.Millisecond) // the slow call is waiting
	start := time.Now()
	c, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("fast", "fast"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := readBlocks(c, 512)
	c.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fast call: %d bytes, %v", len(got), err)
	}
	if d := time.Since(start); d > budget {
		t.Errorf("fast call took %s while another waited", d)
	}
	wg.Wait()
	if te := gateway.ErrorFor(slowErr); *te != (gateway.Error{Code: 0, Message: "backend timeout"}) {
		t.Errorf("slow call: %v -> %+v, want backend timeout", slowErr, te)
	}
	if slowTook < budget || slowTook > budget+time.Second {
		t.Errorf("slow call failed after %s, budget %s", slowTook, budget)
	}
	select {
	case <-b.cancelled:
	case <-time.After(5 * time.Second):
		t.Error("backend did not see the timed-out call cancelled")
	}
}

func TestNoBackendListeningFailsWithinBudget(t *testing.T) {
	addr := freeAddr(t)
	for _, tt := range []struct{ name, target string }{
		{"single", addr},
		{"list", addr + "," + freeAddr(t)},
		{"dns", "dns:///" + addr},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const budget = 400 * time.Millisecond
			log, lb := testLogger(t)
			h := dial(t, tt.target, Config{HeaderTimeout: budget, Logger: log})
			for i := range 3 {
				start := time.Now()
				_, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("s", "f"))
				took := time.Since(start)
				if te := gateway.ErrorFor(err); *te != (gateway.Error{Code: 0, Message: "backend timeout"}) {
					t.Fatalf("call %d: %v -> %+v, want backend timeout", i, err, te)
				}
				if took > budget+time.Second { // slack for a loaded machine
					t.Errorf("call %d failed after %s, budget %s", i, took, budget)
				}
			}
			if n := len(lb.lines("level=WARN", "no backend sent a header")); n != 1 {
				t.Errorf("%d warnings for 3 failed sessions, want 1:\n%s", n, lb)
			}
		})
	}
}

func TestBackendStartingLaterIsUsedWithoutRestart(t *testing.T) {
	addr := freeAddr(t)
	const budget = 300 * time.Millisecond
	log, lb := testLogger(t)
	h := dial(t, addr, Config{HeaderTimeout: budget, Logger: log})
	if _, err := h.ServeTFTP(ctxT(t, 5*time.Second), request("s0", "f")); err == nil {
		t.Fatal("call succeeded with no backend")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	data := pattern(3000)
	serveBackend(t, ln, "late", (&file{data: data, etag: "e"}).serve)
	// The reconnect backoff is short at first; a few attempts at most.
	deadline := time.Now().Add(10 * time.Second)
	for i := 1; ; i++ {
		c, err := h.ServeTFTP(ctxT(t, 5*time.Second), request("s", "f"))
		if err == nil {
			got, err := readBlocks(c, 512)
			c.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%d bytes, %v", len(got), err)
			}
			t.Logf("succeeded at attempt %d", i)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend never used: %v", err)
		}
	}
	if len(lb.lines("backends answer again")) != 1 {
		t.Errorf("recovery not logged once:\n%s", lb)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestBackendSeesCancellation(t *testing.T) {
	for _, tt := range []struct {
		name string
		end  func(c gateway.Content, cancel context.CancelFunc)
	}{
		{"content closed early", func(c gateway.Content, _ context.CancelFunc) { c.Close() }},
		{"session context cancelled (probe)", func(c gateway.Content, cancel context.CancelFunc) {
			cancel()
			c.Close()
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sent := make(chan struct{}, 1)
			b := startBackend(t, "a", func(_ *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
				size := int64(1 << 30)
				s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Header{Header: &tftpgwv1.Header{Size: &size, Etag: "e"}}})
				sent <- struct{}{}
				// Send until flow control blocks us; then wait for cancellation.
				chunk := make([]byte, 32<<10)
				for {
					if err := s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Data{Data: chunk}}); err != nil {
						return err
					}
				}
			})
			h := dial(t, b.addr, Config{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c, err := h.ServeTFTP(ctx, request("probe", "big"))
			if err != nil {
				t.Fatal(err)
			}
			<-sent
			buf := make([]byte, 512)
			if _, err := c.Read(buf); err != nil {
				t.Fatal(err)
			}
			tt.end(c, cancel)
			select {
			case id := <-b.cancelled:
				if id != "probe" {
					t.Errorf("cancelled %q", id)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("backend did not observe cancellation")
			}
			if _, err := c.Read(buf); err == nil {
				t.Error("Read after the end succeeded")
			}
		})
	}
}

func TestReadAheadIsBoundedByFlowControl(t *testing.T) {
	var sentBytes int64
	var mu sync.Mutex
	blocked := make(chan struct{})
	b := startBackend(t, "a", func(_ *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
		s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Header{Header: &tftpgwv1.Header{Etag: "e"}}})
		chunk := make([]byte, 16<<10)
		for {
			done := make(chan error, 1)
			go func() { done <- s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Data{Data: chunk}}) }()
			select {
			case err := <-done:
				if err != nil {
					return err
				}
				mu.Lock()
				sentBytes += int64(len(chunk))
				mu.Unlock()
			case <-time.After(300 * time.Millisecond):
				close(blocked)
				<-s.Context().Done()
				<-done
				return s.Context().Err()
			}
		}
	})
	h := dial(t, b.addr, Config{})
	c, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("s", "big"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-blocked:
	case <-time.After(10 * time.Second):
		c.Close()
		t.Fatal("backend never blocked: read-ahead unbounded")
	}
	c.Close()
	mu.Lock()
	defer mu.Unlock()
	// Stream window plus the server's own buffering.
	if sentBytes > 4*streamWindow {
		t.Errorf("backend sent %d bytes ahead of an idle reader", sentBytes)
	}
	t.Logf("read-ahead: %d bytes", sentBytes)
}

func TestResumeAfterBreakGivesIdenticalBytes(t *testing.T) {
	data := pattern(300_000)
	f := &file{data: data, etag: "v1", chunks: []int{10_000, 3}, breakAt: 123_457}
	b := startBackend(t, "a", f.serve)
	h := dial(t, b.addr, Config{})
	c, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("s", "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := readBlocks(c, 1468)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("resumed transfer differs (%d bytes)", len(got))
	}
	reqs := b.requests()
	if len(reqs) != 2 || reqs[1].GetOffset() != 123_457 || reqs[1].GetIfMatch() != "v1" || reqs[1].GetSessionId() != "s" {
		t.Fatalf("requests: %v", reqs)
	}
	if st := c.(gateway.BackendContent).BackendStats(); st.Resumes != 1 {
		t.Errorf("Resumes = %d", st.Resumes)
	}
}

func TestResumeOnAnotherBackendWhenOneDies(t *testing.T) {
	data := pattern(2 << 20)
	var mu sync.Mutex
	first := ""                  // backend of the call at offset 0
	stalled := make(chan string) // reports the backend that sent part of the file
	mk := func(name string) readFunc {
		return func(req *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
			if req.GetOffset() != 0 {
				return (&file{data: data, etag: "v1"}).serve(req, s)
			}
			mu.Lock()
			first = name
			mu.Unlock()
			n := int64(len(data))
			s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Header{Header: &tftpgwv1.Header{Size: &n, Etag: "v1"}}})
			s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Data{Data: data[:100_000]}})
			stalled <- name
			<-s.Context().Done()
			return s.Context().Err()
		}
	}
	a := startBackend(t, "a", mk("a"))
	b := startBackend(t, "b", mk("b"))
	h := dial(t, a.addr+","+b.addr, Config{})
	c, err := h.ServeTFTP(ctxT(t, 20*time.Second), request("s", "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Kill the backend once the client has received its part.
	name := <-stalled
	head := make([]byte, 100_000)
	if _, err := io.ReadFull(c, head); err != nil {
		t.Fatal(err)
	}
	switch name {
	case "a":
		a.kill()
	case "b":
		b.kill()
	}
	rest, err := readBlocks(c, 512)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(head, rest...); !bytes.Equal(got, data) {
		t.Fatalf("resumed transfer differs (%d bytes)", len(got))
	}
	mu.Lock()
	dead := first
	mu.Unlock()
	other := a
	if dead == "a" {
		other = b
	}
	reqs := other.requests()
	if len(reqs) != 1 || reqs[0].GetOffset() != 100_000 || reqs[0].GetIfMatch() != "v1" {
		t.Fatalf("surviving backend %s got %v", other.name, reqs)
	}
	st := c.(gateway.BackendContent).BackendStats()
	if st.Resumes != 1 || st.Peer != other.addr || st.Target != a.addr+","+b.addr {
		t.Errorf("BackendStats = %+v, want 1 resume from %s", st, other.addr)
	}
}

func TestResumeNeverSplicesVersions(t *testing.T) {
	data := pattern(200_000)
	tests := []struct {
		name   string
		resume readFunc // serves the resumed call
		want   string
	}{
		{"content changed: FAILED_PRECONDITION", (&file{data: pattern(200_000), etag: "v2"}).serve, "content changed"},
		{"backend ignores if_match and sends another etag", func(req *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
			req.IfMatch = ""
			return (&file{data: data, etag: "v2"}).serve(req, s)
		}, "content changed"},
		{"size changed", func(req *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
			return (&file{data: data[:1000], etag: "v1"}).serve(req, s)
		}, "content changed"},
		{"no etag: not resumed", nil, "backend error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			etag := "v1"
			if tt.resume == nil {
				etag = ""
			}
			b := startBackend(t, "a", func(req *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
				if req.GetOffset() == 0 {
					return (&file{data: data, etag: etag, breakAt: 50_000}).serve(req, s)
				}
				return tt.resume(req, s)
			})
			h := dial(t, b.addr, Config{})
			c, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("s", "f"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := readBlocks(c, 512)
			if err == nil {
				t.Fatalf("transfer succeeded with %d bytes", len(got))
			}
			if te := gateway.ErrorFor(err); te.Code != 0 || te.Message != tt.want {
				t.Errorf("ErrorFor(%v) = %+v, want 0 %q", err, te, tt.want)
			}
			if !bytes.Equal(got, data[:len(got)]) || len(got) > 50_000 {
				t.Errorf("delivered %d bytes that are not a prefix of the first version", len(got))
			}
			wantReqs := 2
			if tt.resume == nil {
				wantReqs = 1
			}
			if n := len(b.requests()); n != wantReqs {
				t.Errorf("%d calls, want %d", n, wantReqs)
			}
		})
	}
}

func TestResumeAttemptsAreBounded(t *testing.T) {
	data := pattern(100_000)
	b := startBackend(t, "a", func(req *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
		if req.GetOffset() == 0 {
			return (&file{data: data, etag: "v1", breakAt: 10_000}).serve(req, s)
		}
		return status.Error(codes.Aborted, "try again")
	})
	h := dial(t, b.addr, Config{MaxResumes: 2})
	c, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("s", "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := readBlocks(c, 512); err == nil || gateway.ErrorFor(err).Message != "backend error" {
		t.Fatalf("err = %v", err)
	}
	if n := len(b.requests()); n != 3 {
		t.Errorf("%d calls, want 1 + 2 resumes", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %s", d)
	}
}

func TestIdleStreamIsResumed(t *testing.T) {
	data := pattern(20_000)
	b := startBackend(t, "a", func(req *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
		if req.GetOffset() == 0 {
			n := int64(len(data))
			s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Header{Header: &tftpgwv1.Header{Size: &n, Etag: "v1"}}})
			s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Data{Data: data[:5000]}})
			<-s.Context().Done() // hangs
			return s.Context().Err()
		}
		return (&file{data: data, etag: "v1"}).serve(req, s)
	})
	h := dial(t, b.addr, Config{IdleTimeout: 200 * time.Millisecond})
	c, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("s", "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := readBlocks(c, 512)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
	if reqs := b.requests(); len(reqs) != 2 || reqs[1].GetOffset() != 5000 {
		t.Errorf("requests %v", reqs)
	}
}

func TestUnhealthyBackendLeavesRotation(t *testing.T) {
	data := pattern(1000)
	a := startBackend(t, "a", (&file{data: data, etag: "e"}).serve)
	b := startBackend(t, "b", (&file{data: data, etag: "e"}).serve)
	h := dial(t, a.addr+", "+b.addr, Config{})
	get := func() {
		t.Helper()
		c, err := h.ServeTFTP(ctxT(t, 5*time.Second), request("s", "f"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got, err := readBlocks(c, 512); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes, %v", len(got), err)
		}
	}
	// Round robin picks among the connections that are ready: under load
	// the second one may connect (and pass its health check) a few calls
	// after the first.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; len(a.requests()) == 0 || len(b.requests()) == 0; i++ {
		if i >= 500 || time.Now().After(deadline) {
			t.Fatalf("not round robin after %d calls: a %d, b %d", i, len(a.requests()), len(b.requests()))
		}
		get()
	}
	a.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	time.Sleep(200 * time.Millisecond) // the watch stream delivers the change
	before := len(a.requests())
	for range 10 {
		get()
	}
	if n := len(a.requests()); n != before {
		t.Errorf("unhealthy backend got %d calls", n-before)
	}
}

func TestDialRejectsBadConfig(t *testing.T) {
	for _, tt := range []struct {
		name   string
		target string
		cfg    Config
	}{
		{"empty target", "", Config{}},
		{"bad list entry", "127.0.0.1:1,nope", Config{}},
		{"token in plaintext to a remote host", "10.0.0.1:7000", Config{Token: "t"}},
		{"token in plaintext to a remote name", "dns:///boot.example:7000", Config{Token: "t"}},
		{"token and token file", "127.0.0.1:7000", Config{Token: "t", TokenFile: "/x"}},
		{"missing token file", "127.0.0.1:7000", Config{TokenFile: "/nonexistent/token"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, err := Dial(tt.target, tt.cfg)
			if err == nil {
				h.Close()
				t.Fatal("Dial succeeded")
			}
		})
	}
}

func TestLoopbackTarget(t *testing.T) {
	for target, want := range map[string]bool{
		"127.0.0.1:7000":                true,
		"localhost:7000":                true,
		"[::1]:7000":                    true,
		"dns:///localhost:7000":         true,
		"unix:///run/backend.sock":      true,
		"127.0.0.1:1,127.0.0.2:2":       true,
		"127.0.0.1:1,10.0.0.1:2":        false,
		"dns:///boot.example:7000":      false,
		"passthrough:///10.1.1.1:7000":  false,
		"passthrough:///127.0.0.1:7000": true,
	} {
		if got := grpcauth.LoopbackTarget(target); got != want {
			t.Errorf("LoopbackTarget(%q) = %v", target, got)
		}
	}
}

func TestErrorWrapsBoth(t *testing.T) {
	cause := status.Error(codes.Internal, "x")
	err := error(wrap(errBackend, cause))
	var te *gateway.Error
	if !errors.As(err, &te) || te != errBackend || !errors.Is(err, cause) || !strings.Contains(err.Error(), "backend error") {
		t.Errorf("wrap: %v", err)
	}
}

// TestReady: Ready (behind the edge's /readyz) follows whether a backend
// can take calls (found in operator review: /readyz said ready while the
// only backend was down and every request got "backend timeout").
func TestReady(t *testing.T) {
	b := startBackend(t, "a", (&file{data: pattern(10), etag: "e"}).serve)
	h := dial(t, b.addr, Config{})
	waitReady := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for h.Ready() != want {
			if time.Now().After(deadline) {
				t.Fatalf("Ready() = %v for 10 s, want %v", !want, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitReady(true)
	b.kill()
	waitReady(false)
	h.Close()
	if h.Ready() {
		t.Error("Ready after Close")
	}
}

// TestReadyFalseWhileMisconfigured: an edge whose every request fails for
// its configuration is not ready, although its backend is reachable: one
// pointed at a gRPC server that does not serve ContentService, or whose
// token the backend refuses (found in operator review: /readyz said ready
// and the edge stayed in rotation). Ready probes while the fault lasts, so
// the edge becomes ready again without a request.
func TestReadyFalseWhileMisconfigured(t *testing.T) {
	t.Run("not a ContentService", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer()
		healthpb.RegisterHealthServer(srv, health.NewServer())
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(ln) }()
		defer func() { srv.Stop(); <-done }()
		h := dial(t, ln.Addr().String(), Config{})
		if _, err := h.ServeTFTP(ctxT(t, 5*time.Second), request("s1", "f")); status.Code(err) != codes.Unimplemented {
			t.Fatalf("ServeTFTP: %v, want Unimplemented", err)
		}
		if h.Ready() {
			t.Error("ready with a backend that does not serve ContentService")
		}
	})
	t.Run("one of two backends refuses the token", func(t *testing.T) {
		refuse := grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if strings.HasSuffix(info.FullMethod, "/Read") {
				return status.Error(codes.Unauthenticated, "bad token")
			}
			return handler(srv, ss)
		})
		good := startBackend(t, "good", (&file{data: pattern(10), etag: "e"}).serve)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		bad := serveBackend(t, ln, "bad", (&file{data: pattern(10), etag: "e"}).serve, refuse)
		h := dial(t, good.addr+","+bad.addr, Config{})
		codesSeen := map[codes.Code]int{}
		// Round robin, once both connections are up: both backends answer.
		for i := 0; i < 300 && (codesSeen[codes.OK] == 0 || codesSeen[codes.Unauthenticated] == 0); i++ {
			c, err := h.ServeTFTP(ctxT(t, 5*time.Second), request("s"+strconv.Itoa(i), "f"))
			if err == nil {
				c.Close()
			}
			codesSeen[status.Code(err)]++
			time.Sleep(10 * time.Millisecond)
		}
		if codesSeen[codes.OK] == 0 || codesSeen[codes.Unauthenticated] == 0 {
			t.Fatalf("answers %v: want both backends used", codesSeen)
		}
		if !h.Ready() {
			t.Error("not ready although one of the two backends answers")
		}
	})
	t.Run("token refused, then accepted", func(t *testing.T) {
		var refuse atomic.Bool
		refuse.Store(true)
		auth := grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if refuse.Load() && strings.HasSuffix(info.FullMethod, "/Read") {
				return status.Error(codes.Unauthenticated, "bad token")
			}
			return handler(srv, ss)
		})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		b := serveBackend(t, ln, "a", (&file{data: pattern(10), etag: "e"}).serve, auth)
		h := dial(t, b.addr, Config{})
		if _, err := h.ServeTFTP(ctxT(t, 5*time.Second), request("s1", "f")); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("ServeTFTP: %v, want Unauthenticated", err)
		}
		if h.Ready() {
			t.Error("ready while the backend refuses the token")
		}
		refuse.Store(false) // the token is fixed at the backend
		deadline := time.Now().Add(5 * time.Second)
		for !h.Ready() {
			if time.Now().After(deadline) {
				t.Fatal("not ready 5 s after the backend accepted the token again")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}
