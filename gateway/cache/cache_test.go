package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
)

func TestHitWithoutNext(t *testing.T) {
	f := newFake()
	data := pattern(300_000, 1)
	f.set("k", file{data: data, etag: "v1", maxAge: time.Minute})
	h := newCache(t, f, 0)

	mustGet(t, h, "k", data)
	mustGet(t, h, "k", data)
	mustGet(t, h, "k", data)
	if n := f.calls.Load(); n != 1 {
		t.Errorf("Next called %d times, want 1", n)
	}
	if n := f.bytesRead.Load(); n != int64(len(data)) {
		t.Errorf("content bytes read %d, want %d", n, len(data))
	}
	st := h.Stats()
	if st.Misses != 1 || st.Hits != 2 || st.Joins != 0 || st.Passes != 0 {
		t.Errorf("stats = %+v, want 1 miss and 2 hits", st)
	}
	if st.BytesServed != 3*int64(len(data)) || st.BytesFetched != int64(len(data)) {
		t.Errorf("bytes served %d fetched %d", st.BytesServed, st.BytesFetched)
	}
	if st.Entries != 1 || st.Bytes < int64(len(data)) {
		t.Errorf("entries %d bytes %d", st.Entries, st.Bytes)
	}
	if f.closed.Load() != f.opened.Load() {
		t.Errorf("closed %d of %d contents", f.closed.Load(), f.opened.Load())
	}
}

func TestContentInterfaces(t *testing.T) {
	f := newFake()
	data := pattern(10_000, 2)
	f.set("k", file{data: data, etag: "v1", maxAge: time.Minute})
	h := newCache(t, f, 0)
	mustGet(t, h, "k", data)

	c, err := h.ServeTFTP(t.Context(), req("k"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ic, ok := c.(gateway.InfoContent)
	if !ok || ic.Info() != (gateway.ContentInfo{ETag: "v1", MaxAge: time.Minute}) || c.Size() != int64(len(data)) {
		t.Fatalf("content %T: info/size wrong", c)
	}
	s := c.(io.Seeker)
	if pos, err := s.Seek(-100, io.SeekEnd); err != nil || pos != int64(len(data))-100 {
		t.Fatalf("Seek = %d, %v", pos, err)
	}
	rest, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(rest, data[len(data)-100:]) {
		t.Fatalf("read after seek: %d bytes, %v", len(rest), err)
	}
}

// 200 sessions for the same path at once: one Next call, one read.
func TestConcurrentSessionsShareOneRead(t *testing.T) {
	for _, tc := range []struct {
		name      string
		maxAge    time.Duration
		wantCalls int64 // -1: one per session (revalidation)
	}{
		{"max-age", time.Minute, 1},
		{"etag-only", 0, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			data := pattern(512<<10, 3)
			f.set("kernel", file{data: data, etag: "v1", maxAge: tc.maxAge})
			f.gate = make(chan struct{})
			h := newCache(t, f, 0)

			const n = 200
			var wg sync.WaitGroup
			errs := make(chan error, n)
			started := make(chan struct{}, n)
			for range n {
				wg.Go(func() {
					c, err := h.ServeTFTP(t.Context(), req("kernel"))
					started <- struct{}{}
					if err != nil {
						errs <- err
						return
					}
					defer c.Close()
					got, err := readAll(c)
					if err == nil && !bytes.Equal(got, data) {
						err = errors.New("wrong bytes: " + describeDiff(got, data))
					}
					if err != nil {
						errs <- err
					}
				})
			}
			for range n { // every session has its content before any byte is read
				<-started
			}
			close(f.gate)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			want := tc.wantCalls
			if want < 0 {
				want = n
			}
			if got := f.calls.Load(); got != want {
				t.Errorf("Next called %d times, want %d", got, want)
			}
			if got := f.bytesRead.Load(); got != int64(len(data)) {
				t.Errorf("content bytes read %d, want %d", got, len(data))
			}
			st := h.Stats()
			if st.Misses != 1 || st.Hits+st.Joins != n-1 || st.Joins == 0 {
				t.Errorf("stats = %+v, want 1 miss and %d joins", st, n-1)
			}
			if tc.maxAge == 0 && st.Revalidations != n-1 {
				t.Errorf("revalidations %d, want %d", st.Revalidations, n-1)
			}
			waitFor(t, "contents closed", func() bool { return f.closed.Load() == f.opened.Load() })
		})
	}
}

// A reader that has caught up with the fetch reads on to the end when the
// fetch publishes its last bytes and settles while the reader looks: Read
// once looked at avail before the state, and a fetch that ended between
// the two looks made it return io.EOF short of the size, a truncated file
// without an error (seen once as "wrong bytes" in
// TestConcurrentSessionsShareOneRead under load).
func TestReadCaughtUpWhenFetchEnds(t *testing.T) {
	f := newFake()
	data := pattern(256<<10, 9)
	f.set("k", file{data: data, etag: "v1", maxAge: time.Minute})
	f.gate = make(chan struct{})
	h := newCache(t, f, 0)

	c, err := h.ServeTFTP(t.Context(), req("k"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e := c.(*reader).e
	f.gate <- struct{}{} // the first chunk of 64 KiB
	waitFor(t, "the first chunk", func() bool { return e.avail.Load() == 64<<10 })
	hooked := false
	h.readHook = func(r *reader) {
		if hooked || r.off < 64<<10 {
			return
		}
		// The reader has caught up and is between its two looks: the
		// fetch gets the rest, publishes it and settles.
		hooked = true
		close(f.gate)
		waitFor(t, "the fetch to end", func() bool { return e.state.Load() == stateDone })
	}
	got, err := readAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !hooked {
		t.Fatal("the hook did not run")
	}
	if !bytes.Equal(got, data) {
		t.Fatal(describeDiff(got, data))
	}
}

// A reader gets its first bytes before the fetch has the whole file.
func TestStreamsBeforeComplete(t *testing.T) {
	f := newFake()
	data := pattern(1<<20, 4)
	f.set("k", file{data: data, etag: "v1", maxAge: time.Minute})
	f.gate = make(chan struct{})
	h := newCache(t, f, 0)

	c, err := h.ServeTFTP(t.Context(), req("k"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f.gate <- struct{}{} // one chunk of 64 KiB
	buf := make([]byte, 512)
	if n, err := c.Read(buf); err != nil || !bytes.Equal(buf[:n], data[:n]) {
		t.Fatalf("first block: %d, %v", n, err)
	}
	close(f.gate)
	rest, err := readAll(c)
	if err != nil || !bytes.Equal(rest, data[512:]) {
		t.Fatalf("rest: %d bytes, %v", len(rest), err)
	}
}

// The first session goes away (a UEFI size probe); the others, and the
// client's download that follows, still get the file from the one fetch.
func TestFirstReaderLeavesEarly(t *testing.T) {
	f := newFake()
	data := pattern(1<<20, 5)
	f.set("k", file{data: data, etag: "v1"}) // etag only: revalidated
	f.gate = make(chan struct{})
	f.ctxs = make(chan context.Context, 10)
	h := newCache(t, f, 0)

	pctx, pcancel := context.WithCancel(t.Context())
	probe, err := h.ServeTFTP(pctx, req("k"))
	if err != nil {
		t.Fatal(err)
	}
	fetchCtx := <-f.ctxs
	other, err := h.ServeTFTP(t.Context(), req("k"))
	if err != nil {
		t.Fatal(err)
	}
	<-f.ctxs
	defer other.Close()
	probe.Close()
	pcancel() // the session ends
	if fetchCtx.Err() != nil {
		t.Fatal("the fetch was cancelled with the session that started it")
	}
	close(f.gate)
	got, err := readAll(other)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("other session: %d bytes, %v", len(got), err)
	}
	mustGet(t, h, "k", data)
	if n := f.bytesRead.Load(); n != int64(len(data)) {
		t.Errorf("content bytes read %d, want %d", n, len(data))
	}
}

// Nobody reads an unfinished fetch any more: it completes into the cache.
func TestAbandonedFetchCompletes(t *testing.T) {
	f := newFake()
	data := pattern(1<<20, 6)
	f.set("k", file{data: data, etag: "v1", maxAge: time.Minute})
	f.gate = make(chan struct{})
	h := newCache(t, f, 0)

	c, err := h.ServeTFTP(t.Context(), req("k"))
	if err != nil {
		t.Fatal(err)
	}
	e := c.(*reader).e
	c.Close()
	close(f.gate)
	// Settled, not only read: with every byte fetched the fetch still
	// reads for the end and settles, and a request before then joins it.
	waitFor(t, "fetch done", func() bool { return e.state.Load() == stateDone })
	mustGet(t, h, "k", data)
	if st := h.Stats(); st.Hits != 1 || f.calls.Load() != 1 {
		t.Errorf("stats %+v, Next calls %d: want a hit", st, f.calls.Load())
	}
}

func TestFetchErrorReachesJoiners(t *testing.T) {
	f := newFake()
	data := pattern(1<<20, 7)
	f.set("k", file{data: data, etag: "v1", maxAge: time.Minute, failAt: 200 << 10})
	f.gate = make(chan struct{})
	h := newCache(t, f, 0)

	var cs []gateway.Content
	for range 5 {
		c, err := h.ServeTFTP(t.Context(), req("k"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	close(f.gate)
	for i, c := range cs {
		got, err := readAll(c)
		if !errors.Is(err, errBroken) {
			t.Errorf("reader %d: err %v, want the fetch's error", i, err)
		}
		if !bytes.Equal(got, data[:len(got)]) {
			t.Errorf("reader %d: wrong bytes before the error", i)
		}
	}
	if st := h.Stats(); st.FetchErrors != 1 || st.Entries != 0 {
		t.Errorf("stats %+v: want 1 fetch error and no entry", st)
	}
	// The next request starts again.
	f.set("k", file{data: data, etag: "v1", maxAge: time.Minute})
	mustGet(t, h, "k", data)
	if n := f.calls.Load(); n != 2 {
		t.Errorf("Next called %d times, want 2", n)
	}
}

func TestSizeMismatchFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
	}{{"short", 5000}, {"long", 3000}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.set("k", file{data: pattern(4000, 8), etag: "v1", maxAge: time.Minute, size: tc.size})
			h := newCache(t, f, 0)
			if _, err := get(t, h, "k"); err == nil {
				t.Fatal("no error for a content that is not its declared size")
			}
			if st := h.Stats(); st.FetchErrors != 1 || st.Entries != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestNextErrorPassedThrough(t *testing.T) {
	f := newFake()
	h := newCache(t, f, 0)
	_, err := get(t, h, "missing")
	if gateway.ErrorFor(err).Code != gateway.ErrFileNotFound {
		t.Fatalf("err = %v, want file not found", err)
	}
}

// Content without a max age is revalidated by its ETag on every request;
// a new ETag replaces the entry, and sessions reading the old one keep it.
func TestETagChangeReplaces(t *testing.T) {
	f := newFake()
	v1, v2 := pattern(100_000, 9), pattern(120_000, 10)
	f.set("k", file{data: v1, etag: "v1"})
	h := newCache(t, f, 0)
	mustGet(t, h, "k", v1)

	old, err := h.ServeTFTP(t.Context(), req("k")) // still v1, from the cache
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	f.set("k", file{data: v2, etag: "v2"})
	mustGet(t, h, "k", v2)
	mustGet(t, h, "k", v2)
	got, err := readAll(old)
	if err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("old reader: %d bytes, %v; want v1", len(got), err)
	}
	if n := f.calls.Load(); n != 4 {
		t.Errorf("Next called %d times, want 4", n)
	}
	if n := f.bytesRead.Load(); n != int64(len(v1)+len(v2)) {
		t.Errorf("content bytes read %d, want %d", n, len(v1)+len(v2))
	}
	if st := h.Stats(); st.Entries != 1 || st.Revalidations != 2 || st.Misses != 2 {
		t.Errorf("stats %+v", st)
	}
	old.Close()
	if st := h.Stats(); st.Bytes > int64(len(v2))+1024 {
		t.Errorf("old version still charged: %d bytes", st.Bytes)
	}
}

func TestMaxAgeExpiry(t *testing.T) {
	f := newFake()
	v1, v2 := pattern(50_000, 11), pattern(50_000, 12)
	f.set("k", file{data: v1, etag: "v1", maxAge: 50 * time.Millisecond})
	h := newCache(t, f, 0)
	mustGet(t, h, "k", v1)
	mustGet(t, h, "k", v1)
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("Next called %d times while fresh, want 1", n)
	}
	time.Sleep(60 * time.Millisecond)
	mustGet(t, h, "k", v1) // stale: asks Next, same ETag, not read again
	mustGet(t, h, "k", v1) // fresh again
	if n, b := f.calls.Load(), f.bytesRead.Load(); n != 2 || b != int64(len(v1)) {
		t.Fatalf("after expiry: %d calls, %d bytes read; want 2 and %d", n, b, len(v1))
	}
	f.set("k", file{data: v2, etag: "v2", maxAge: 50 * time.Millisecond})
	time.Sleep(60 * time.Millisecond)
	mustGet(t, h, "k", v2)
	if st := h.Stats(); st.Revalidations != 1 || st.Misses != 2 || st.Hits != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestDefaultMaxAge(t *testing.T) {
	f := newFake()
	data := pattern(10_000, 13)
	f.set("k", file{data: data, etag: "v1"})
	h := newCache(t, f, 0)
	h.DefaultMaxAge = time.Minute
	for range 3 {
		mustGet(t, h, "k", data)
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("Next called %d times, want 1", n)
	}
	// A negative MaxAge is the source refusing any freshness: every
	// request calls Next (the cached bytes are still shared by ETag).
	f.set("per-client", file{data: data, etag: "v1", maxAge: -1})
	for range 3 {
		mustGet(t, h, "per-client", data)
	}
	if n := f.calls.Load(); n != 4 {
		t.Errorf("Next called %d times, want 4", n)
	}
}

func TestLRUEvictionByBytes(t *testing.T) {
	f := newFake()
	const size = 100_000
	files := map[string][]byte{}
	for i, p := range []string{"a", "b", "c", "d", "e"} {
		files[p] = pattern(size, byte(i))
		f.set(p, file{data: files[p], etag: p, maxAge: time.Minute})
	}
	h := newCache(t, f, 4*size+4096) // room for four
	for _, p := range []string{"a", "b", "c", "d"} {
		mustGet(t, h, p, files[p])
	}
	mustGet(t, h, "a", files["a"]) // a is now the most recent; b the least
	mustGet(t, h, "e", files["e"]) // evicts b
	st := h.Stats()
	if st.Evictions != 1 || st.Entries != 4 || st.Bytes > h.MaxBytes {
		t.Fatalf("stats %+v", st)
	}
	calls := f.calls.Load()
	for _, p := range []string{"a", "c", "d", "e"} {
		mustGet(t, h, p, files[p])
	}
	if f.calls.Load() != calls {
		t.Errorf("a, c, d or e was evicted")
	}
	mustGet(t, h, "b", files["b"])
	if f.calls.Load() != calls+1 {
		t.Errorf("b was not evicted")
	}
}

// An entry being read is never evicted; content that finds no room is
// passed through.
func TestInUseNotEvicted(t *testing.T) {
	f := newFake()
	const size = 100_000
	a, b := pattern(size, 1), pattern(size, 2)
	f.set("a", file{data: a, etag: "a", maxAge: time.Minute})
	f.set("b", file{data: b, etag: "b", maxAge: time.Minute})
	h := newCache(t, f, size+4096) // room for one
	h.MaxEntryBytes = size

	ca, err := h.ServeTFTP(t.Context(), req("a"))
	if err != nil {
		t.Fatal(err)
	}
	cb, err := h.ServeTFTP(t.Context(), req("b"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cb.(*fakeContent); !ok {
		t.Fatalf("b: got %T, want the content passed through", cb)
	}
	for _, c := range []gateway.Content{ca, cb} {
		if _, err := readAll(c); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if st := h.Stats(); st.Passes != 1 || st.Evictions != 0 || st.Bytes > h.MaxBytes {
		t.Fatalf("stats %+v", st)
	}
	mustGet(t, h, "b", b) // a is unused now: evicted for b
	if st := h.Stats(); st.Evictions != 1 || st.Entries != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNotCacheablePassesThrough(t *testing.T) {
	f := newFake()
	data := pattern(10_000, 14)
	f.set("noetag", file{data: data})
	f.set("nosize", file{data: data, etag: "v1", maxAge: time.Minute, size: -1})
	f.set("large", file{data: pattern(300_000, 15), etag: "v1", maxAge: time.Minute})
	h := newCache(t, f, 1<<20) // entries up to 256 KiB
	for _, p := range []string{"noetag", "nosize", "large"} {
		t.Run(p, func(t *testing.T) {
			before := f.calls.Load()
			for range 3 {
				c, err := h.ServeTFTP(t.Context(), req(p))
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := c.(*fakeContent); !ok {
					t.Errorf("got %T, want the content of Next", c)
				}
				if _, err := readAll(c); err != nil {
					t.Fatal(err)
				}
				c.Close()
			}
			if n := f.calls.Load() - before; n != 3 {
				t.Errorf("Next called %d times, want 3", n)
			}
		})
	}
	if st := h.Stats(); st.Passes != 9 || st.Entries != 0 {
		t.Errorf("stats %+v", st)
	}
}

// A content without Info is not cacheable.
func TestNoInfoPassesThrough(t *testing.T) {
	f := newFake()
	f.set("k", file{data: pattern(1000, 16), etag: "v1", maxAge: time.Minute})
	next := gateway.HandlerFunc(func(ctx context.Context, r *gateway.Request) (gateway.Content, error) {
		c, err := f.ServeTFTP(ctx, r)
		if err != nil {
			return nil, err
		}
		return noInfo{c}, nil
	})
	h := newCache(t, next, 0)
	for range 2 {
		if _, err := get(t, h, "k"); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.calls.Load(); n != 2 {
		t.Errorf("Next called %d times, want 2", n)
	}
}

// A passed-through content still stops with the session.
func TestPassThroughFollowsSession(t *testing.T) {
	f := newFake()
	f.set("k", file{data: pattern(1000, 17)}) // no etag
	f.ctxs = make(chan context.Context, 1)
	h := newCache(t, f, 0)
	ctx, cancel := context.WithCancel(t.Context())
	c, err := h.ServeTFTP(ctx, req("k"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nctx := <-f.ctxs
	cancel()
	waitFor(t, "Next's context cancelled", func() bool { return nctx.Err() != nil })
}

func TestOff(t *testing.T) {
	f := newFake()
	f.set("k", file{data: pattern(1000, 18), etag: "v1", maxAge: time.Minute})
	h := newCache(t, f, -1)
	for range 2 {
		if _, err := get(t, h, "k"); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.calls.Load(); n != 2 {
		t.Errorf("Next called %d times, want 2", n)
	}
}

func TestCloseCancelsFetches(t *testing.T) {
	f := newFake()
	f.set("k", file{data: pattern(1<<20, 19), etag: "v1", maxAge: time.Minute})
	f.gate = make(chan struct{})
	h := &Handler{Next: f, Logger: quiet()}
	c, err := h.ServeTFTP(t.Context(), req("k"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h.Close() // must not wait for the gate
	if _, err := readAll(c); err == nil {
		t.Fatal("reader of a cancelled fetch got no error")
	}
	if st := h.Stats(); st.Entries != 0 {
		t.Errorf("stats %+v", st)
	}
	close(f.gate)
	if _, err := get(t, h, "k"); err != nil { // passed through now
		t.Fatal(err)
	}
}

// A reader blocked on a stalled fetch returns when its session ends.
func TestReaderFollowsSession(t *testing.T) {
	f := newFake()
	f.set("k", file{data: pattern(1<<20, 20), etag: "v1", maxAge: time.Minute})
	f.gate = make(chan struct{})
	h := newCache(t, f, 0)
	ctx, cancel := context.WithCancel(t.Context())
	c, err := h.ServeTFTP(ctx, req("k"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, err := c.Read(make([]byte, 512)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read = %v, want context.Canceled", err)
	}
	close(f.gate)
}

// Concurrent requests for paths whose answer is not shareable each get
// their own content, in time.
func TestWaitersOfUncacheableCallNext(t *testing.T) {
	f := newFake()
	f.set("k", file{data: pattern(1000, 21)}) // no etag
	h := newCache(t, f, 0)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := get(t, h, "k"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := f.calls.Load(); n != 20 {
		t.Errorf("Next called %d times, want 20", n)
	}
}

// A panicking Next does not leave later requests for the path waiting.
func TestNextPanicReleasesPath(t *testing.T) {
	f := newFake()
	data := pattern(1000, 22)
	f.set("k", file{data: data, etag: "v1", maxAge: time.Minute})
	first := true
	next := gateway.HandlerFunc(func(ctx context.Context, r *gateway.Request) (gateway.Content, error) {
		if first {
			first = false
			panic("boom")
		}
		return f.ServeTFTP(ctx, r)
	})
	h := newCache(t, next, 0)
	func() {
		defer func() { _ = recover() }()
		h.ServeTFTP(t.Context(), req("k"))
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := h.ServeTFTP(ctx, req("k"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := readAll(c); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, %v", len(got), err)
	}
}

type panicContent struct{ gateway.Content }

func (panicContent) Read([]byte) (int, error) { panic("boom") }
func (panicContent) Info() gateway.ContentInfo {
	return gateway.ContentInfo{ETag: "v1", MaxAge: time.Minute}
}

// A content that panics in the fetch fails its readers; the process lives.
func TestContentPanicBecomesError(t *testing.T) {
	next := gateway.HandlerFunc(func(ctx context.Context, r *gateway.Request) (gateway.Content, error) {
		return panicContent{gateway.BytesContent(make([]byte, 100))}, nil
	})
	h := newCache(t, next, 0)
	if _, err := get(t, h, "k"); err == nil {
		t.Fatal("no error")
	}
	if st := h.Stats(); st.FetchErrors != 1 {
		t.Errorf("stats %+v", st)
	}
}

// A large content without a max age (a kernel in a local directory) is
// cached from its second request on: the first streams from its source
// without a copy into memory.
func TestLargeRevalidatedContentCachedOnSecondRequest(t *testing.T) {
	f := newFake()
	data := pattern(5<<20, 4)
	f.set("vmlinuz", file{data: data, etag: "v1"})
	h := newCache(t, f, 0)
	mustGet(t, h, "vmlinuz", data) // passes through
	if st := h.Stats(); st.Passes != 1 || st.Misses != 0 || st.Entries != 0 {
		t.Fatalf("after the first request: %+v", st)
	}
	mustGet(t, h, "vmlinuz", data) // cached
	mustGet(t, h, "vmlinuz", data) // served from memory
	st := h.Stats()
	if st.Passes != 1 || st.Misses != 1 || st.Revalidations != 1 || st.Entries != 1 {
		t.Errorf("stats %+v", st)
	}
	if n := f.bytesRead.Load(); n != int64(2*len(data)) {
		t.Errorf("content bytes read %d, want %d", n, 2*len(data))
	}
	f.set("vmlinuz", file{data: data, etag: "v2"}) // a new version: passes through once again
	mustGet(t, h, "vmlinuz", data)
	if st := h.Stats(); st.Passes != 2 {
		t.Errorf("after a new ETag: %+v", st)
	}
}

// statFake is a fake whose Next can also tell a content's version without
// opening it, as gateway.FileServer can.
type statFake struct {
	*fake
	stats atomic.Int64
	err   error                                         // StatContent's error, if set
	lie   func(size int64, etag string) (int64, string) // alters what StatContent reports
}

func (f *statFake) StatContent(_ context.Context, req *gateway.Request) (int64, gateway.ContentInfo, error) {
	f.stats.Add(1)
	if f.err != nil {
		return 0, gateway.ContentInfo{}, f.err
	}
	f.mu.Lock()
	fl, ok := f.files[req.Path]
	f.mu.Unlock()
	if !ok {
		return 0, gateway.ContentInfo{}, errors.New("no such file")
	}
	size, etag := int64(len(fl.data)), fl.etag
	if f.lie != nil {
		size, etag = f.lie(size, etag)
	}
	return size, gateway.ContentInfo{ETag: etag, MaxAge: fl.maxAge}, nil
}

// TestRevalidationByStat: a cached entry is revalidated with Next's
// StatContent when it has one, and Next is called only when that cannot
// confirm the entry's version.
func TestRevalidationByStat(t *testing.T) {
	v1, v2 := pattern(100_000, 40), pattern(100_000, 41)
	tests := []struct {
		name      string
		setup     func(f *statFake)
		want      []byte
		wantCalls int64 // Next.ServeTFTP calls over both requests
	}{
		{"same_version_served_without_Next", func(*statFake) {}, v1, 1},
		{"new_version_calls_Next", func(f *statFake) { f.set("k", file{data: v2, etag: "v2"}) }, v2, 2},
		{"stat_error_calls_Next", func(f *statFake) { f.err = errors.New("EIO") }, v1, 2},
		{"other_size_calls_Next", func(f *statFake) {
			f.lie = func(size int64, etag string) (int64, string) { return size + 1, etag }
		}, v1, 2},
		{"no_etag_calls_Next", func(f *statFake) {
			f.lie = func(size int64, _ string) (int64, string) { return size, "" }
		}, v1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &statFake{fake: newFake()}
			f.set("k", file{data: v1, etag: "v1"})
			h := newCache(t, f, 0)
			mustGet(t, h, "k", v1)
			if n := f.stats.Load(); n != 0 {
				t.Fatalf("StatContent called %d times with nothing cached", n)
			}
			tt.setup(f)
			mustGet(t, h, "k", tt.want)
			if n := f.calls.Load(); n != tt.wantCalls {
				t.Errorf("Next called %d times, want %d", n, tt.wantCalls)
			}
			if n := f.stats.Load(); n != 1 {
				t.Errorf("StatContent called %d times, want 1", n)
			}
			if n := f.closed.Load(); n != f.opened.Load() {
				t.Errorf("%d contents opened, %d closed", f.opened.Load(), n)
			}
			// Either way the second request finds the cached version,
			// unless the file has a new one.
			wantRevalidations := int64(1)
			if tt.wantCalls == 2 && bytes.Equal(tt.want, v2) {
				wantRevalidations = 0
			}
			if st := h.Stats(); st.Revalidations != wantRevalidations {
				t.Errorf("Revalidations %d, want %d (%+v)", st.Revalidations, wantRevalidations, st)
			}
		})
	}
}

// TestRevalidationSharedByEarlierArrivals: a request that arrived
// (Request.At) before a revalidation of the cached version began (the
// fetch's call of Next, or a stat) is served that version without one of
// its own; one that arrived after it, or whose arrival is unknown, is
// revalidated. Content without a max age, which is otherwise revalidated
// by every request. Only from a Next that is a StatHandler (whose content
// is the path's, whoever asks), and never for content that said it
// differs per request (a negative MaxAge).
func TestRevalidationSharedByEarlierArrivals(t *testing.T) {
	v1, v2 := pattern(10_000, 50), pattern(10_000, 51)
	tests := []struct {
		name      string
		newer     bool // the file gets a new version after the first request
		noStat    bool // Next is not a StatHandler
		maxAge    time.Duration
		at        func(first, second time.Time) time.Time
		want      []byte
		wantStats int64 // StatContent calls for the second request
		wantCalls int64 // Next.ServeTFTP calls over both
	}{
		{"arrived_before_the_fetch_began", false, false, 0, func(first, _ time.Time) time.Time { return first.Add(-time.Millisecond) }, v1, 0, 1},
		{"arrived_after_the_fetch_began", false, false, 0, func(_, second time.Time) time.Time { return second }, v1, 1, 1},
		{"arrival_unknown", false, false, 0, func(time.Time, time.Time) time.Time { return time.Time{} }, v1, 1, 1},
		{"new_version_after_the_fetch_arrival_after_it", true, false, 0, func(_, second time.Time) time.Time { return second }, v2, 1, 2},
		// It arrived before the version it is served was confirmed: as if
		// it had been answered before the file changed.
		{"new_version_after_the_fetch_arrival_before_it", true, false, 0, func(first, _ time.Time) time.Time { return first.Add(-time.Millisecond) }, v1, 0, 1},
		{"next_without_stat_called_again", false, true, 0, func(first, _ time.Time) time.Time { return first.Add(-time.Millisecond) }, v1, 0, 2},
		{"content_per_request_revalidated", false, false, -1, func(first, _ time.Time) time.Time { return first.Add(-time.Millisecond) }, v1, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &statFake{fake: newFake()}
			f.set("k", file{data: v1, etag: "v1", maxAge: tt.maxAge})
			var next gateway.Handler = f
			if tt.noStat {
				next = f.fake
			}
			h := newCache(t, next, 0)
			first := time.Now()
			mustGetAt(t, h, "k", first, v1)
			if tt.newer {
				f.set("k", file{data: v2, etag: "v2", maxAge: tt.maxAge})
			}
			second := time.Now()
			mustGetAt(t, h, "k", tt.at(first, second), tt.want)
			if n := f.stats.Load(); n != tt.wantStats {
				t.Errorf("StatContent called %d times, want %d", n, tt.wantStats)
			}
			if n := f.calls.Load(); n != tt.wantCalls {
				t.Errorf("Next called %d times, want %d", n, tt.wantCalls)
			}
		})
	}
}

// TestStatRevalidationSharedByEarlierArrivals: a stat that confirmed the
// cached version serves the requests that arrived before it began.
func TestStatRevalidationSharedByEarlierArrivals(t *testing.T) {
	data := pattern(10_000, 52)
	f := &statFake{fake: newFake()}
	f.set("k", file{data: data, etag: "v1"})
	h := newCache(t, f, 0)
	mustGetAt(t, h, "k", time.Now(), data) // the fetch
	arrived := time.Now()
	mustGetAt(t, h, "k", time.Now(), data) // a stat, begun after arrived
	for range 3 {
		mustGetAt(t, h, "k", arrived, data)
	}
	if n := f.stats.Load(); n != 1 {
		t.Errorf("StatContent called %d times, want 1", n)
	}
	mustGetAt(t, h, "k", time.Now(), data)
	if n := f.stats.Load(); n != 2 {
		t.Errorf("after a later arrival: StatContent called %d times, want 2", n)
	}
}

// mustGetAt is mustGet for a request that arrived at at.
func mustGetAt(t *testing.T, h gateway.Handler, path string, at time.Time, want []byte) {
	t.Helper()
	r := req(path)
	r.At = at
	c, err := h.ServeTFTP(t.Context(), r)
	if err != nil {
		t.Fatalf("get %s: %v", path, err)
	}
	defer c.Close()
	got, err := readAll(c)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("get %s: %d bytes (%v), want %d identical bytes", path, len(got), err, len(want))
	}
}

// TestMiddleware: the cache as a gateway.Middleware serves what it wraps
// and shares one read of it.
func TestMiddleware(t *testing.T) {
	f := newFake()
	f.set("f", file{data: []byte("hello"), etag: "v1", maxAge: time.Minute})
	c := &Handler{Logger: quiet()}
	h := gateway.Chain(f, c.Middleware())
	for range 3 {
		content, err := h.ServeTFTP(context.Background(), &gateway.Request{Path: "f"})
		if err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(content); err != nil || string(b) != "hello" {
			t.Fatalf("read %q, %v", b, err)
		}
		content.Close()
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("the wrapped handler was called %d times, want 1", n)
	}
	c.Close()
}

// TestReadAtHand: a reader gives the bytes the fetch has already got
// without waiting (gateway.AtHandContent), all of a block or nothing, and
// leaves a block the fetch has not finished to Read, which waits for it.
func TestReadAtHand(t *testing.T) {
	f := newFake()
	data := pattern(200<<10, 5)
	f.set("k", file{data: data, etag: "v1", maxAge: time.Minute})
	f.gate = make(chan struct{})
	h := newCache(t, f, 0)
	c, err := h.ServeTFTP(t.Context(), req("k"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ah, ok := c.(gateway.AtHandContent)
	if !ok {
		t.Fatalf("content %T is not an AtHandContent", c)
	}
	buf := make([]byte, 1468)
	if ah.ReadAtHand(buf) {
		t.Fatal("a block at hand before the fetch got any byte")
	}
	f.gate <- struct{}{} // one chunk of 64 KiB: 44 blocks and part of the 45th
	var got []byte
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < 44*1468 && time.Now().Before(deadline) {
		if ah.ReadAtHand(buf) {
			got = append(got, buf...)
		} else {
			time.Sleep(time.Millisecond) // the fetch publishes its chunk
		}
	}
	if !bytes.Equal(got, data[:44*1468]) {
		t.Fatalf("%d bytes read at hand, want the first 44 blocks", len(got))
	}
	if ah.ReadAtHand(buf) {
		t.Fatal("block 45, not fetched whole, read at hand")
	}
	close(f.gate)
	rest, err := readAll(c)
	if err != nil || !bytes.Equal(rest, data[44*1468:]) {
		t.Fatalf("rest: %d bytes, %v", len(rest), err)
	}
}
