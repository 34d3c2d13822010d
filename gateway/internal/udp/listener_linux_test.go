package udp

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/tftpgw/tftpgw/internal/wire"
	"golang.org/x/sys/unix"
)

// TestListenerRawRead: the listener reads with a raw recvmmsg on every
// kind of listening socket and learns what net's read told it: the
// source (unmapped on a dual-stack socket), the address the datagram was
// sent to (IP_PKTINFO, IPV6_PKTINFO), the kernel's arrival time; a
// datagram longer than the buffer is cut to it, an empty one reads as
// empty, and a closed socket reads as net.ErrClosed.
func TestListenerRawRead(t *testing.T) {
	for _, tt := range []struct {
		name, network, laddr string
		client, dst          string // the client's socket, the datagram's destination
	}{
		{"v4_bound", "udp4", "127.0.0.1:0", "127.0.0.1", "127.0.0.1"},
		{"v4_wildcard", "udp4", "0.0.0.0:0", "127.0.0.1", "127.0.0.5"},
		{"dual_stack_v4_client", "udp", "[::]:0", "127.0.0.1", "127.0.0.3"},
		{"dual_stack_v6_client", "udp", "[::]:0", "::1", "::1"},
		{"v6_bound", "udp6", "[::1]:0", "::1", "::1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pc, err := net.ListenPacket(tt.network, tt.laddr)
			if err != nil {
				t.Skipf("cannot listen on %s %s: %v", tt.network, tt.laddr, err)
			}
			defer pc.Close()
			l := NewListener(pc, false)
			if l.raw.rc == nil {
				t.Fatal("the raw read is not set up")
			}
			cc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(tt.client), 0)))
			if err != nil {
				t.Skipf("no %s: %v", tt.client, err)
			}
			defer cc.Close()
			client := unmapPort(cc.LocalAddr().(*net.UDPAddr).AddrPort())
			to := netip.AddrPortFrom(netip.MustParseAddr(tt.dst), l.port)
			buf := make([]byte, 16)
			for _, msg := range [][]byte{[]byte("\x00\x04\x00\x01"), {}, bytes.Repeat([]byte("x"), 40)} {
				before := time.Now()
				if _, err := cc.WriteToUDPAddrPort(msg, to); err != nil {
					t.Fatal(err)
				}
				pc.SetReadDeadline(time.Now().Add(5 * time.Second))
				d, err := l.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				want := msg[:min(len(msg), len(buf))]
				if !bytes.Equal(buf[:d.N], want) {
					t.Errorf("read %q, want %q", buf[:d.N], want)
				}
				if d.Src != client {
					t.Errorf("source %v, want %v", d.Src, client)
				}
				if d.Dst != to.Addr() {
					t.Errorf("destination %v, want %v", d.Dst, to.Addr())
				}
				if d.At.Before(before.Add(-time.Second)) || d.At.After(time.Now()) {
					t.Errorf("arrival %v, not between the send (%v) and now", d.At, before)
				}
				if !strings.Contains(d.At.String(), " m=") {
					// Compared with time.Now by the cache (Request.At):
					// the monotonic reading keeps a clock step out.
					t.Errorf("arrival %v has no monotonic clock reading", d.At)
				}
			}
			pc.Close()
			if _, err := l.Read(buf); !errors.Is(err, net.ErrClosed) {
				t.Errorf("read on a closed socket: %v, want net.ErrClosed", err)
			}
		})
	}
}

// BenchmarkListenerRead: reading a datagram on the listening socket
// allocates nothing.
func BenchmarkListenerRead(b *testing.B) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Skip(err)
	}
	defer pc.Close()
	l := NewListener(pc, false)
	cc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Skip(err)
	}
	defer cc.Close()
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), l.port)
	msg := []byte("\x00\x04\x00\x01")
	buf := make([]byte, 512)
	b.ReportAllocs()
	for b.Loop() {
		cc.WriteToUDPAddrPort(msg, to)
		if _, err := l.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// TestListenerRawReadZone: a link-local source gets its interface's name
// as its zone, as net's read gives it; IPv4-mapped sources are unmapped.
func TestListenerRawReadZone(t *testing.T) {
	lo, err := net.InterfaceByIndex(1)
	if err != nil {
		t.Skip(err)
	}
	var (
		rsa   unix.RawSockaddrAny
		zones zoneCache
	)
	for _, tt := range []struct {
		addr  string
		scope uint32
		want  string
	}{
		{"fe80::1", 1, "[fe80::1%" + lo.Name + "]:69"},
		{"fe80::1", 0, "[fe80::1]:69"},
		{"::ffff:10.0.0.1", 0, "10.0.0.1:69"},
		{"2001:db8::1", 0, "[2001:db8::1]:69"},
	} {
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: netip.MustParseAddr(tt.addr).As16(), Scope_id: tt.scope}
		putPort(&sa.Port, 69)
		if got := fromSockaddr(&rsa, &zones).String(); got != tt.want {
			t.Errorf("%s scope %d: %s, want %s", tt.addr, tt.scope, got, tt.want)
		}
	}
}

// TestListenerRawReadOnABlockingSocket is a regression test (found by a
// review helper): the listening socket is the caller's, and File().Fd(),
// an old idiom for setting a socket option, leaves it in blocking mode.
// The raw recvmsg then sat in the kernel until a datagram came, holding
// its thread without the runtime knowing: every stop-the-world, a GC's
// first, waited for the next datagram. The read must still wait in the
// netpoller, and time out.
func TestListenerRawReadOnABlockingSocket(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	f, err := pc.File()
	if err != nil {
		t.Fatal(err)
	}
	f.Fd() // blocking mode, on the description the socket shares
	f.Close()
	rc, _ := pc.SyscallConn()
	var flags int
	rc.Control(func(fd uintptr) { flags, _ = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	if flags&unix.O_NONBLOCK != 0 {
		t.Skip("the socket stayed non-blocking")
	}
	l := NewListener(pc, false)

	// If the read blocks in the kernel, a datagram after 3 s frees it.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			if c, err := net.DialUDP("udp4", nil, pc.LocalAddr().(*net.UDPAddr)); err == nil {
				c.Write([]byte("unblock"))
				c.Close()
			}
		}
	}()
	pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	start := time.Now()
	if _, err := l.Read(make([]byte, 16)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v after %v, want a timeout at 100ms (a raw read blocked in the kernel)", err, time.Since(start))
	}
}

// TestListenerReadAllocs: reading a datagram and its destination address
// on the listening socket allocates nothing, so junk floods and
// single-port ACKs cost no garbage.
func TestListenerReadAllocs(t *testing.T) {
	for _, network := range []string{"udp4", "udp6"} {
		addr := "127.0.0.1:0"
		if network == "udp6" {
			addr = "[::1]:0"
		}
		pc, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		l := NewListener(pc, false)
		if !l.pktinfo {
			t.Fatalf("%s: no PKTINFO", network)
		}
		sender, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer sender.Close()
		pkt := wire.AppendAck(nil, 7)
		buf := make([]byte, 2048)
		want := pc.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		allocs := testing.AllocsPerRun(100, func() {
			sender.WriteTo(pkt, pc.LocalAddr())
			d, err := l.Read(buf)
			if err != nil || d.N != 4 || d.Dst != want || d.At.IsZero() {
				t.Fatalf("read %+v %v", d, err)
			}
		})
		// WriteTo above allocates its *net.UDPAddr conversion: measure read alone.
		sendAllocs := testing.AllocsPerRun(100, func() { sender.WriteTo(pkt, pc.LocalAddr()) })
		if allocs-sendAllocs > 0 {
			t.Errorf("%s: listener read allocates %v per datagram", network, allocs-sendAllocs)
		}
	}
}

// TestListenerReadsABatch: datagrams that wait in the listening socket's
// queue are taken several to a recvmmsg, and each read of the batch
// returns its own datagram as a read of its own would: bytes (cut to the
// buffer, or empty), source, destination address and arrival time, in
// the order they came. More datagrams than a batch holds take several.
func TestListenerReadsABatch(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	l := NewListener(pc, false)
	if l.raw.rc == nil {
		t.Fatal("the raw read is not set up")
	}
	const n = batchLen*2 + 5
	type sent struct {
		msg []byte
		src netip.AddrPort
		dst netip.Addr
	}
	var want []sent
	clients := make([]*net.UDPConn, 3)
	for i := range clients {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	before := time.Now()
	for i := range n {
		c := clients[i%len(clients)]
		msg := bytes.Repeat([]byte{byte(i)}, i%40) // 0 to 39 bytes: some cut to the 32-byte buffer
		dst := netip.AddrFrom4([4]byte{127, 0, 0, byte(10 + i%7)})
		if _, err := c.WriteToUDPAddrPort(msg, netip.AddrPortFrom(dst, l.port)); err != nil {
			t.Fatal(err)
		}
		want = append(want, sent{msg, c.LocalAddr().(*net.UDPAddr).AddrPort(), dst})
	}
	buf := make([]byte, 32)
	for i, w := range want {
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		d, err := l.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if i == 0 && l.raw.count < 2 {
			t.Errorf("the first read took %d datagram(s) of the %d waiting, want a batch", l.raw.count, n)
		}
		if wb := w.msg[:min(len(w.msg), len(buf))]; !bytes.Equal(buf[:d.N], wb) {
			t.Errorf("datagram %d: read %x, want %x", i, buf[:d.N], wb)
		}
		if d.Src != w.src || d.Dst != w.dst {
			t.Errorf("datagram %d: from %v to %v, want from %v to %v", i, d.Src, d.Dst, w.src, w.dst)
		}
		if d.At.Before(before.Add(-time.Second)) || d.At.After(time.Now()) {
			t.Errorf("datagram %d: arrival %v, not between the first send (%v) and now", i, d.At, before)
		}
	}
	pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := l.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read after the last datagram: %v, want a timeout", err)
	}
}

// TestListenerBatchOutlivesClose: datagrams read in a batch before the
// socket was closed are still returned, then the read says net.ErrClosed.
func TestListenerBatchOutlivesClose(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(pc, false)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 3 {
		c.WriteTo(wire.AppendAck(nil, uint16(i)), pc.LocalAddr())
	}
	time.Sleep(20 * time.Millisecond) // all three queued
	buf := make([]byte, 64)
	d, err := l.Read(buf)
	if err != nil || l.raw.count != 3 {
		t.Fatalf("first read: %v, batch of %d, want 3", err, l.raw.count)
	}
	pc.Close()
	for i := 1; i < 3; i++ {
		if d, err = l.Read(buf); err != nil || !bytes.Equal(buf[:d.N], wire.AppendAck(nil, uint16(i))) {
			t.Fatalf("read %d after close: %x, %v", i, buf[:d.N], err)
		}
	}
	if _, err := l.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read on a closed socket: %v, want net.ErrClosed", err)
	}
}

// TestListenerWithoutRecvmmsg: where the kernel refuses recvmmsg (a
// seccomp filter, an emulated kernel: ENOSYS or EPERM), the listener
// reads with net's recvmsg from then on, and learns the same of each
// datagram, rather than failing the server.
func TestListenerWithoutRecvmmsg(t *testing.T) {
	for _, e := range []unix.Errno{unix.ENOSYS, unix.EPERM} {
		t.Run(e.Error(), func(t *testing.T) {
			calls := 0
			defer func(f func(uintptr, unsafe.Pointer, int) (int, unix.Errno)) { sysRecvmmsg = f }(sysRecvmmsg)
			sysRecvmmsg = func(uintptr, unsafe.Pointer, int) (int, unix.Errno) { calls++; return 0, e }
			pc, err := net.ListenPacket("udp4", "0.0.0.0:0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			l := NewListener(pc, false)
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.9"), l.port)
			buf := make([]byte, 64)
			for i := range 2 {
				if _, err := c.WriteToUDPAddrPort(wire.AppendAck(nil, uint16(i)), to); err != nil {
					t.Fatal(err)
				}
				pc.SetReadDeadline(time.Now().Add(5 * time.Second))
				d, err := l.Read(buf)
				if err != nil {
					t.Fatalf("read %d: %v", i, err)
				}
				if !bytes.Equal(buf[:d.N], wire.AppendAck(nil, uint16(i))) || d.Src != c.LocalAddr().(*net.UDPAddr).AddrPort() || d.Dst != to.Addr() {
					t.Errorf("read %d: % x from %v to %v", i, buf[:d.N], d.Src, d.Dst)
				}
			}
			if calls != 1 {
				t.Errorf("recvmmsg tried %d times, want once", calls)
			}
		})
	}
}
