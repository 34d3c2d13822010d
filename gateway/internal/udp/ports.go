package udp

import (
	"errors"
	"math/rand/v2"
	"syscall"
)

// PortPool hands out the ports of a range, First to Last, for sessions'
// sockets (a server's port range): each port to one session at a time.
// Take and Put are O(1) and allocate nothing; the pool holds one uint16
// and one bit per port of the range.
//
// A port put back is not taken again at once: the free ports wait in the
// order they were freed, and Take chooses at random among the older half
// of them. So a port just freed is reused only after others (a late
// datagram of the session that had it then finds no socket rather than
// a new session), and the next port is not predictable from the last one,
// as the kernel's choice of ephemeral ports is not (RFC 6056).
//
// A PortPool is not safe for concurrent use: the server guards it with its
// own mutex.
type PortPool struct {
	first uint16
	size  int
	ring  []uint16 // the free ports from head, the longest free first
	head  int
	n     int      // free ports
	free  []uint64 // a bit per port of the range: set while it is in ring
}

// NewPortPool returns a pool of the ports first to last, all free. It
// panics if first is 0 or above last.
func NewPortPool(first, last uint16) *PortPool {
	if first == 0 || first > last {
		panic("udp: NewPortPool: want 0 < first <= last")
	}
	size := int(last) - int(first) + 1
	p := &PortPool{first: first, size: size, ring: make([]uint16, size), n: size, free: make([]uint64, (size+63)/64)}
	for i := range size {
		p.ring[i] = first + uint16(i)
		p.free[i/64] |= 1 << (i % 64)
	}
	// A random start: two servers with the same range do not start on
	// the same port.
	rand.Shuffle(size, func(i, j int) { p.ring[i], p.ring[j] = p.ring[j], p.ring[i] })
	return p
}

// Size is the number of ports of the range.
func (p *PortPool) Size() int { return p.size }

// Free is the number of ports free now.
func (p *PortPool) Free() int { return p.n }

// Take takes a free port; ok is false when every port is taken.
func (p *PortPool) Take() (port uint16, ok bool) {
	if p.n == 0 {
		return 0, false
	}
	// One of the older half, swapped to the head and taken from there.
	i := (p.head + rand.IntN((p.n+1)/2)) % p.size
	p.ring[i], p.ring[p.head] = p.ring[p.head], p.ring[i]
	port = p.ring[p.head]
	p.head = (p.head + 1) % p.size
	p.n--
	k := int(port - p.first)
	p.free[k/64] &^= 1 << (k % 64)
	return port, true
}

// Put gives back a port that Take returned, behind the other free ports.
// A port of another range, or one already free, is ignored, so that the
// pool never holds a port twice.
func (p *PortPool) Put(port uint16) {
	k := int(port) - int(p.first)
	if k < 0 || k >= p.size || p.free[k/64]&(1<<(k%64)) != 0 {
		return
	}
	p.free[k/64] |= 1 << (k % 64)
	p.ring[(p.head+p.n)%p.size] = port
	p.n++
}

// AddrInUse reports whether err is a bind's EADDRINUSE: another socket
// holds the address and port.
func AddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }
