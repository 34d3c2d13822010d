// Package winmem is the window memory of a tftpgw server: the buffers that
// hold a session's window of blocks until the client acknowledges them
// (about windowsize x blksize bytes, up to 64 x 65468 = 4 MiB with the
// defaults).
//
// The rules, against a client that asks for large windows and never reads
// them, or sends requests from addresses it does not own:
//
//   - A window is taken only once the client has answered (ACK 0 of the
//     OACK): a spoofed source, which never sees the OACK's port, holds
//     none. A session without options (windowsize 1, 512-byte blocks)
//     takes its 516 bytes at once.
//   - The OACK's windowsize is the one asked for, capped to what fits in
//     the client's share and in the server's budget at that moment; a
//     client that has no room left for one block gets ERROR 0 "server
//     busy". (A window cannot start small and grow: an RFC 7440 receiver
//     acknowledges only a full window, or when its timer fires, so a
//     window smaller than the one negotiated stalls it at every window.)
//   - A client (an IPv4 address, or an IPv6 /64, which one machine owns
//     whole) holds at most its share (Pool.PerClient), and never more than
//     stays free after its window is taken: clients that answer their
//     OACKs and stall can only halve what is left, one after another, so
//     a newcomer always finds room for a window (a smaller one, as the
//     budget fills).
//   - The budget (Pool.Limit) counts every buffer the server has
//     allocated for windows: in use, and kept for reuse. Kept buffers are
//     dropped to make room, and after keepFor unused, so that the memory
//     of a burst goes back to the Go runtime.
//
// Buffers come in size classes four to a power of two (4, 5, 6, 7, 8, 10,
// ... KiB), so a buffer is at most a quarter larger than asked for; the
// budget counts the class size.
package winmem

import (
	"math"
	"math/bits"
	"net/netip"
	"sync"
	"time"
)

const (
	minClassShift = 12 // 4 KiB
	maxClassShift = 24 // classes up to 16 MiB; larger windows are not kept
	numClasses    = (maxClassShift-minClassShift)*4 + 1

	// keepFor is how long a buffer is kept for reuse after its session
	// ended.
	keepFor = 30 * time.Second
)

// SizeClass returns the class of a buffer of n bytes and the class's
// size; a class >= numClasses is not kept.
func SizeClass(n int) (int, int) {
	if n <= 1<<minClassShift {
		return 0, 1 << minClassShift
	}
	k := bits.Len(uint(n - 1)) // 2^(k-1) < n <= 2^k
	base, step := 1<<(k-1), 1<<(k-3)
	sub := (n - base + step - 1) / step // 1..4
	return (k-1-minClassShift)*4 + sub, base + sub*step
}

// ClientPrefix is what counts as one client for shares: an IPv4 address,
// or the /64 of an IPv6 address.
func ClientPrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.WithZone("").Prefix(64)
	return p
}

// keptBuf is a buffer kept for reuse.
type keptBuf struct {
	b     *[]byte
	since time.Time
}

// Pool hands out window buffers within the budget. Its zero value (with
// the limits set before first use) is ready to use; it is safe for
// concurrent use.
type Pool struct {
	// Limit bounds the bytes of every buffer allocated, in use and kept;
	// PerClient those in use by one client. <= 0: none.
	Limit, PerClient int64

	mu        sync.Mutex
	allocated int64                  // bytes of buffers in use and kept
	kept      [numClasses][]keptBuf  // per class, oldest first
	keptBytes int64                  // of allocated, the kept buffers
	clients   map[netip.Prefix]int64 // bytes in use per client
	pruned    time.Time              // last prune of the kept buffers
}

// Fit returns how many slots of slotSize bytes (up to want) a window for
// client could take now, counting the buffers kept for reuse as room.
func (p *Pool) Fit(client netip.Prefix, want, slotSize int) int {
	p.mu.Lock()
	room := p.roomLocked(client)
	p.mu.Unlock()
	// The largest n whose buffer's class fits (class sizes grow with n).
	lo, hi := 0, want
	for lo < hi {
		mid := hi - (hi-lo)/2
		if _, size := SizeClass(mid * slotSize); int64(size) <= room {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// roomLocked is how many bytes client may take now: what the budget has
// free (kept buffers count as free), within the client's share, and no
// more than would leave it holding more than stays free afterwards (x <=
// (free - held) / 2), so that clients that answer their OACKs and stall
// can halve what is left, never take it all: a newcomer always finds
// room. The caller holds p.mu.
func (p *Pool) roomLocked(client netip.Prefix) int64 {
	room := int64(math.MaxInt64)
	held := p.clients[client]
	if p.Limit > 0 {
		free := p.Limit - (p.allocated - p.keptBytes)
		room = min(free, (free-held)/2)
	}
	if p.PerClient > 0 {
		room = min(room, p.PerClient-held)
	}
	return room
}

// Get returns a buffer of length n for client, or nil if the client's
// share or the budget has no room for it.
func (p *Pool) Get(client netip.Prefix, n int, now time.Time) *[]byte {
	class, size := SizeClass(n)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.prune(now)
	if int64(size) > p.roomLocked(client) {
		return nil
	}
	var b *[]byte
	if class < numClasses {
		if k := p.kept[class]; len(k) > 0 {
			b = k[len(k)-1].b
			k[len(k)-1] = keptBuf{}
			p.kept[class] = k[:len(k)-1]
			p.keptBytes -= int64(size)
		}
	}
	if b == nil {
		for p.Limit > 0 && p.allocated+int64(size) > p.Limit && p.keptBytes > 0 {
			p.dropOldest()
		}
		if p.Limit > 0 && p.allocated+int64(size) > p.Limit {
			return nil
		}
		buf := make([]byte, n, size)
		b = &buf
		p.allocated += int64(size)
	}
	*b = (*b)[:n]
	if p.clients == nil {
		p.clients = make(map[netip.Prefix]int64)
	}
	p.clients[client] += int64(size)
	return b
}

// Put gives back a buffer that Get returned for client.
func (p *Pool) Put(client netip.Prefix, b *[]byte, now time.Time) {
	size := cap(*b)
	class, csize := SizeClass(size)
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.clients[client] - int64(size); c > 0 {
		p.clients[client] = c
	} else {
		delete(p.clients, client)
	}
	if class >= numClasses || csize != size {
		p.allocated -= int64(size)
		return
	}
	p.kept[class] = append(p.kept[class], keptBuf{b: b, since: now})
	p.keptBytes += int64(size)
	p.prune(now)
}

// prune drops the buffers kept longer than keepFor, at most once a
// second. The caller holds p.mu.
func (p *Pool) prune(now time.Time) {
	if p.keptBytes == 0 || now.Sub(p.pruned) < time.Second {
		return
	}
	p.pruned = now
	for c := range p.kept {
		k := p.kept[c]
		i := 0
		for i < len(k) && now.Sub(k[i].since) > keepFor {
			p.release(cap(*k[i].b))
			k[i] = keptBuf{}
			i++
		}
		if i > 0 {
			p.kept[c] = append(k[:0], k[i:]...)
		}
	}
}

// dropOldest drops the kept buffer that has waited longest. The caller
// holds p.mu.
func (p *Pool) dropOldest() {
	best := -1
	for c, k := range p.kept {
		if len(k) > 0 && (best < 0 || k[0].since.Before(p.kept[best][0].since)) {
			best = c
		}
	}
	if best < 0 {
		return
	}
	k := p.kept[best]
	p.release(cap(*k[0].b))
	k[0] = keptBuf{}
	p.kept[best] = k[1:]
}

// release forgets a kept buffer of size bytes. The caller holds p.mu.
func (p *Pool) release(size int) {
	p.allocated -= int64(size)
	p.keptBytes -= int64(size)
}

// Usage returns the bytes of buffers in use and kept.
func (p *Pool) Usage() (inUse, kept int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.allocated - p.keptBytes, p.keptBytes
}
