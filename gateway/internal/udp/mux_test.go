package udp

import (
	"errors"
	"os"
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
	newMux := func() *MuxConn {
		m := &MuxConn{in: make(chan muxPacket, 1), wake: make(chan struct{}, 1), timer: time.NewTimer(time.Hour)}
		m.timer.Stop()
		return m
	}
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
			for !m.waiting.Load() {
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
			m.in <- muxPacket{n: 1}
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
