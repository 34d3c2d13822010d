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
	p := &Pool{Limit: 10 * mib, PerClient: 4 * mib}
	now := time.Unix(1000, 0)

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
	if in, kept := p.Usage(); in != 7*mib || kept != 0 {
		t.Errorf("usage %d, %d; want 7 MiB, 0", in, kept)
	}
	// 3 MiB left in the budget: b's share has 1 MiB.
	if n := p.Fit(b, 64, 65468); n != 16 {
		t.Errorf("fit for b = %d, want 16 blocks (1 MiB class)", n)
	}
	p.Put(a, x, now)
	if in, kept := p.Usage(); in != 3*mib || kept != 4*mib {
		t.Errorf("after put: usage %d, %d; want 3 MiB in use, 4 MiB kept", in, kept)
	}
	// A kept buffer of the class is reused; one of another class makes
	// room by dropping it.
	if z := p.Get(a, 64*65468, now); z != x {
		t.Error("the kept buffer was not reused")
	} else {
		p.Put(a, z, now)
	}
	w := p.Get(b, 1*mib, now) // b's share: 3 + 1 = 4 MiB
	if w == nil {
		t.Fatal("get of 1 MiB failed")
	}
	c := ClientPrefix(netip.MustParseAddr("192.0.2.2"))
	v := p.Get(c, 4*mib, now) // 4 + 4 kept + 4 > 10: the kept buffer goes
	if v == nil {
		t.Fatal("get did not drop the kept buffer to make room")
	}
	if in, kept := p.Usage(); in != 8*mib || kept != 0 {
		t.Errorf("usage %d, %d; want 8 MiB, 0 kept", in, kept)
	}
	if p.Get(c, 3*mib, now) != nil {
		t.Error("get over the budget succeeded")
	}
	// Kept buffers go after keepFor.
	p.Put(c, v, now)
	p.Put(b, w, now.Add(2*time.Second))
	p.Get(b, 100, now.Add(keepFor+1500*time.Millisecond)) // prunes v, not w
	if in, kept := p.Usage(); in != 3*mib+4096 || kept != 1*mib {
		t.Errorf("after keepFor: usage %d, %d; want 3 MiB + 4 KiB in use, 1 MiB kept", in, kept)
	}
	if len(p.clients) != 1 {
		t.Errorf("clients %v, want only b", p.clients)
	}
}
