package udp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"
)

// TestMuxConnDeadline: single-port sessions wait on MuxConn's deadline,
// which is kept on the monotonic clock like a socket's (see monoNanos). A
// step of the wall clock cannot be made in a test; what can be checked is
// that a deadline is honoured to the millisecond, that one without a
// monotonic reading (the time.Unix(1, 0) that wakes a read at shutdown)
// is past, and that a new deadline wakes a waiting read.
func TestMuxConnDeadline(t *testing.T) {
	newMux := newMuxConn
	buf := make([]byte, MaxPacket)
	t.Run("deadline_honoured", func(t *testing.T) {
		m := newMux()
		start := time.Now()
		m.SetReadDeadline(start.Add(30 * time.Millisecond))
		if _, _, err := m.ReadFromUDPAddrPort(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read: %v, want a timeout", err)
		}
		if d := time.Since(start); d < 30*time.Millisecond || d > time.Second {
			t.Errorf("timed out after %v, want 30ms", d)
		}
	})
	t.Run("wall_clock_time_in_the_past", func(t *testing.T) {
		m := newMux()
		m.SetReadDeadline(time.Unix(1, 0))
		start := time.Now()
		if _, _, err := m.ReadFromUDPAddrPort(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read: %v, want a timeout", err)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("timed out after %v, want at once", d)
		}
	})
	t.Run("new_deadline_wakes_a_waiting_read", func(t *testing.T) {
		m := newMux()
		m.SetReadDeadline(time.Now().Add(time.Hour))
		go func() {
			for !m.isWaiting() {
				time.Sleep(time.Millisecond)
			}
			m.SetReadDeadline(time.Unix(1, 0))
		}()
		start := time.Now()
		if _, _, err := m.ReadFromUDPAddrPort(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read: %v, want a timeout", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("woken after %v", d)
		}
	})
	// The timer stays armed across reads (see MuxConn.armedAt): a packet
	// that ends a wait leaves it set for the same deadline, and a moved
	// deadline, earlier or later, re-arms it, dropping a fire that no
	// read took.
	deliverAfter := func(m *MuxConn, d time.Duration) {
		go func() {
			time.Sleep(d)
			m.deliver([]byte{1})
		}()
	}
	t.Run("deadline_kept_across_reads", func(t *testing.T) {
		m := newMux()
		start := time.Now()
		m.SetReadDeadline(start.Add(150 * time.Millisecond))
		deliverAfter(m, 10*time.Millisecond)
		if _, _, err := m.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatalf("read: %v", err)
		}
		if _, _, err := m.ReadFromUDPAddrPort(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read: %v, want a timeout", err)
		}
		if d := time.Since(start); d < 150*time.Millisecond || d > time.Second {
			t.Errorf("timed out after %v, want 150ms", d)
		}
	})
	t.Run("earlier_deadline_rearms", func(t *testing.T) {
		m := newMux()
		m.SetReadDeadline(time.Now().Add(time.Hour))
		deliverAfter(m, 10*time.Millisecond)
		if _, _, err := m.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatalf("read: %v", err)
		}
		start := time.Now()
		m.SetReadDeadline(start.Add(30 * time.Millisecond))
		if _, _, err := m.ReadFromUDPAddrPort(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read: %v, want a timeout", err)
		}
		if d := time.Since(start); d < 30*time.Millisecond || d > time.Second {
			t.Errorf("timed out after %v, want 30ms", d)
		}
	})
	t.Run("untaken_fire_of_an_old_deadline_dropped", func(t *testing.T) {
		m := newMux()
		m.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		deliverAfter(m, 5*time.Millisecond)
		if _, _, err := m.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatalf("read: %v", err)
		}
		time.Sleep(60 * time.Millisecond) // the timer fires; no read takes it
		start := time.Now()
		m.SetReadDeadline(start.Add(100 * time.Millisecond))
		if _, _, err := m.ReadFromUDPAddrPort(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read: %v, want a timeout", err)
		}
		if d := time.Since(start); d < 100*time.Millisecond || d > time.Second {
			t.Errorf("timed out after %v, want 100ms", d)
		}
	})
	if got := monoNanos(time.Now().Add(time.Second)) - monoNanos(time.Now()); got < int64(990*time.Millisecond) || got > int64(time.Second) {
		t.Errorf("monoNanos: a second apart reads %v", time.Duration(got))
	}
}

func (m *MuxConn) isWaiting() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.waiting
}

// TestMuxConnQueue: datagrams handed over wait in order, each with its
// own bytes (cut to MaxPacket+1, which shows a DATA longer than its
// blksize), up to muxQueue; more are dropped, as a full socket buffer
// drops them; a read takes them before it looks at an expired deadline,
// and ReadQueued takes them without waiting.
func TestMuxConnQueue(t *testing.T) {
	m := newMuxConn()
	long := make([]byte, MaxPacket+50)
	for i := range muxQueue + 3 {
		if i == 2 {
			m.deliver(long)
			continue
		}
		m.deliver([]byte{0, 4, 0, byte(i)})
	}
	m.SetReadDeadline(time.Unix(1, 0)) // past
	buf := make([]byte, MaxPacket+10)
	for i := range muxQueue {
		var n int
		var ok bool
		if i%2 == 0 {
			var err error
			n, _, err = m.ReadFromUDPAddrPort(buf)
			ok = err == nil
		} else {
			n, _, ok = m.ReadQueued(buf)
		}
		switch {
		case !ok:
			t.Fatalf("datagram %d: not read", i)
		case i == 2 && n != MaxPacket+1:
			t.Errorf("datagram 2: %d bytes, want %d (cut)", n, MaxPacket+1)
		case i != 2 && (n != 4 || buf[3] != byte(i)):
			t.Errorf("datagram %d: % x", i, buf[:n])
		}
	}
	if _, _, ok := m.ReadQueued(buf); ok {
		t.Error("a datagram past the queue's room was kept")
	}
	if _, _, err := m.ReadFromUDPAddrPort(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read of an empty queue: %v, want a timeout", err)
	}
}

// TestMuxConnDeliverWakesRead: a datagram handed over while a read waits
// ends the wait, for many datagrams in a row (a lost wakeup would leave a
// read waiting for its deadline, an hour here).
func TestMuxConnDeliverWakesRead(t *testing.T) {
	m := newMuxConn()
	m.SetReadDeadline(time.Now().Add(time.Hour))
	const n = 20000
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, MaxPacket)
		for i := range n {
			k, _, err := m.ReadFromUDPAddrPort(buf)
			if err != nil || k != 2 || int(buf[0])<<8|int(buf[1]) != i&0xffff {
				done <- fmt.Errorf("read %d: % x, %v", i, buf[:k], err)
				return
			}
		}
		done <- nil
	}()
	limit := time.Now().Add(20 * time.Second)
	for i := range n {
		for {
			m.mu.Lock()
			room := m.n < muxQueue
			m.mu.Unlock()
			if room {
				break
			}
			if time.Now().After(limit) {
				t.Fatalf("datagram %d: the read stopped taking datagrams (not woken)", i)
			}
			runtime.Gosched()
		}
		m.deliver([]byte{byte(i >> 8), byte(i)})
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a read was not woken")
	}
}

// TestMuxConnCloseWakesRead: Close ends a waiting read with net.ErrClosed.
func TestMuxConnCloseWakesRead(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	l := NewListener(pc, true)
	m := l.Register(netip.MustParseAddrPort("127.0.0.1:9"), netip.Addr{}, nil)
	m.SetReadDeadline(time.Now().Add(10 * time.Second)) // a lost wakeup fails, not hangs
	go func() {
		for !m.isWaiting() {
			time.Sleep(time.Millisecond)
		}
		m.Close()
	}()
	if _, _, err := m.ReadFromUDPAddrPort(make([]byte, MaxPacket)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read: %v, want net.ErrClosed", err)
	}
	if l.Deliver(netip.MustParseAddrPort("127.0.0.1:9"), []byte{0, 4, 0, 1}, false) != nil {
		t.Error("a closed session still gets datagrams")
	}
}
