package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tftpgw/tftpgw/gateway"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// pattern returns n bytes that differ with seed.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i/251) ^ seed
	}
	return b
}

// file is what the fake serves for a path.
type file struct {
	data   []byte
	etag   string
	maxAge time.Duration
	size   int64 // declared size; len(data) if zero and data is not nil
	failAt int64 // if > 0, Read fails with errBroken at this offset
}

var errBroken = &gateway.Error{Code: gateway.ErrNotDefined, Message: "backend error"}

// fake is a counting gateway.Handler. Reads of its contents wait on gate,
// if set, before each chunk.
type fake struct {
	mu    sync.Mutex
	files map[string]file
	gate  chan struct{} // if not nil, every Read takes a token

	calls     atomic.Int64 // ServeTFTP calls
	bytesRead atomic.Int64 // bytes read from contents
	opened    atomic.Int64 // contents returned
	closed    atomic.Int64 // contents closed
	ctxs      chan context.Context
}

func newFake() *fake { return &fake{files: map[string]file{}} }

func (f *fake) set(path string, fl file) {
	f.mu.Lock()
	f.files[path] = fl
	f.mu.Unlock()
}

func (f *fake) ServeTFTP(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
	f.calls.Add(1)
	f.mu.Lock()
	fl, ok := f.files[req.Path]
	f.mu.Unlock()
	if !ok {
		return nil, &gateway.Error{Code: gateway.ErrFileNotFound, Message: "file not found"}
	}
	if f.ctxs != nil {
		f.ctxs <- ctx
	}
	size := fl.size
	if size == 0 && fl.data != nil {
		size = int64(len(fl.data))
	}
	f.opened.Add(1)
	return &fakeContent{f: f, fl: fl, size: size, ctx: ctx}, nil
}

type fakeContent struct {
	f    *fake
	fl   file
	size int64
	off  int64
	ctx  context.Context
	once sync.Once
}

func (c *fakeContent) Read(p []byte) (int, error) {
	if c.f.gate != nil {
		select {
		case <-c.f.gate:
		case <-c.ctx.Done():
			return 0, context.Cause(c.ctx)
		}
	}
	if err := c.ctx.Err(); err != nil {
		return 0, context.Cause(c.ctx)
	}
	if c.fl.failAt > 0 && c.off >= c.fl.failAt {
		return 0, errBroken
	}
	if c.off >= int64(len(c.fl.data)) {
		return 0, io.EOF
	}
	end := int64(len(c.fl.data))
	if c.fl.failAt > 0 {
		end = min(end, c.fl.failAt)
	}
	end = min(end, c.off+64<<10)
	n := copy(p, c.fl.data[c.off:end])
	c.off += int64(n)
	c.f.bytesRead.Add(int64(n))
	return n, nil
}

func (c *fakeContent) Size() int64 { return c.size }
func (c *fakeContent) Close() error {
	c.once.Do(func() { c.f.closed.Add(1) })
	return nil
}
func (c *fakeContent) Info() gateway.ContentInfo {
	return gateway.ContentInfo{ETag: c.fl.etag, MaxAge: c.fl.maxAge}
}

// noInfo hides the Info method of a content.
type noInfo struct{ gateway.Content }

func req(path string) *gateway.Request {
	return &gateway.Request{SessionID: "s", RawPath: path, Path: path, Mode: "octet"}
}

// get serves path through h and reads it all.
func get(t *testing.T, h gateway.Handler, path string) ([]byte, error) {
	t.Helper()
	c, err := h.ServeTFTP(t.Context(), req(path))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return readAll(c)
}

// readAll reads c in 512-byte blocks, as a TFTP session would.
func readAll(c gateway.Content) ([]byte, error) {
	var out bytes.Buffer
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		out.Write(buf[:n])
		if errors.Is(err, io.EOF) {
			return out.Bytes(), nil
		}
		if err != nil {
			return out.Bytes(), err
		}
	}
}

// describeDiff tells how got differs from want: the lengths and the
// first differing offset, and whether got is a prefix of want.
func describeDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	s := fmt.Sprintf("got %d bytes, want %d; first difference at offset %d", len(got), len(want), i)
	if i == len(got) && len(got) < len(want) {
		s += " (got is a truncated prefix)"
	}
	return s
}

func mustGet(t *testing.T, h gateway.Handler, path string, want []byte) {
	t.Helper()
	got, err := get(t, h, path)
	if err != nil {
		t.Fatalf("get %s: %v", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("get %s: %d bytes, want %d identical bytes", path, len(got), len(want))
	}
}

func newCache(t *testing.T, next gateway.Handler, maxBytes int64) *Handler {
	t.Helper()
	h := &Handler{Next: next, MaxBytes: maxBytes, Logger: quiet()}
	t.Cleanup(func() { h.Close() })
	return h
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
