package remote

import (
	"bytes"
	"context"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	sdk "github.com/tftpgw/tftpgw/backend"
	"github.com/tftpgw/tftpgw/gateway"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// versioned is a content with an ETag, which a remote content needs to
// read from an offset.
type versioned struct {
	gateway.Content
	etag string
}

func (v versioned) Info() gateway.ContentInfo {
	return gateway.ContentInfo{ETag: v.etag, ModTime: time.Unix(1_700_000_000, 0)}
}

// TestSeekReadsFromTheOffset: an HTTP range of a backend's content is
// read from its offset on a new call (ReadRequest.offset with if_match),
// forward and back, and a version that changed fails the seek.
func TestSeekReadsFromTheOffset(t *testing.T) {
	var mu sync.Mutex
	etag := "v1"
	var offsets []int64
	h := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		mu.Lock()
		defer mu.Unlock()
		return versioned{gateway.BytesContent(testData), etag}, nil
	})
	ln := startSDKBackendHandler(t, h, func(off int64) {
		mu.Lock()
		offsets = append(offsets, off)
		mu.Unlock()
	})
	rh := dial(t, ln, Config{})
	c, err := rh.ServeTFTP(ctxT(t, 10*time.Second), request("s", "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if info := c.(gateway.InfoContent).Info(); !info.ModTime.Equal(time.Unix(1_700_000_000, 0)) {
		t.Errorf("ModTime %v: the header's modified did not arrive", info.ModTime)
	}
	s := c.(io.ReadSeeker)
	read := func(off int64, n int) {
		t.Helper()
		if got, err := s.Seek(off, io.SeekStart); err != nil || got != off {
			t.Fatalf("seek %d: %d, %v", off, got, err)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(s, b); err != nil || !bytes.Equal(b, testData[off:off+int64(n)]) {
			t.Fatalf("read %d at %d: %v", n, off, err)
		}
	}
	read(5000, 100)
	read(5100, 100) // where it is: no new call
	read(100, 10)   // back
	if end, err := s.Seek(0, io.SeekEnd); err != nil || end != int64(len(testData)) {
		t.Fatalf("seek to the end: %d, %v", end, err)
	}
	mu.Lock()
	got := append([]int64(nil), offsets...)
	etag = "v2"
	mu.Unlock()
	// The end is within the bytes received (one chunk): no call for it.
	if want := []int64{0, 5000, 100}; !slices.Equal(got, want) {
		t.Errorf("calls at offsets %v, want %v", got, want)
	}
	if _, err := s.Seek(42, io.SeekStart); err == nil {
		t.Fatal("seek into a changed version succeeded")
	} else if e := gateway.ErrorFor(err); e.Code != 0 {
		t.Errorf("changed version: %+v", e)
	}
}

// startSDKBackendHandler runs the backend SDK with h, telling seen the
// offset of every Read call.
func startSDKBackendHandler(t *testing.T, h gateway.Handler, seen func(int64)) string {
	t.Helper()
	intercept := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &offsetStream{ServerStream: ss, seen: seen})
	}
	return startSDKBackendWith(t, h, sdk.Config{ServerOptions: []grpc.ServerOption{grpc.StreamInterceptor(intercept)}})
}

type offsetStream struct {
	grpc.ServerStream
	seen func(int64)
}

func (s *offsetStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if r, ok := m.(*tftpgwv1.ReadRequest); ok && err == nil {
		s.seen(int64(r.GetOffset()))
	}
	return err
}
