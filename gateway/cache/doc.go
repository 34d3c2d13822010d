// Package cache is an edge cache for hot TFTP content: a [gateway.Handler]
// middleware that keeps recently served files in memory and makes
// concurrent sessions for the same file share one read of it, so that a
// fleet booting the same kernel costs the backend one read, not a
// thousand.
//
//	h := &cache.Handler{Next: backendHandler, MaxBytes: 512 << 20}
//	srv := &gateway.Server{Addr: ":69", Handler: h}
//
// # What is cached
//
// Entries are keyed by the request's normalised path ([gateway.Request.Path])
// alone: the bytes of a content do not depend on the transfer mode (the
// server does the netascii conversion). A content is cacheable when it
// implements [gateway.InfoContent] with a non-empty ETag, its Size is
// known, and it is no larger than [Handler.MaxEntryBytes]. Any other
// content, and every error, is passed through untouched, and a session
// reading it sees exactly what Next returned.
//
// The content's MaxAge says how the cached bytes may be reused:
//
//   - MaxAge > 0: the entry is fresh for MaxAge after the header arrived.
//     While it is fresh, requests for its path are served from memory
//     without calling Next at all. This is how a backend says that a path
//     serves the same bytes to every client. Once it is stale the next
//     request calls Next again; an unchanged ETag makes the entry fresh
//     again without reading the content a second time.
//   - MaxAge == 0: every request calls Next (the content may differ per
//     client), and the cached bytes are served only when the new content
//     has the entry's ETag, which by the [gateway.ContentInfo] contract means
//     the same bytes; the new content is then closed unread. Otherwise the
//     new content replaces the entry. This suits [gateway.FileServer], whose
//     ETag is the file's size and modification time and whose content is
//     opened but not read by Next: a rewritten file is served at once, and
//     an unchanged one costs one stat on a local filesystem, where
//     FileServer can tell a file's size and ETag without opening it (the
//     cache asks that first when an entry exists, and calls Next only
//     when the versions differ or the stat cannot tell), and an open and
//     a stat on NFS and other network filesystems, where only an open is
//     sure to see a change made by another host. With such a Next (a
//     [gateway.StatHandler]), a request that arrived ([gateway.Request.At])
//     before a revalidation of its path began (a stat, or the call of Next
//     that fetched or confirmed the entry) is served what that found,
//     without one of its own: it sees a version of a moment after it
//     arrived, as its own would have shown, and in a burst a rack's
//     requests queued behind one another cost one stat, not one each.
//     Content whose MaxAge is negative is never shared that way. It is also safe for
//     content rendered per client (the ETag of a rendered template is a hash
//     of its output), which is simply replaced more often. Through
//     gateway/remote, every such request still makes a backend call, which
//     the backend may read ahead of (up to one HTTP/2 stream window) before
//     the cache cancels it; set [Handler.DefaultMaxAge] or have the backend
//     send a max age to avoid that. Such content larger than 4 MiB is
//     cached from its second request on (with the same ETag): a kernel
//     fetched once streams from its source, whose page cache serves it
//     without the copy into fresh memory that would halve a lone
//     transfer's speed.
//
// # Sharing one read
//
// A cacheable content is read once, by a fetch goroutine owned by the
// cache, into a buffer of its declared size; every session for that
// version (the one that started it, and those that join later) reads from
// that buffer as the bytes arrive, so none waits for the whole file before
// its first block. While the first request for a path waits for Next's
// answer (the backend's header), other requests for the path wait for it
// instead of calling Next themselves; if the answer is not shareable they
// then call Next on their own.
//
// The fetch is not tied to the session that started it: Next is called
// with a context that keeps the session's values but is cancelled only by
// the cache (and by the session, until the content turns out to be
// cacheable). If every session reading an unfinished fetch goes away (a
// UEFI size probe, say) the fetch still completes into the cache, so that
// the client's real download that follows is a hit; it is cancelled when
// its entry is evicted or replaced while nobody reads it. If the fetch
// fails (a read error, or a content shorter or longer than its declared
// size), every session reading it gets that error, which the server sends
// as the TFTP error [gateway.ErrorFor] chooses, and the entry is dropped:
// the next request starts again.
//
// # Memory
//
// MaxBytes bounds the bytes of all the buffers the cache holds: the
// entries in the cache, unfinished ones included, and those that sessions
// are still reading after their entry was evicted or replaced. Entries are
// evicted least recently used first, but never while a session reads them
// or while they are being fetched; when no room can be made, the content
// is passed through uncached. Eviction only forgets an entry: its buffer is
// never modified, and goes away with its last reader.
//
// [Handler.Stats] counts hits, joins, misses and bytes; [Handler.Collector]
// exports them as Prometheus metrics (tftpgw_cache_*).
package cache
