package winmem

import (
	"net/netip"
	"testing"
	"time"
)

func TestSizeClassIsAtMostAQuarterLarger(t *testing.T) {
	prevClass, prevSize := 0, 0
	for n := 1; n <= 20<<20; n += 1 + n/997 {
		class, size := SizeClass(n)
		if size < n || n > 4096 && size > n+n/4 {
			t.Fatalf("SizeClass(%d) = %d: not in [n, 1.25n]", n, size)
		}
		if class < prevClass || size < prevSize {
			t.Fatalf("SizeClass(%d) = %d, %d after %d, %d: not monotonic", n, class, size, prevClass, prevSize)
		}
		if c2, s2 := SizeClass(size); c2 != class || s2 != size {
			t.Fatalf("SizeClass(%d) = %d, %d; its size's class is %d, %d", n, class, size, c2, s2)
		}
		prevClass, prevSize = class, size
	}
	if c, _ := SizeClass(16 << 20); c != numClasses-1 {
		t.Errorf("16 MiB is class %d, want the last kept one (%d)", c, numClasses-1)
	}
}

func TestClientPrefix(t *testing.T) {
	for _, tc := range []struct{ a, want string }{
		{"192.0.2.7", "192.0.2.7/32"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
	} {
		if got := ClientPrefix(netip.MustParseAddr(tc.a)); got.String() != tc.want {
			t.Errorf("ClientPrefix(%s) = %s, want %s", tc.a, got, tc.want)
		}
	}
}

func TestWindowPoolAccounting(t *testing.T) {
	const mib = 1 << 20
	a := ClientPrefix(netip.MustParseAddr("2001:db8::1"))
	a2 := ClientPrefix(netip.MustParseAddr("2001:db8::2")) // the same /64
	b := ClientPrefix(netip.MustParseAddr("192.0.2.1"))
	c := ClientPrefix(netip.MustParseAddr("192.0.2.2"))
	d := ClientPrefix(netip.MustParseAddr("192.0.2.3"))
	e := ClientPrefix(netip.MustParseAddr("192.0.2.4"))
	p := &Pool{Limit: 12 * mib, PerClient: 4 * mib}
	now := time.Unix(1000, 0)
	usage := func(wantInUse, wantKept int64) {
		t.Helper()
		if in, kept := p.Usage(); in != wantInUse || kept != wantKept {
			t.Errorf("usage %d, %d; want %d in use, %d kept", in, kept, wantInUse, wantKept)
		}
	}

	if n := p.Fit(a, 64, 65468); n != 64 {
		t.Errorf("fit = %d, want 64 (4 MiB class)", n)
	}
	x := p.Get(a, 64*65468, now)
	if x == nil || cap(*x) != 4*mib || len(*x) != 64*65468 {
		t.Fatalf("get: %v", x)
	}
	if n := p.Fit(a2, 64, 65468); n != 0 {
		t.Errorf("fit for the same /64 = %d, want 0: its share is used", n)
	}
	if p.Get(a2, 1000, now) != nil {
		t.Error("get beyond the client's share succeeded")
	}
	y := p.Get(b, 3*mib, now)
	if y == nil {
		t.Fatal("get for another client failed")
	}
	usage(7*mib, 0)
	// 5 MiB free; b holds 3: its share leaves 1 MiB (and (5-3)/2 = 1).
	if n := p.Fit(b, 64, 65468); n != 16 {
		t.Errorf("fit for b = %d, want 16 blocks (1 MiB class)", n)
	}
	p.Put(a, x, now)
	usage(3*mib, 4*mib)
	// A kept buffer of the class is reused.
	if z := p.Get(a, 64*65468, now); z != x {
		t.Error("the kept buffer was not reused")
	} else {
		p.Put(a, z, now)
	}
	w := p.Get(b, 1*mib, now) // b's share: 3 + 1 = 4 MiB
	if w == nil {
		t.Fatal("get of 1 MiB failed")
	}
	v := p.Get(c, 3*mib, now) // another class: the kept 4 MiB stays
	if v == nil {
		t.Fatal("get for c failed")
	}
	usage(7*mib, 4*mib)
	// d may take no more than it leaves free: (12 - 7 - 0) / 2 = 2.5 MiB;
	// the kept buffer is dropped to make room.
	if n := p.Fit(d, 64, 65468); n != 40 {
		t.Errorf("fit for d = %d, want 40 blocks (2.5 MiB class)", n)
	}
	u := p.Get(d, 2*mib, now)
	if u == nil {
		t.Fatal("get did not drop the kept buffer to make room")
	}
	usage(9*mib, 0)
	// e finds 3 MiB free and may take half: 1 MiB, not 2.
	if p.Get(e, 2*mib, now) != nil {
		t.Error("a client took more than it left free")
	}
	if f := p.Get(e, 1*mib, now); f == nil {
		t.Error("a newcomer found no room")
	} else {
		p.Put(e, f, now)
	}
	// Kept buffers go after keepFor.
	p.Put(c, v, now)
	p.Put(b, w, now.Add(2*time.Second))
	p.Get(b, 100, now.Add(keepFor+1500*time.Millisecond)) // prunes v and e's, not w
	usage(5*mib+4096, 1*mib)
	if len(p.clients) != 2 {
		t.Errorf("clients %v, want only b and d", p.clients)
	}
}

// TestStallingClientsCannotTakeEverything (found in review): with shares
// of a quarter each, clients that take their windows and stall leave
// room for the next one, halving what is left, never nothing.
func TestStallingClientsCannotTakeEverything(t *testing.T) {
	const mib = 1 << 20
	p := &Pool{Limit: 64 * mib, PerClient: 16 * mib}
	now := time.Now()
	for i := range 40 {
		client := ClientPrefix(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
		n := p.Fit(client, 64, 65468)
		if n == 0 {
			t.Fatalf("client %d found no room for one block: %d MiB in use", i, func() int64 { in, _ := p.Usage(); return in >> 20 }())
		}
		if p.Get(client, n*65468, now) == nil {
			t.Fatalf("client %d: Fit said %d blocks, Get refused", i, n)
		}
		if i >= 18 { // 65468-byte blocks: the room halves to one block
			break
		}
	}
}
