package udp

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tftpgw/tftpgw/internal/wire"
)

// blockResponder answers "ACK n" with "DATA n+1" (its payload the block
// number, repeated) and a read deadline of now + dl; it declines
// anything else.
type blockResponder struct {
	dl    time.Duration
	calls atomic.Int64
	out   []byte
}

func (r *blockResponder) Respond(pkt []byte) ([]byte, time.Time, bool) {
	r.calls.Add(1)
	blk, err := wire.ParseAck(pkt)
	if err != nil {
		return nil, time.Time{}, false
	}
	r.out = wire.AppendDataHeader(r.out[:0], blk+1)
	r.out = append(r.out, bytes.Repeat([]byte{byte(blk + 1)}, 100)...)
	return r.out, time.Now().Add(r.dl), true
}

func dataFor(blk uint16) []byte {
	return append(wire.AppendDataHeader(nil, blk), bytes.Repeat([]byte{byte(blk)}, 100)...)
}

// offloadRig is a single-port listener with its read loop running (as
// gateway.Server.Serve runs it: every datagram to Deliver), one client
// socket, and the client's MuxConn, whose sender is prepared.
type offloadRig struct {
	l    *Listener
	pc   net.PacketConn
	cc   *net.UDPConn
	m    *MuxConn
	dst  netip.AddrPort // where the client sends
	done sync.WaitGroup
}

func newOffloadRig(t *testing.T, network, laddr, dst string) *offloadRig {
	t.Helper()
	pc, err := net.ListenPacket(network, laddr)
	if err != nil {
		t.Skipf("cannot listen on %s %s: %v", network, laddr, err)
	}
	r := &offloadRig{pc: pc, l: NewListener(pc, true)}
	r.dst = netip.AddrPortFrom(netip.MustParseAddr(dst), r.l.port)
	caddr := "127.0.0.1:0"
	if r.dst.Addr().Is6() {
		caddr = "[::1]:0"
	}
	r.cc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(caddr)))
	if err != nil {
		pc.Close()
		t.Skip(err)
	}
	client := unmapPort(r.cc.LocalAddr().(*net.UDPAddr).AddrPort())
	r.m = r.l.Register(client, r.dst.Addr(), nil)
	r.done.Add(1)
	go func() {
		defer r.done.Done()
		buf := make([]byte, 2048)
		for {
			d, err := r.l.Read(buf)
			if err != nil {
				return
			}
			r.l.Deliver(d.Src, buf[:d.N], false)
		}
	}()
	t.Cleanup(func() {
		r.m.Close()
		pc.Close()
		r.done.Wait()
		r.cc.Close()
	})
	// The first send prepares the client's address for batched replies.
	r.m.WriteToUDPAddrPort([]byte("hello"), client)
	r.expect(t, []byte("hello"))
	return r
}

func (r *offloadRig) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := r.cc.WriteToUDPAddrPort(b, r.dst); err != nil {
		t.Fatal(err)
	}
}

// expect reads the next datagram at the client: want, from the address
// the client sends to.
func (r *offloadRig) expect(t *testing.T, want []byte) {
	t.Helper()
	r.cc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := r.cc.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("client read: %v (want % x)", err, want)
	}
	if !bytes.Equal(buf[:n], want) || unmapPort(from) != r.dst {
		t.Fatalf("client got % x from %v, want % x from %v", buf[:n], from, want, r.dst)
	}
}

// sysSendmmsgReal is the package's raw sendmmsg, for the replacements
// below to call.
var sysSendmmsgReal = sysSendmmsg

// setSendmmsg replaces the raw sendmmsg until the test's end, after the
// read loops of the rigs made after it have stopped.
func setSendmmsg(t *testing.T, f func(uintptr, unsafe.Pointer, int) (int, unix.Errno)) {
	old := sysSendmmsg
	sysSendmmsg = f
	t.Cleanup(func() { sysSendmmsg = old })
}

// offloadAndAck offloads the session to resp, starts its read, sends the
// ACKs of blocks 0 to n-1 at once and expects the n answers; it returns
// the read's result, to come.
func (r *offloadRig) offloadAndAck(t *testing.T, resp *blockResponder, n uint16) <-chan readResult {
	t.Helper()
	r.m.SetReadDeadline(time.Now().Add(time.Hour))
	if !r.m.Offload(resp) {
		t.Fatal("Offload refused")
	}
	got := r.read()
	for b := range n {
		r.send(t, wire.AppendAck(nil, b))
	}
	for b := range n {
		r.expect(t, dataFor(b+1))
	}
	return got
}

// expectHandedBack checks that the session has its state back: the ACK
// of blk the client sends now is queued for the session's read, and resp
// is not asked.
func (r *offloadRig) expectHandedBack(t *testing.T, resp *blockResponder, blk uint16) {
	t.Helper()
	before := resp.calls.Load()
	r.send(t, wire.AppendAck(nil, blk))
	if res := <-r.read(); res.err != nil || !bytes.Equal(res.b, wire.AppendAck(nil, blk)) {
		t.Fatalf("read: % x, %v; want ACK %d", res.b, res.err, blk)
	}
	if resp.calls.Load() != before {
		t.Error("the responder was asked after the session took its state back")
	}
}

type readResult struct {
	b   []byte
	err error
	at  time.Time
}

// read runs the session's read in a goroutine.
func (r *offloadRig) read() <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		buf := make([]byte, MaxPacket+1)
		n, _, err := r.m.ReadFromUDPAddrPort(buf)
		ch <- readResult{buf[:n], err, time.Now()}
	}()
	return ch
}

// TestMuxConnOffload: an offloaded single-port session's datagrams are
// answered on the listener's read loop, from the address the request was
// sent to, and several replies leave in one sendmmsg; the session's read
// sleeps through them and returns the first datagram the responder
// declines, after which the responder is not asked again.
func TestMuxConnOffload(t *testing.T) {
	for _, tt := range []struct{ name, network, laddr, dst string }{
		{"v4_bound", "udp4", "127.0.0.1:0", "127.0.0.1"},
		{"v4_wildcard", "udp4", "0.0.0.0:0", "127.0.0.5"},
		{"v6_bound", "udp6", "[::1]:0", "::1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int64
			setSendmmsg(t, func(fd uintptr, msgs unsafe.Pointer, vlen int) (int, unix.Errno) {
				calls.Add(1)
				return sysSendmmsgReal(fd, msgs, vlen)
			})
			r := newOffloadRig(t, tt.network, tt.laddr, tt.dst)
			resp := &blockResponder{dl: time.Hour}
			got := r.offloadAndAck(t, resp, 20)
			if n := calls.Load(); n < 1 || n > 20 {
				t.Errorf("%d sendmmsg calls for 20 replies", n)
			}
			select {
			case res := <-got:
				t.Fatalf("the session's read returned % x, %v while offloaded", res.b, res.err)
			case <-time.After(50 * time.Millisecond):
			}
			errPkt := wire.AppendError(nil, 0, "stop")
			r.send(t, errPkt)
			if res := <-got; res.err != nil || !bytes.Equal(res.b, errPkt) {
				t.Fatalf("read: % x, %v; want the declined ERROR", res.b, res.err)
			}
			r.expectHandedBack(t, resp, 7)
		})
	}
}

// TestMuxConnOffloadDeadline: the responder moves the read deadline with
// every answer, so an offloaded read outlives the deadline it was set
// with while the client keeps answering, and times out one responder's
// deadline after the client falls silent. A deadline moved by someone
// else (a shutdown moves it to the past) ends the read at once, and the
// datagrams after it are the session's.
func TestMuxConnOffloadDeadline(t *testing.T) {
	r := newOffloadRig(t, "udp4", "127.0.0.1:0", "127.0.0.1")
	resp := &blockResponder{dl: 600 * time.Millisecond}
	start := time.Now()
	r.m.SetReadDeadline(start.Add(300 * time.Millisecond))
	if !r.m.Offload(resp) {
		t.Fatal("Offload refused")
	}
	got := r.read()
	var last time.Time
	for b := range uint16(10) {
		last = time.Now()
		r.send(t, wire.AppendAck(nil, b))
		r.expect(t, dataFor(b+1))
		time.Sleep(40 * time.Millisecond)
	}
	res := <-got
	if !errors.Is(res.err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: % x, %v; want a timeout", res.b, res.err)
	}
	if res.at.Before(last.Add(600*time.Millisecond)) || res.at.Sub(start) < 400*time.Millisecond {
		t.Errorf("timed out %v after the start, %v after the last ACK; want the responder's deadline (600ms after the last ACK)",
			res.at.Sub(start), res.at.Sub(last))
	}

	t.Run("moved_earlier", func(t *testing.T) {
		// A backed-off timer collapsing on a new sample: the responder's
		// deadline comes before the one the read's timer is armed for.
		resp := &blockResponder{dl: 100 * time.Millisecond}
		r.m.SetReadDeadline(time.Now().Add(5 * time.Second))
		if !r.m.Offload(resp) {
			t.Fatal("Offload refused")
		}
		got := r.read()
		for !r.m.isWaiting() {
			time.Sleep(time.Millisecond)
		}
		sent := time.Now()
		r.send(t, wire.AppendAck(nil, 1))
		r.expect(t, dataFor(2))
		res := <-got
		if !errors.Is(res.err, os.ErrDeadlineExceeded) {
			t.Fatalf("read: % x, %v; want a timeout", res.b, res.err)
		}
		if d := res.at.Sub(sent); d > 2*time.Second {
			t.Errorf("timed out %v after the ACK, want the responder's 100ms, not the 5s the timer was armed for", d)
		}
	})

	t.Run("moved_by_a_shutdown", func(t *testing.T) {
		r.m.SetReadDeadline(time.Now().Add(time.Hour))
		if !r.m.Offload(resp) {
			t.Fatal("Offload refused")
		}
		got := r.read()
		for !r.m.isWaiting() {
			time.Sleep(time.Millisecond)
		}
		r.m.SetReadDeadline(time.Unix(1, 0))
		select {
		case res := <-got:
			if !errors.Is(res.err, os.ErrDeadlineExceeded) {
				t.Fatalf("read: % x, %v; want a timeout", res.b, res.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the read did not end")
		}
		r.m.SetReadDeadline(time.Now().Add(5 * time.Second))
		r.expectHandedBack(t, resp, 3)
	})
}

// TestMuxConnOffloadRefused: Offload reports false, and changes nothing,
// while a datagram waits for the read, on a closed MuxConn, and before
// the session's first send has prepared the client's address.
func TestMuxConnOffloadRefused(t *testing.T) {
	r := newOffloadRig(t, "udp4", "127.0.0.1:0", "127.0.0.1")
	r.m.deliver([]byte("queued"))
	if r.m.Offload(&blockResponder{}) {
		t.Error("Offload with a datagram waiting")
	}
	if res := <-r.read(); string(res.b) != "queued" {
		t.Errorf("read % x, %v", res.b, res.err)
	}
	fresh := r.l.Register(netip.MustParseAddrPort("127.0.0.1:9"), netip.Addr{}, nil)
	if fresh.Offload(&blockResponder{}) {
		t.Error("Offload before the first send")
	}
	fresh.Close()
	r.m.Close()
	if r.m.Offload(&blockResponder{}) {
		t.Error("Offload after Close")
	}
}

// TestReplyBatchRefusals: a reply sendmmsg refuses (a seccomp filter
// refusing the call: EPERM) goes through net's path, and the replies after
// it still go in a batch; where the kernel has no sendmmsg (ENOSYS) the
// batch goes through net's path and later sessions are not offloaded.
func TestReplyBatchRefusals(t *testing.T) {
	for _, e := range []unix.Errno{unix.EPERM, unix.ENOSYS} {
		t.Run(e.Error(), func(t *testing.T) {
			var calls atomic.Int64
			setSendmmsg(t, func(fd uintptr, msgs unsafe.Pointer, vlen int) (int, unix.Errno) {
				if calls.Add(1) == 1 || e == unix.ENOSYS {
					return 0, e
				}
				return sysSendmmsgReal(fd, msgs, vlen)
			})
			r := newOffloadRig(t, "udp4", "0.0.0.0:0", "127.0.0.5")
			got := r.offloadAndAck(t, &blockResponder{dl: time.Hour}, 6)
			if e == unix.ENOSYS {
				if calls.Load() != 1 {
					t.Errorf("sendmmsg tried %d times, want once", calls.Load())
				}
				r.m.SetReadDeadline(time.Unix(1, 0))
				<-got
				if r.m.Offload(&blockResponder{}) {
					t.Error("offloaded without sendmmsg")
				}
				return
			}
			r.m.SetReadDeadline(time.Unix(1, 0))
			<-got
		})
	}
}

// TestReplyBatchOneSendmmsg: the replies that several sessions'
// responders made while the read loop served a batch leave in one
// sendmmsg, in order, each to its client from the address its request
// was sent to; a reply of a session unregistered meanwhile (superseded by
// a new request from its port) is not sent.
func TestReplyBatchOneSendmmsg(t *testing.T) {
	var calls, msgs atomic.Int64
	setSendmmsg(t, func(fd uintptr, p unsafe.Pointer, vlen int) (int, unix.Errno) {
		calls.Add(1)
		msgs.Add(int64(vlen))
		return sysSendmmsgReal(fd, p, vlen)
	})
	pc, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	l := NewListener(pc, true) // no read loop: the test is the read loop
	type client struct {
		cc *net.UDPConn
		m  *MuxConn
	}
	var cs []client
	for i := range 3 {
		cc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		m := l.Register(cc.LocalAddr().(*net.UDPAddr).AddrPort(), netip.AddrFrom4([4]byte{127, 0, 0, byte(5 + i)}), nil)
		defer m.Close()
		m.WriteToUDPAddrPort([]byte("hello"), m.client) // prepares the client's address
		m.SetReadDeadline(time.Now().Add(time.Hour))
		if !m.Offload(&blockResponder{dl: time.Hour}) {
			t.Fatal("Offload refused")
		}
		cs = append(cs, client{cc, m})
	}
	for i, c := range cs {
		c.m.deliver(wire.AppendAck(nil, uint16(10*i)))
	}
	l.Unregister(cs[1].m)
	l.flushReplies()
	if calls.Load() != 1 || msgs.Load() != 2 {
		t.Errorf("%d sendmmsg calls for %d messages, want 1 for 2", calls.Load(), msgs.Load())
	}
	buf := make([]byte, 2048)
	for i, c := range cs {
		c.cc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, _, err := c.cc.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "hello" {
			t.Fatalf("client %d: % x, %v", i, buf[:n], err)
		}
		if i == 1 {
			c.cc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n, _, err := c.cc.ReadFromUDPAddrPort(buf); err == nil {
				t.Errorf("client 1, unregistered, got % x", buf[:n])
			}
			continue
		}
		n, from, err := c.cc.ReadFromUDPAddrPort(buf)
		if err != nil || !bytes.Equal(buf[:n], dataFor(uint16(10*i+1))) || from.Addr() != netip.AddrFrom4([4]byte{127, 0, 0, byte(5 + i)}) {
			t.Errorf("client %d: % x from %v, %v", i, buf[:n], from, err)
		}
	}
}
