package main

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tftpgw/tftpgw/gateway"
)

// The digest rule (README, tftp-backend paragraph): the SHA-256 of a -root
// file is computed once per version (its ETag: size, mtime, ctime, inode)
// and cached. A file of at most syncMax bytes is hashed before its first
// header, which carries the digest, waiting at most syncWait (-digest-wait,
// 1 s) for it (a cold, slow disk: that header goes without, the hash goes
// on and later headers have it). A larger file is hashed in the background, one at a
// time, after its first request, whose header goes without a digest, as
// do the others until the hash is done. Concurrent requests for one
// version share one hash (singleflight), so that a boot herd hashes a
// file once.

const (
	// defaultDigestSyncMax is -digest-sync-max's default. SHA-256 costs
	// 0.73-0.78 s of a core per GiB (1.4 GB/s) on a 2-core AMD EPYC with
	// SHA extensions (BenchmarkSHA256PerGiB), about 2.5 s without them:
	// 64 MiB takes 50 to 160 ms from the page cache, well within the
	// edge's 2 s header budget.
	defaultDigestSyncMax = 64 << 20

	// defaultDigestWait is -digest-wait's default, the longest wait for a
	// hash before a header: half the edge's default header budget.
	defaultDigestWait = time.Second

	// digestCacheEntries and digestCacheBytes bound the digest cache:
	// each entry holds its path and ETag (the key) and 32 bytes.
	digestCacheEntries = 4096
	digestCacheBytes   = 4 << 20

	// backgroundHashes is how many files over syncMax are hashed at
	// once: they compete with the transfers for the disk and the CPU.
	backgroundHashes = 1
)

// errVersion reports a file that is not, or no longer, the version a hash
// was asked for.
var errVersion = errors.New("file changed while being hashed")

// digester computes and caches the SHA-256 digests of a handler's
// contents, per path and ETag. Its methods are safe for concurrent use.
type digester struct {
	h        gateway.Handler // opens the file to hash
	syncMax  int64
	syncWait time.Duration
	log      *slog.Logger

	group      singleflight.Group
	background chan struct{} // a token per background hash running

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc

	mu     sync.Mutex
	cache  *digestCache
	closed bool
	wg     sync.WaitGroup // running hashes
	hashes int            // hashes completed, for tests
}

// newDigester returns a digester of h's contents, hashing those up to
// syncMax bytes before their header, waiting at most wait. close stops it.
func newDigester(h gateway.Handler, syncMax int64, wait time.Duration, log *slog.Logger) *digester {
	ctx, cancel := context.WithCancel(context.Background())
	return &digester{
		h: h, syncMax: syncMax, syncWait: wait, log: log,
		background: make(chan struct{}, backgroundHashes),
		ctx:        ctx, cancel: cancel,
		cache: newDigestCache(digestCacheEntries, digestCacheBytes),
	}
}

// close stops the running hashes and waits for them to end.
func (d *digester) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
}

// handler returns h with the digest of each seekable content that has an
// ETag and a size in its Info, when it is known (see the rule above).
func (d *digester) handler(h gateway.Handler) gateway.Handler {
	return gateway.HandlerFunc(func(ctx context.Context, r *gateway.Request) (gateway.Content, error) {
		c, err := h.ServeTFTP(ctx, r)
		if err != nil {
			return c, err
		}
		ic, ok := c.(gateway.InfoContent)
		rs, seeks := c.(io.Seeker)
		if !ok || !seeks || ic.Info().ETag == "" || c.Size() < 0 {
			return c, nil
		}
		info := ic.Info()
		sum, ok := d.sum(ctx, r, info.ETag, c.Size())
		if !ok {
			return c, nil
		}
		info.SHA256 = sum
		return &infoContent{Content: c, Seeker: rs, info: info}, nil
	})
}

// sum returns the digest of r's file in its version etag of size bytes, if
// it is known or, for a file up to syncMax, becomes known within syncWait.
// Otherwise it starts the hash, if none runs, and returns false.
func (d *digester) sum(ctx context.Context, r *gateway.Request, etag string, size int64) ([32]byte, bool) {
	key := digestKey(r.Path, etag)
	d.mu.Lock()
	sum, ok := d.cache.get(key)
	d.mu.Unlock()
	if ok {
		return sum, true
	}
	req := *r // the hash outlives the request
	ch := d.group.DoChan(key, func() (any, error) { return d.compute(&req, key, etag, size) })
	if size > d.syncMax || d.syncWait <= 0 {
		return [32]byte{}, false
	}
	timer := time.NewTimer(d.syncWait)
	defer timer.Stop()
	select {
	case res := <-ch:
		if res.Err != nil {
			return [32]byte{}, false
		}
		return res.Val.([32]byte), true
	case <-timer.C:
		d.log.Debug("digest not ready in time; header without it", "path", r.Path, "size", size, "wait", d.syncWait)
	case <-ctx.Done():
	}
	return [32]byte{}, false
}

// compute hashes the file at req.Path if it is still the version etag
// of size bytes, and caches the digest.
func (d *digester) compute(req *gateway.Request, key, etag string, size int64) ([32]byte, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return [32]byte{}, errors.New("digester closed")
	}
	// A request that missed the cache just before the last hash of this
	// version ended starts a new flight: the digest is known by now.
	if sum, ok := d.cache.get(key); ok {
		d.mu.Unlock()
		return sum, nil
	}
	d.wg.Add(1)
	d.mu.Unlock()
	defer d.wg.Done()

	if size > d.syncMax {
		select {
		case d.background <- struct{}{}:
			defer func() { <-d.background }()
		case <-d.ctx.Done():
			return [32]byte{}, d.ctx.Err()
		}
	}
	start := time.Now()
	sum, err := d.hash(req, etag, size)
	if err != nil {
		if d.ctx.Err() == nil {
			d.log.Info("no digest", "path", req.Path, "etag", etag, "err", err)
		}
		return [32]byte{}, err
	}
	d.mu.Lock()
	d.cache.add(key, sum)
	d.hashes++
	d.mu.Unlock()
	d.log.Debug("digest computed", "path", req.Path, "etag", etag, "size", size, "duration", time.Since(start))
	return sum, nil
}

// hash opens req's file through the handler, checks that it is the
// version etag, hashes it, and checks again that the file on disk is
// still that version: a file rewritten in place while it was read would
// otherwise get the digest of a mix of two versions.
func (d *digester) hash(req *gateway.Request, etag string, size int64) ([32]byte, error) {
	version := func() (gateway.Content, error) {
		c, err := d.h.ServeTFTP(d.ctx, req)
		if err != nil {
			return nil, fmt.Errorf("open: %w", err)
		}
		ic, ok := c.(gateway.InfoContent)
		if !ok || ic.Info().ETag != etag {
			c.Close()
			return nil, errVersion
		}
		return c, nil
	}
	c, err := version()
	if err != nil {
		return [32]byte{}, err
	}
	h := sha256.New()
	// One byte more than the size at most: a file that grows is another
	// version, and is not read to its (moving) end.
	n, err := io.CopyBuffer(h, io.LimitReader(ctxReader{d.ctx, c}, size+1), make([]byte, 64<<10))
	c.Close()
	switch {
	case err != nil:
		return [32]byte{}, fmt.Errorf("read: %w", err)
	case n != size:
		return [32]byte{}, fmt.Errorf("%w: read %d bytes of %d", errVersion, n, size)
	}
	again, err := version()
	if err != nil {
		return [32]byte{}, err
	}
	again.Close()
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, nil
}

// hashesDone returns the number of hashes completed.
func (d *digester) hashesDone() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hashes
}

// digestKey is the cache key of a path's version.
func digestKey(path, etag string) string { return etag + "\x00" + path }

// ctxReader is a reader that stops when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// infoContent is a seekable content with other Info.
type infoContent struct {
	gateway.Content
	io.Seeker
	info gateway.ContentInfo
}

func (c *infoContent) Info() gateway.ContentInfo { return c.info }

// digestCache is a least-recently-used map from keys to digests, bounded
// in entries and in bytes (keys and digests). Not safe for concurrent use.
type digestCache struct {
	maxEntries, maxBytes int
	bytes                int
	order                *list.List // of *digestEntry, most recent first
	entries              map[string]*list.Element
}

type digestEntry struct {
	key string
	sum [32]byte
}

func newDigestCache(maxEntries, maxBytes int) *digestCache {
	return &digestCache{maxEntries: maxEntries, maxBytes: maxBytes, order: list.New(), entries: map[string]*list.Element{}}
}

func (c *digestCache) get(key string) ([32]byte, bool) {
	e, ok := c.entries[key]
	if !ok {
		return [32]byte{}, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*digestEntry).sum, true
}

// add stores key's digest, evicting the least recently used entries over
// the bounds. A key larger than the byte bound is not stored.
func (c *digestCache) add(key string, sum [32]byte) {
	size := len(key) + len(sum)
	if size > c.maxBytes {
		return
	}
	if e, ok := c.entries[key]; ok {
		e.Value.(*digestEntry).sum = sum
		c.order.MoveToFront(e)
		return
	}
	c.entries[key] = c.order.PushFront(&digestEntry{key: key, sum: sum})
	c.bytes += size
	for c.order.Len() > c.maxEntries || c.bytes > c.maxBytes {
		last := c.order.Back()
		ent := last.Value.(*digestEntry)
		c.order.Remove(last)
		delete(c.entries, ent.key)
		c.bytes -= len(ent.key) + len(ent.sum)
	}
}

func (c *digestCache) len() int { return c.order.Len() }
