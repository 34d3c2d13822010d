package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/tftpgw/tftpgw/gateway"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// header calls Read and returns the header and the data.
func header(t *testing.T, conn *grpc.ClientConn, req *tftpgwv1.ReadRequest) (*tftpgwv1.Header, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	stream, err := tftpgwv1.NewContentServiceClient(conn).Read(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var (
		hdr  *tftpgwv1.Header
		data []byte
	)
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return hdr, data
		}
		if err != nil {
			t.Fatalf("Read %q at %d: %v", req.GetPath(), req.GetOffset(), err)
		}
		if h := msg.GetHeader(); h != nil {
			hdr = h
		}
		data = append(data, msg.GetData()...)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestDigestInHeader: with -root, the header carries the file's SHA-256
// and the offset asked for; a file over -digest-sync-max gets it once the
// background hash is done; -digest=false sends none.
func TestDigestInHeader(t *testing.T) {
	dir := t.TempDir()
	small := randomBytes(t, 100_000)
	large := randomBytes(t, 3<<20+17)
	writeFile(t, filepath.Join(dir, "small.bin"), string(small))
	writeFile(t, filepath.Join(dir, "large.bin"), string(large))
	writeFile(t, filepath.Join(dir, "caf\xe9.cfg"), "latin-1 name\n")
	smallSum, largeSum := sha256.Sum256(small), sha256.Sum256(large)

	t.Run("file under the bound has it in its first header, and in a resume's", func(t *testing.T) {
		conn := connect(t, startBackend(t, "-root", dir), nil)
		for _, off := range []uint64{0, 1234, uint64(len(small))} {
			h, data := header(t, conn, &tftpgwv1.ReadRequest{Path: "small.bin", Offset: off})
			if !bytes.Equal(h.GetSha256(), smallSum[:]) {
				t.Errorf("offset %d: sha256 %x, want %x", off, h.GetSha256(), smallSum)
			}
			if h.Offset == nil || h.GetOffset() != off {
				t.Errorf("offset %d: header offset %v, want it echoed", off, h.Offset)
			}
			if !bytes.Equal(data, small[off:]) {
				t.Errorf("offset %d: %d bytes, not the file from there", off, len(data))
			}
		}
	})
	t.Run("file with a Latin-1 name", func(t *testing.T) {
		conn := connect(t, startBackend(t, "-root", dir), nil)
		h, data := header(t, conn, &tftpgwv1.ReadRequest{Path: "caf\uFFFD.cfg", PathBytes: []byte("caf\xe9.cfg")})
		if sum := sha256.Sum256(data); string(data) != "latin-1 name\n" || !bytes.Equal(h.GetSha256(), sum[:]) {
			t.Errorf("got %q with sha256 %x", data, h.GetSha256())
		}
	})
	t.Run("file over the bound has it once hashed in the background", func(t *testing.T) {
		conn := connect(t, startBackend(t, "-root", dir, "-digest-sync-max", "1MiB"), nil)
		h, data := header(t, conn, &tftpgwv1.ReadRequest{Path: "large.bin"})
		if len(h.GetSha256()) != 0 || !bytes.Equal(data, large) {
			t.Fatalf("first header has sha256 %x (want none: the hash starts with it), %d bytes", h.GetSha256(), len(data))
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			h, _ := header(t, conn, &tftpgwv1.ReadRequest{Path: "large.bin", Offset: uint64(len(large))})
			if len(h.GetSha256()) != 0 {
				if !bytes.Equal(h.GetSha256(), largeSum[:]) {
					t.Fatalf("sha256 %x, want %x", h.GetSha256(), largeSum)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no digest 20s after the first request")
			}
			time.Sleep(20 * time.Millisecond)
		}
		// Files under the bound still have it at once.
		if h, _ := header(t, conn, &tftpgwv1.ReadRequest{Path: "caf\uFFFD.cfg", PathBytes: []byte("caf\xe9.cfg")}); len(h.GetSha256()) != 32 {
			t.Errorf("small file: sha256 %x", h.GetSha256())
		}
	})
	t.Run("-digest=false sends none", func(t *testing.T) {
		conn := connect(t, startBackend(t, "-root", dir, "-digest=false"), nil)
		h, _ := header(t, conn, &tftpgwv1.ReadRequest{Path: "small.bin", Offset: 10})
		if len(h.GetSha256()) != 0 || h.GetOffset() != 10 {
			t.Errorf("header %v: want no sha256 and offset 10", h)
		}
	})
}

// countingFiles is a FileServer that counts its opens.
type countingFiles struct {
	gateway.Handler
	mu    sync.Mutex
	opens int
}

func (c *countingFiles) ServeTFTP(ctx context.Context, r *gateway.Request) (gateway.Content, error) {
	c.mu.Lock()
	c.opens++
	c.mu.Unlock()
	return c.Handler.ServeTFTP(ctx, r)
}

func (c *countingFiles) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opens
}

func newFiles(t *testing.T, dir string) *countingFiles {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return &countingFiles{Handler: gateway.FileServer(root)}
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func digestOf(t *testing.T, h gateway.Handler, path string) ([32]byte, string) {
	t.Helper()
	c, err := h.ServeTFTP(t.Context(), &gateway.Request{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info := c.(gateway.InfoContent).Info()
	if _, ok := c.(io.Seeker); !ok {
		t.Error("content with a digest is no longer seekable")
	}
	return info.SHA256, info.ETag
}

// TestDigestHashedOncePerVersion: a boot herd's requests for one file
// share one hash; a new version of the file (same size, new ctime) is
// hashed again and gets its own digest.
func TestDigestHashedOncePerVersion(t *testing.T) {
	dir := t.TempDir()
	v1 := randomBytes(t, 2<<20)
	name := filepath.Join(dir, "kernel")
	writeFile(t, name, string(v1))
	files := newFiles(t, dir)
	d := newDigester(files, 64<<20, time.Second, quietLog())
	defer d.close()
	h := d.handler(files)

	const herd = 50
	sums := make([][32]byte, herd)
	var wg sync.WaitGroup
	for i := range herd {
		wg.Go(func() { sums[i], _ = digestOf(t, h, "kernel") })
	}
	wg.Wait()
	want := sha256.Sum256(v1)
	for i, s := range sums {
		if s != want {
			t.Fatalf("request %d: digest %x, want %x", i, s, want)
		}
	}
	if n := d.hashesDone(); n != 1 {
		t.Errorf("%d hashes for %d concurrent requests of one version, want 1", n, herd)
	}
	// Each request opens the file once; the hash twice (before and after).
	if n := files.count(); n != herd+2 {
		t.Errorf("%d opens, want %d", n, herd+2)
	}

	v2 := bytes.Clone(v1)
	v2[0] ^= 1
	writeFile(t, name, string(v2)) // in place, same size
	if s, _ := digestOf(t, h, "kernel"); s != sha256.Sum256(v2) {
		t.Errorf("after a rewrite: digest %x, want the new version's", s)
	}
	if n := d.hashesDone(); n != 2 {
		t.Errorf("%d hashes after a new version, want 2", n)
	}
}

// versions is a handler whose file has the ETag of the version it is at
// each open: etags[i] at the i-th open, the last one after.
type versions struct {
	mu    sync.Mutex
	etags []string
	data  []byte
	block chan struct{} // if not nil, reads wait for it to close
	opens int
}

func (v *versions) ServeTFTP(context.Context, *gateway.Request) (gateway.Content, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	etag := v.etags[min(v.opens, len(v.etags)-1)]
	v.opens++
	return &fakeContent{Reader: bytes.NewReader(v.data), size: int64(len(v.data)), etag: etag, block: v.block}, nil
}

type fakeContent struct {
	*bytes.Reader
	size  int64
	etag  string
	block chan struct{}
}

func (c *fakeContent) Read(p []byte) (int, error) {
	if c.block != nil {
		<-c.block
	}
	return c.Reader.Read(p)
}
func (c *fakeContent) Size() int64                        { return c.size }
func (c *fakeContent) Close() error                       { return nil }
func (c *fakeContent) Info() gateway.ContentInfo          { return gateway.ContentInfo{ETag: c.etag} }
func (c *fakeContent) Seek(o int64, w int) (int64, error) { return c.Reader.Seek(o, w) }

// TestDigestOfAChangingFileIsNotKept: a file that is not the version asked
// for when the hash opens it, or no longer when the hash ends, gets no
// digest: the digest would be of another version, or of a mix of two.
func TestDigestOfAChangingFileIsNotKept(t *testing.T) {
	data := []byte("a kernel")
	tests := []struct {
		name  string
		etags []string // at the hash's opens
	}{
		{"changed before the hash opened it", []string{"v2"}},
		{"changed while it was hashed", []string{"v1", "v2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &versions{etags: tt.etags, data: data}
			d := newDigester(v, 64<<20, time.Second, quietLog())
			defer d.close()
			if sum, ok := d.sum(t.Context(), &gateway.Request{Path: "k"}, "v1", int64(len(data))); ok {
				t.Errorf("digest %x for a changing file", sum)
			}
			if n := d.cache.len(); n != 0 {
				t.Errorf("%d digests cached", n)
			}
		})
	}
	t.Run("unchanged", func(t *testing.T) {
		d := newDigester(&versions{etags: []string{"v1"}, data: data}, 64<<20, time.Second, quietLog())
		defer d.close()
		if sum, ok := d.sum(t.Context(), &gateway.Request{Path: "k"}, "v1", int64(len(data))); !ok || sum != sha256.Sum256(data) {
			t.Errorf("digest %x, %t", sum, ok)
		}
	})
}

// TestDigestWaitIsBounded: a hash slower than the wait (a cold disk) does
// not hold the header: it goes without the digest, and the hash goes on
// to serve later requests.
func TestDigestWaitIsBounded(t *testing.T) {
	data := []byte("slow disk")
	v := &versions{etags: []string{"v1"}, data: data, block: make(chan struct{})}
	d := newDigester(v, 64<<20, 50*time.Millisecond, quietLog())
	defer d.close()
	r := &gateway.Request{Path: "k"}
	// The read is blocked until the test unblocks it: sum returns only
	// because its wait is bounded.
	if _, ok := d.sum(t.Context(), r, "v1", int64(len(data))); ok {
		t.Fatal("digest of a blocked read")
	}
	close(v.block)
	deadline := time.Now().Add(10 * time.Second)
	for d.hashesDone() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if sum, ok := d.sum(t.Context(), r, "v1", int64(len(data))); !ok || sum != sha256.Sum256(data) {
		t.Errorf("after the hash: %x, %t", sum, ok)
	}
}

// TestDigestCloseStopsHashes: close ends a background hash and waits for
// it; no hash starts afterwards.
func TestDigestCloseStopsHashes(t *testing.T) {
	v := &versions{etags: []string{"v1"}, data: bytes.Repeat([]byte("x"), 1<<20), block: make(chan struct{})}
	d := newDigester(v, 0, time.Second, quietLog()) // every file in the background
	if _, ok := d.sum(t.Context(), &gateway.Request{Path: "k"}, "v1", 1<<20); ok {
		t.Fatal("a background digest was returned at once")
	}
	done := make(chan struct{})
	go func() { d.close(); close(done) }()
	time.Sleep(10 * time.Millisecond) // let close cancel; the read is still blocked
	close(v.block)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("close did not return")
	}
	if _, ok := d.sum(t.Context(), &gateway.Request{Path: "k"}, "v1", 1<<20); ok || d.hashesDone() != 0 {
		t.Error("a hash after close")
	}
}

// TestDigestCacheBounds: the cache keeps the most recently used entries
// within its bounds of entries and bytes.
func TestDigestCacheBounds(t *testing.T) {
	key := func(i int) string { return fmt.Sprintf("%060d", i) } // 60 bytes, 92 with the digest
	tests := []struct {
		name                 string
		maxEntries, maxBytes int
		want                 int
	}{
		{"entries bound", 10, 1 << 20, 10},
		{"bytes bound", 1000, 920, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newDigestCache(tt.maxEntries, tt.maxBytes)
			for i := range 100 {
				c.add(key(i), [32]byte{byte(i)})
				if i == 50 {
					continue
				}
				c.get(key(50)) // keeps 50 recent
			}
			if c.len() != tt.want || c.bytes > tt.maxBytes {
				t.Errorf("%d entries, %d bytes; want %d entries within %d bytes", c.len(), c.bytes, tt.want, tt.maxBytes)
			}
			if s, ok := c.get(key(50)); !ok || s[0] != 50 {
				t.Error("the most recently used entry was evicted")
			}
			if _, ok := c.get(key(0)); ok {
				t.Error("the oldest entry is still there")
			}
			if s, ok := c.get(key(99)); !ok || s[0] != 99 {
				t.Error("the newest entry is missing")
			}
		})
	}
	t.Run("key over the bytes bound is not kept", func(t *testing.T) {
		c := newDigestCache(10, 50)
		c.add(key(1), [32]byte{})
		if c.len() != 0 || c.bytes != 0 {
			t.Errorf("%d entries, %d bytes", c.len(), c.bytes)
		}
	})
}

func TestDigestFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		ok   bool
		want int64
	}{
		{[]string{"-root", dir}, true, 64 << 20},
		{[]string{"-root", dir, "-digest-sync-max", "512KiB"}, true, 512 << 10},
		{[]string{"-root", dir, "-digest-sync-max", "0"}, true, 0},
		{[]string{"-root", dir, "-digest-sync-max", "-1"}, false, 0},
		{[]string{"-root", dir, "-digest-sync-max", "lots"}, false, 0},
		{[]string{"-root", dir, "-digest-wait", "-1s"}, false, 0},
	} {
		c, err := parseFlags(tt.args, io.Discard)
		if (err == nil) != tt.ok || err == nil && int64(c.digestSyncMax) != tt.want {
			t.Errorf("%q: %v, %v", tt.args, c, err)
		}
	}
}

// BenchmarkSHA256PerGiB is what hashing costs: SHA-256 over 1 GiB in
// 64 KiB chunks, from memory (the page cache's best case).
func BenchmarkSHA256PerGiB(b *testing.B) {
	chunk := make([]byte, 64<<10)
	rand.Read(chunk)
	b.SetBytes(1 << 30)
	b.ReportAllocs()
	for b.Loop() {
		h := sha256.New()
		for range (1 << 30) / len(chunk) {
			h.Write(chunk)
		}
		if len(h.Sum(nil)) != 32 {
			b.Fatal(errors.New("short sum"))
		}
	}
}
