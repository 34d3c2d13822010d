package udp

import (
	"net"
	"net/netip"
	"testing"
)

// takeAll takes every free port of p and returns them in the order taken.
func takeAll(t *testing.T, p *PortPool) []uint16 {
	t.Helper()
	var got []uint16
	for range p.Size() + 1 { // bounded: one more than the pool can give
		port, ok := p.Take()
		if !ok {
			return got
		}
		got = append(got, port)
	}
	t.Fatalf("took more than the %d ports of the pool: %v", p.Size(), got)
	return nil
}

// TestPortPoolTakesEachPortOnce: every port of the range is handed out
// once until it is put back, and none outside it.
func TestPortPoolTakesEachPortOnce(t *testing.T) {
	for _, tc := range []struct{ first, last uint16 }{{50000, 50003}, {7, 7}, {1, 130}, {65500, 65535}} {
		p := NewPortPool(tc.first, tc.last)
		size := int(tc.last-tc.first) + 1
		if p.Size() != size || p.Free() != size {
			t.Fatalf("%d-%d: size %d free %d, want %d", tc.first, tc.last, p.Size(), p.Free(), size)
		}
		seen := map[uint16]bool{}
		for _, port := range takeAll(t, p) {
			if port < tc.first || port > tc.last || seen[port] {
				t.Fatalf("%d-%d: port %d outside the range or taken twice", tc.first, tc.last, port)
			}
			seen[port] = true
		}
		if len(seen) != size || p.Free() != 0 {
			t.Fatalf("%d-%d: %d ports taken, %d free; want %d, 0", tc.first, tc.last, len(seen), p.Free(), size)
		}
		for port := range seen {
			p.Put(port)
		}
		if p.Free() != size {
			t.Fatalf("%d-%d: %d free after putting every port back, want %d", tc.first, tc.last, p.Free(), size)
		}
	}
}

// TestPortPoolPutIgnoresStrangers: putting back a port that is free
// already, or one outside the range, changes nothing: the pool never hands
// out a port twice.
func TestPortPoolPutIgnoresStrangers(t *testing.T) {
	p := NewPortPool(100, 103)
	port, _ := p.Take()
	p.Put(port)
	p.Put(port)     // twice
	p.Put(99)       // below
	p.Put(104)      // above
	p.Put(0)        // zero
	p.Put(port + 1) // another, free already (or 104: outside)
	if p.Free() != 4 {
		t.Fatalf("free %d, want 4", p.Free())
	}
	seen := map[uint16]bool{}
	for _, port := range takeAll(t, p) {
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
	}
	if len(seen) != 4 {
		t.Fatalf("%d ports handed out, want 4", len(seen))
	}
}

// TestPortPoolRotates: a port just put back is not the next one taken
// while other ports are free (a late datagram of its last session must not
// reach a new one), and over many rounds every port is used.
func TestPortPoolRotates(t *testing.T) {
	p := NewPortPool(2000, 2007)
	used := map[uint16]int{}
	port, _ := p.Take()
	for range 1000 {
		p.Put(port)
		next, ok := p.Take()
		if !ok {
			t.Fatal("no port free")
		}
		if next == port {
			t.Fatalf("port %d taken again at once with %d others free", port, p.Free())
		}
		used[next]++
		port = next
	}
	if len(used) != 8 {
		t.Errorf("ports used over 1000 rounds: %v, want all 8", used)
	}
	// With one other port taken the rule holds too: two free, the one
	// freed last waits.
	q := NewPortPool(10, 12)
	a, _ := q.Take()
	b, _ := q.Take()
	for range 100 {
		q.Put(b)
		c, _ := q.Take()
		if c == b {
			t.Fatalf("port %d taken again at once", b)
		}
		b = c
	}
	q.Put(a)
}

// TestPortPoolIsNotPredictable: the order is random: two pools, or two
// rounds of one, do not hand out the same sequence every time.
func TestPortPoolIsNotPredictable(t *testing.T) {
	first := map[uint16]bool{}
	for range 100 {
		port, _ := NewPortPool(3000, 3999).Take()
		first[port] = true
	}
	if len(first) < 10 {
		t.Errorf("100 new pools started on only %d ports", len(first))
	}
}

// TestPortPoolAllocs: Take and Put allocate nothing.
func TestPortPoolAllocs(t *testing.T) {
	p := NewPortPool(40000, 40063)
	if n := testing.AllocsPerRun(1000, func() {
		port, _ := p.Take()
		p.Put(port)
	}); n != 0 {
		t.Errorf("%v allocations per Take and Put, want 0", n)
	}
}

// TestNewPortPoolRefusesBadRanges: a range starting at 0 or inverted is a
// programming error.
func TestNewPortPoolRefusesBadRanges(t *testing.T) {
	for _, r := range [][2]uint16{{0, 5}, {10, 9}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewPortPool(%d, %d) did not panic", r[0], r[1])
				}
			}()
			NewPortPool(r[0], r[1])
		}()
	}
}

// TestListenSessionPort: the session's socket has the port asked for, on
// the request's address; a port another socket holds there is an error
// that AddrInUse recognises, and a port the kernel picks is still
// available (port 0).
func TestListenSessionPort(t *testing.T) {
	for _, tc := range []struct{ network, local, client string }{
		{"udp4", "127.0.0.1", "127.0.0.1:9"},
		{"udp6", "::1", "[::1]:9"},
	} {
		t.Run(tc.network, func(t *testing.T) {
			hold, err := net.ListenUDP(tc.network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(tc.local), 0)))
			if err != nil {
				t.Skipf("no %s loopback: %v", tc.network, err)
			}
			defer hold.Close()
			held := hold.LocalAddr().(*net.UDPAddr).AddrPort().Port()
			local, client := netip.MustParseAddr(tc.local), netip.MustParseAddrPort(tc.client)

			_, _, err = ListenSessionPort(local, client, held)
			if err == nil || !AddrInUse(err) {
				t.Fatalf("port %d held by another socket: err %v, want EADDRINUSE", held, err)
			}

			// A port that is free: the one just released by a probe socket.
			probe, err := net.ListenUDP(tc.network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
			if err != nil {
				t.Fatal(err)
			}
			free := probe.LocalAddr().(*net.UDPAddr).AddrPort().Port()
			probe.Close()
			c, _, err := ListenSessionPort(local, client, free)
			if err != nil {
				t.Fatalf("free port %d: %v", free, err)
			}
			got := c.(interface{ LocalAddr() net.Addr }).LocalAddr().(*net.UDPAddr).AddrPort()
			c.Close()
			if got != netip.AddrPortFrom(local, free) {
				t.Errorf("socket on %v, want %v", got, netip.AddrPortFrom(local, free))
			}
			if AddrInUse(nil) {
				t.Error("AddrInUse(nil)")
			}
		})
	}
}
