package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
)

// DefaultMaxBytes is the memory bound used when [Handler.MaxBytes] is zero.
const DefaultMaxBytes = 512 << 20

// entryOverhead is the bookkeeping charged to every entry besides its
// bytes and key, so that many tiny files still respect MaxBytes.
const entryOverhead = 256

// readChunk is the most a fetch reads from its content at once, so that
// the bytes of a local file reach the readers as they come.
const readChunk = 256 << 10

// maxEmptyReads is how many (0, nil) reads in a row a fetch tolerates.
const maxEmptyReads = 100

var (
	errClosed    = errors.New("cache: content closed")
	errAbandoned = errors.New("cache: fetch abandoned (entry dropped, no reader left)")
	errShutdown  = errors.New("cache: handler closed")
	errRevalid   = errors.New("cache: served from cache")
)

// Handler is a [gateway.Handler] that caches the content of Next in
// memory and shares one read of it among concurrent sessions; see the
// package documentation for the rules. Set the fields before the first
// request and do not change them afterwards. The zero value (with Next
// set) caches up to [DefaultMaxBytes]. A Handler must not be copied after
// first use.
type Handler struct {
	// Next answers the requests the cache cannot serve from memory.
	Next gateway.Handler

	// MaxBytes bounds the memory of the cached contents (see the package
	// documentation); DefaultMaxBytes if zero. A negative value turns the
	// cache off: every request goes to Next.
	MaxBytes int64

	// MaxEntryBytes is the size of the largest content cached; MaxBytes/4
	// if zero or larger than MaxBytes. Larger contents are passed through,
	// each session reading its own.
	MaxEntryBytes int64

	// DefaultMaxAge, if positive, is the freshness given to contents that
	// have an ETag but no MaxAge (zero, not negative: a negative MaxAge is
	// the source saying explicitly that the content must be asked for
	// every time, see gateway.ContentInfo): such an entry is then served
	// without calling Next until it is that old. Leave it zero unless every
	// path of Next that does not say so serves the same bytes to every
	// client (per-client templates behind Next would be served to the
	// wrong clients).
	DefaultMaxAge time.Duration

	// Logger receives failed fetches (warn) and fetches and evictions
	// (debug); slog.Default() if nil.
	Logger *slog.Logger

	mu      sync.Mutex
	entries map[string]*entry
	pending map[string]chan struct{} // path -> closed when its first Next returned
	seen    map[string]string        // path -> ETag of revalidated content requested once
	lru     list.List                // of *entry, most recently used first
	bytes   int64                    // charged to the entries in memory
	closed  bool
	fetches sync.WaitGroup
	st      Stats // the counters guarded by mu

	bytesServed  atomic.Int64
	bytesFetched atomic.Int64

	readHook func(*reader) // tests only: called by reader.Read between its loads of state and avail
}

var _ gateway.Handler = (*Handler)(nil)

// Stats are the counters of a [Handler]; the counts are totals since the
// handler was created.
type Stats struct {
	Hits          int64 // sessions served a complete entry
	Joins         int64 // sessions that joined a fetch in progress
	Misses        int64 // sessions that started a fetch of cacheable content
	Revalidations int64 // of Hits and Joins, those that asked Next (or its StatContent) and found the same ETag
	Passes        int64 // sessions passed through: content not cacheable, too large, or no room
	FetchErrors   int64 // fetches that failed; their readers got the error
	Evictions     int64 // entries dropped to make room (not counting replaced ones)

	BytesFetched int64 // bytes read from Next's contents by fetches
	BytesServed  int64 // bytes read from the cache by sessions that ended

	Bytes   int64 // memory charged now: entries (in progress too) and buffers still read
	Entries int   // entries in the cache now
}

// Stats returns the current counters. It is safe to call at any time.
func (h *Handler) Stats() Stats {
	h.mu.Lock()
	s := h.st
	s.Bytes = h.bytes
	s.Entries = len(h.entries)
	h.mu.Unlock()
	s.BytesFetched = h.bytesFetched.Load()
	s.BytesServed = h.bytesServed.Load()
	return s
}

// entry is one version of one path.
type entry struct {
	key  string
	info gateway.ContentInfo
	size int64
	cost int64
	buf  []byte // written by the fetch below avail, never after

	// Guarded by Handler.mu.
	expires time.Time // zero: revalidate on every request
	// confirmed is when the latest call of Next or stat that found this
	// version began: a request that arrived before it (Request.At) is
	// served this version without a revalidation of its own.
	confirmed time.Time
	elem      *list.Element // nil once out of the cache
	readers   int
	fetching  bool
	charged   bool // cost is counted in Handler.bytes
	cancel    context.CancelCauseFunc

	avail atomic.Int64 // bytes of buf filled
	state atomic.Int32 // stateFetching, stateDone or stateFailed

	mu   sync.Mutex
	err  error         // set before state becomes stateFailed
	wake chan struct{} // closed and replaced at every change
}

const (
	stateFetching int32 = iota
	stateDone
	stateFailed
)

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

func (h *Handler) maxBytes() int64 {
	if h.MaxBytes == 0 {
		return DefaultMaxBytes
	}
	return h.MaxBytes
}

func (h *Handler) maxEntry() int64 {
	m := h.maxBytes()
	if h.MaxEntryBytes <= 0 || h.MaxEntryBytes > m {
		return m / 4
	}
	return h.MaxEntryBytes
}

// ServeTFTP implements [gateway.Handler]: it serves a fresh entry from
// memory, joins a fetch in progress, or calls Next and caches its content
// when it may.
func (h *Handler) ServeTFTP(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
	if h.Next == nil {
		return nil, errors.New("cache: Handler.Next is nil")
	}
	if h.maxBytes() < 0 {
		return h.Next.ServeTFTP(ctx, req)
	}
	key := req.Path
	waited, statted := false, false
	st, canStat := h.Next.(gateway.StatHandler)
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return h.Next.ServeTFTP(ctx, req)
		}
		e := h.entries[key]
		if e != nil && (e.fresh(time.Now()) || canStat && e.confirmedSince(req.At)) {
			r := h.attachLocked(e, ctx, false)
			h.mu.Unlock()
			return r, nil
		}
		if canStat && e != nil && !statted {
			// A cached version that must be revalidated, from a Next that
			// can tell its content's version without opening it.
			h.mu.Unlock()
			statted = true
			if r := h.revalidateByStat(ctx, req, st, e); r != nil {
				return r, nil
			}
			continue
		}
		ch, busy := h.pending[key]
		if busy && !waited {
			// Another session asked Next for this path: its answer may be
			// shareable.
			h.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
			waited = true
			continue
		}
		var lead chan struct{}
		if !busy && (e == nil || !e.expires.IsZero()) {
			// Nothing cached, or an entry with a max age that expired:
			// the answer may be shareable, so let others wait for it. An
			// entry without a max age is revalidated by every request on
			// its own.
			lead = make(chan struct{})
			if h.pending == nil {
				h.pending = make(map[string]chan struct{})
			}
			h.pending[key] = lead
		}
		h.mu.Unlock()
		return h.open(ctx, req, lead)
	}
}

// revalidateByStat serves e when st says that it is still the version of
// req's content, as open does when Next's content has e's ETag; nil when
// it is not, or st cannot tell (Next is then called).
func (h *Handler) revalidateByStat(ctx context.Context, req *gateway.Request, st gateway.StatHandler, e *entry) *reader {
	began := time.Now()
	size, info, err := st.StatContent(ctx, req)
	if err != nil || info.ETag == "" {
		return nil
	}
	maxAge := h.maxAge(info)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.entries[req.Path] != e || e.info.ETag != info.ETag || e.size != size || e.state.Load() == stateFailed {
		return nil
	}
	e.expires = expiry(time.Now(), maxAge)
	e.confirm(began)
	return h.attachLocked(e, ctx, true)
}

// open calls Next and serves its content: from the cache when it is the
// cached version, through a new fetch when it is cacheable, as it is
// otherwise. lead, if not nil, is closed (and removed from pending) once
// the outcome is in the cache.
func (h *Handler) open(ctx context.Context, req *gateway.Request, lead chan struct{}) (gateway.Content, error) {
	key := req.Path
	resolveLocked := func() {
		if lead != nil {
			if h.pending[key] == lead {
				delete(h.pending, key)
			}
			close(lead)
			lead = nil
		}
	}
	resolve := func() {
		h.mu.Lock()
		resolveLocked()
		h.mu.Unlock()
	}
	defer func() {
		if lead != nil { // Next panicked: let the waiters go
			resolve()
		}
	}()

	// The content may outlive the session (a shared fetch), so Next gets a
	// context of the cache's own, tied to the session's until the content
	// turns out to be cacheable.
	fctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	began := time.Now()
	c, err := h.Next.ServeTFTP(fctx, req)
	if err != nil || c == nil {
		resolve()
		stop()
		cancel(err)
		return c, err
	}

	var info gateway.ContentInfo
	if ic, ok := c.(gateway.InfoContent); ok {
		info = ic.Info()
	}
	size := c.Size()
	if info.ETag == "" || size < 0 || size > h.maxEntry() {
		h.mu.Lock()
		h.st.Passes++
		resolveLocked()
		h.mu.Unlock()
		return c, nil // fctx ends with the session, like ctx
	}
	maxAge := h.maxAge(info)

	h.mu.Lock()
	if h.closed {
		h.st.Passes++
		resolveLocked()
		h.mu.Unlock()
		return c, nil
	}
	now := time.Now()
	if e := h.entries[key]; e != nil && e.info.ETag == info.ETag && e.size == size && e.state.Load() != stateFailed {
		// The cached version: serve it and drop the new content unread.
		e.expires = expiry(now, maxAge)
		e.confirm(began)
		r := h.attachLocked(e, ctx, true)
		resolveLocked()
		h.mu.Unlock()
		stop()
		c.Close()
		cancel(errRevalid)
		return r, nil
	}
	if maxAge <= 0 && size > secondRequestBytes && !h.seenBeforeLocked(key, info.ETag) {
		// Large content revalidated on every request (a kernel in a local
		// directory) is cached from its second request on: a file read
		// once streams straight from its source, which has a page cache of
		// its own, without first being copied into fresh memory (which
		// halves the speed of a lone 100 MiB transfer).
		h.st.Passes++
		resolveLocked()
		h.mu.Unlock()
		return c, nil
	}
	key = strings.Clone(key) // kept: not a view of the request's packet
	e := &entry{
		key:       key,
		info:      info,
		size:      size,
		cost:      size + int64(len(key)) + entryOverhead,
		expires:   expiry(now, maxAge),
		confirmed: began,
		wake:      make(chan struct{}),
	}
	if old := h.entries[key]; old != nil {
		h.removeLocked(old) // a new version replaces it
	}
	if !h.makeRoomLocked(e.cost) {
		h.st.Passes++
		resolveLocked()
		h.mu.Unlock()
		h.logger().Debug("cache full of entries in use; content passed through", "path", key, "size", size)
		return c, nil
	}
	if !stop() {
		// The session ended while Next answered: nobody wants this yet.
		resolveLocked()
		h.mu.Unlock()
		c.Close()
		return nil, context.Cause(ctx)
	}
	e.elem = h.lru.PushFront(e)
	e.charged = true
	e.fetching = true
	e.cancel = cancel
	h.bytes += e.cost
	if h.entries == nil {
		h.entries = make(map[string]*entry)
	}
	h.entries[key] = e
	h.st.Misses++
	r := h.readerLocked(e, ctx)
	h.fetches.Add(1)
	resolveLocked()
	h.mu.Unlock()
	h.logger().Debug("cache fetch", "path", key, "size", size, "etag", info.ETag, "max_age", maxAge)
	go h.fetch(e, c, fctx, cancel)
	return r, nil
}

// maxSeen bounds the paths remembered as requested once;
// secondRequestBytes is the size above which revalidated content waits
// for its second request to be cached.
const (
	maxSeen            = 4096
	secondRequestBytes = 4 << 20
)

// seenBeforeLocked reports whether key was requested before with this
// ETag, and remembers it if not. The caller holds h.mu.
func (h *Handler) seenBeforeLocked(key, etag string) bool {
	if h.seen[key] == etag {
		return true
	}
	if h.seen == nil || len(h.seen) >= maxSeen {
		h.seen = make(map[string]string)
	}
	h.seen[strings.Clone(key)] = etag
	return false
}

// maxAge is the freshness of a content with info: its MaxAge, or
// DefaultMaxAge for one that has none (not one that refuses any).
func (h *Handler) maxAge(info gateway.ContentInfo) time.Duration {
	if info.MaxAge == 0 {
		return h.DefaultMaxAge
	}
	return max(info.MaxAge, 0)
}

func expiry(now time.Time, maxAge time.Duration) time.Time {
	if maxAge <= 0 {
		return time.Time{}
	}
	return now.Add(maxAge)
}

// fresh reports whether e may be served without calling Next. Call it
// with Handler.mu held.
func (e *entry) fresh(now time.Time) bool {
	return e.elem != nil && !e.expires.IsZero() && now.Before(e.expires) && e.state.Load() != stateFailed
}

// confirmedSince reports whether a revalidation of e (a call of Next or a
// stat that found its version) began after at, a request's arrival: the
// request may then be served e as if it had made that revalidation
// itself, since it sees the version of a moment after it arrived, as it
// would from its own. In a burst (a rack booting) the requests that
// queued while one of them was answered then cost one revalidation, not
// one each. An unknown arrival (zero) never is, nor is content that its
// source said differs per client or per request (a negative MaxAge).
// Only for a Next that is a gateway.StatHandler, whose content is the
// path's, whoever asks. Call it with Handler.mu held.
func (e *entry) confirmedSince(at time.Time) bool {
	return !at.IsZero() && e.elem != nil && e.info.MaxAge >= 0 && at.Before(e.confirmed) && e.state.Load() != stateFailed
}

// confirm records a revalidation of e that began at began. Call it with
// Handler.mu held.
func (e *entry) confirm(began time.Time) {
	if began.After(e.confirmed) {
		e.confirmed = began
	}
}

// attachLocked returns a new reader of e for a session and counts it as
// a hit or a join (the session that starts a fetch is counted by the
// caller). revalidated tells that the session called Next and found e's
// ETag.
func (h *Handler) attachLocked(e *entry, ctx context.Context, revalidated bool) *reader {
	r := h.readerLocked(e, ctx)
	if e.state.Load() == stateDone {
		h.st.Hits++
	} else {
		h.st.Joins++
	}
	if revalidated {
		h.st.Revalidations++
	}
	return r
}

// readerLocked returns a new reader of e.
func (h *Handler) readerLocked(e *entry, ctx context.Context) *reader {
	e.readers++
	if e.elem != nil {
		h.lru.MoveToFront(e.elem)
	}
	return &reader{h: h, e: e, ctx: ctx, closed: make(chan struct{})}
}

// removeLocked takes e out of the cache. A fetch nobody reads is
// cancelled; the buffer is released with its last reader.
func (h *Handler) removeLocked(e *entry) {
	if e.elem == nil {
		return
	}
	h.lru.Remove(e.elem)
	e.elem = nil
	if h.entries[e.key] == e {
		delete(h.entries, e.key)
	}
	if e.fetching && e.readers == 0 {
		e.cancel(errAbandoned)
	}
	h.releaseLocked(e)
}

// releaseLocked uncharges e once it is out of the cache and unused.
func (h *Handler) releaseLocked(e *entry) {
	if e.charged && e.elem == nil && e.readers == 0 && !e.fetching {
		e.charged = false
		h.bytes -= e.cost
	}
}

// makeRoomLocked evicts unused entries, least recently used first, until
// cost more bytes fit. It reports whether they do.
func (h *Handler) makeRoomLocked(cost int64) bool {
	limit := h.maxBytes()
	if cost > limit {
		return false
	}
	for el := h.lru.Back(); el != nil && h.bytes+cost > limit; {
		prev := el.Prev()
		if e := el.Value.(*entry); e.readers == 0 && !e.fetching {
			h.removeLocked(e)
			h.st.Evictions++
			h.logger().Debug("cache eviction", "path", e.key, "size", e.size)
		}
		el = prev
	}
	return h.bytes+cost <= limit
}

// fetch reads c into e's buffer and then settles e.
func (h *Handler) fetch(e *entry, c gateway.Content, ctx context.Context, cancel context.CancelCauseFunc) {
	defer h.fetches.Done()
	e.buf = make([]byte, e.size) // readers look at it once bytes are published
	adviseHugePages(e.buf)       // a hint: a refusal changes nothing
	err := h.fill(e, c)
	cause := context.Cause(ctx) // set if the cache cancelled the fetch
	c.Close()
	cancel(errors.New("cache: fetch ended"))

	h.mu.Lock()
	e.fetching = false
	if err != nil {
		h.st.FetchErrors++
		h.removeLocked(e) // before the error shows, so nobody new joins
	}
	e.mu.Lock()
	if err != nil {
		e.err = err
		e.state.Store(stateFailed)
	} else {
		e.state.Store(stateDone)
	}
	close(e.wake)
	e.wake = make(chan struct{})
	e.mu.Unlock()
	h.releaseLocked(e)
	h.mu.Unlock()

	switch {
	case err == nil:
		h.logger().Debug("cache fetch done", "path", e.key, "size", e.size)
	case cause != nil:
		h.logger().Debug("cache fetch cancelled", "path", e.key, "cause", cause, "err", err)
	default:
		h.logger().Warn("cache fetch failed", "path", e.key, "etag", e.info.ETag,
			"received", e.avail.Load(), "size", e.size, "err", err)
	}
}

// fill reads exactly e.size bytes of c into e.buf, publishing them as they
// arrive, and checks that c ends there.
func (h *Handler) fill(e *entry, c gateway.Content) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("cache: panic reading %q: %v", e.key, v)
		}
	}()
	var n int64
	empty := 0
	for n < e.size {
		m, err := c.Read(e.buf[n:min(n+readChunk, e.size)])
		if m > 0 {
			n += int64(m)
			h.bytesFetched.Add(int64(m))
			e.publish(n)
			empty = 0
		}
		switch {
		case err == io.EOF:
			if n < e.size {
				return fmt.Errorf("cache: %q ended at byte %d of its size %d", e.key, n, e.size)
			}
		case err != nil:
			return err
		case m == 0:
			if empty++; empty > maxEmptyReads {
				return io.ErrNoProgress
			}
		}
	}
	var one [1]byte
	for range maxEmptyReads {
		m, err := c.Read(one[:])
		switch {
		case m > 0:
			return fmt.Errorf("cache: %q is longer than its size %d", e.key, e.size)
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		}
	}
	return io.ErrNoProgress
}

// publish makes the first n bytes of buf readable.
func (e *entry) publish(n int64) {
	e.avail.Store(n)
	e.mu.Lock()
	close(e.wake)
	e.wake = make(chan struct{})
	e.mu.Unlock()
}

// Close cancels the fetches in progress, waits for them to end and empties
// the cache. Later requests are passed to Next. Sessions still reading the
// cache get an error if their entry was not complete.
func (h *Handler) Close() error {
	h.mu.Lock()
	h.closed = true
	for el := h.lru.Front(); el != nil; {
		next := el.Next()
		e := el.Value.(*entry)
		if e.fetching {
			e.cancel(errShutdown)
		}
		h.removeLocked(e)
		el = next
	}
	h.mu.Unlock()
	h.fetches.Wait()
	return nil
}

// reader is the content a session reads from an entry.
type reader struct {
	h      *Handler
	e      *entry
	ctx    context.Context // the session's
	off    int64
	served int64 // bytes read, added to the handler's count on Close
	closed chan struct{}
	once   sync.Once
}

var (
	_ gateway.InfoContent   = (*reader)(nil)
	_ gateway.AtHandContent = (*reader)(nil)
	_ io.Seeker             = (*reader)(nil)
)

// Read copies the next bytes of the entry, waiting for the fetch when it
// has not got them yet. It returns the fetch's error if the fetch failed.
func (r *reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	e := r.e
	for {
		// The state before avail: a fetch publishes its last bytes before
		// it settles, so a state seen as done or failed comes with every
		// byte the fetch published. The other order could see the avail of
		// a moment before the last bytes and the state of a moment after,
		// and end a reader that had caught up with the fetch with io.EOF
		// short of the size: a truncated file served as a complete one.
		st := e.state.Load()
		if hook := r.h.readHook; hook != nil {
			hook(r)
		}
		if n := e.avail.Load(); r.off < n {
			m := copy(p, e.buf[r.off:n])
			r.off += int64(m)
			r.served += int64(m)
			return m, nil
		}
		switch st {
		case stateDone:
			return 0, io.EOF
		case stateFailed:
			e.mu.Lock()
			err := e.err
			e.mu.Unlock()
			return 0, err
		}
		e.mu.Lock()
		wake := e.wake
		e.mu.Unlock()
		if r.off < e.avail.Load() || e.state.Load() != stateFetching {
			continue
		}
		select {
		case <-wake:
		case <-r.ctx.Done():
			return 0, context.Cause(r.ctx)
		case <-r.closed:
			return 0, errClosed
		}
	}
}

// ReadAtHand fills p with the entry's next bytes if the fetch has them
// already, without waiting (see gateway.AtHandContent).
func (r *reader) ReadAtHand(p []byte) bool {
	e := r.e
	if e.avail.Load()-r.off < int64(len(p)) {
		return false
	}
	n := copy(p, e.buf[r.off:])
	r.off += int64(n)
	r.served += int64(n)
	return true
}

// Seek implements io.Seeker.
func (r *reader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.e.size
	default:
		return 0, errors.New("cache: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("cache: negative position")
	}
	r.off = offset
	return offset, nil
}

// Size returns the content's size.
func (r *reader) Size() int64 { return r.e.size }

// Info returns the ETag and MaxAge of the content as Next returned it.
func (r *reader) Info() gateway.ContentInfo { return r.e.info }

// Close releases the entry. A fetch that nobody reads any more goes on
// while its entry is in the cache.
func (r *reader) Close() error {
	r.once.Do(func() {
		close(r.closed)
		h, e := r.h, r.e
		h.bytesServed.Add(r.served)
		h.mu.Lock()
		e.readers--
		if e.readers == 0 && e.fetching && e.elem == nil {
			e.cancel(errAbandoned)
		}
		h.releaseLocked(e)
		h.mu.Unlock()
	})
	return nil
}

// Middleware returns h as a [gateway.Middleware]: wrapping a handler sets
// h.Next to it and returns h, so that h answers what it has cached and
// asks the wrapped handler for the rest. Set h's other fields first; wrap
// one handler only.
func (h *Handler) Middleware() gateway.Middleware {
	return func(next gateway.Handler) gateway.Handler {
		h.Next = next
		return h
	}
}
