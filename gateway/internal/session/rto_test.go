package session

import (
	"testing"
	"time"
)

func TestRTOEstimator(t *testing.T) {
	ms := time.Millisecond
	t0 := time.Unix(1000, 0)
	t.Run("RFC6298_starts_at_the_configured_timeout", func(t *testing.T) {
		e := newRTO(time.Second, 20*ms, true)
		if e.current() != time.Second {
			t.Fatalf("rto %v", e.current())
		}
	})
	t.Run("RFC6298_first_sample_sets_SRTT_and_RTTVAR", func(t *testing.T) {
		e := newRTO(time.Second, 20*ms, true)
		e.sent(t0, 1)
		e.acked(t0.Add(10*ms), 1)
		// SRTT 10ms, RTTVAR 5ms: 10 + 4*5 = 30ms.
		if e.current() != 30*ms {
			t.Fatalf("rto %v, want 30ms", e.current())
		}
	})
	t.Run("floor", func(t *testing.T) {
		e := newRTO(time.Second, 20*ms, true)
		e.sent(t0, 1)
		e.acked(t0.Add(100*time.Microsecond), 1)
		if e.current() != 20*ms {
			t.Fatalf("rto %v, want the 20ms floor", e.current())
		}
	})
	t.Run("backoff_doubles_up_to_the_timeout", func(t *testing.T) {
		e := newRTO(time.Second, 20*ms, true)
		e.sent(t0, 1)
		e.acked(t0.Add(10*ms), 1)
		var got []time.Duration
		for range 7 {
			e.expired(false)
			got = append(got, e.current())
		}
		want := []time.Duration{60 * ms, 120 * ms, 240 * ms, 480 * ms, 960 * ms, time.Second, time.Second}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("backoff %v, want %v", got, want)
			}
		}
		// Progress without a sample keeps the backoff (RFC 6298 section 5:
		// only a new measurement collapses it)...
		e.acked(t0.Add(time.Second), 2)
		if e.current() != time.Second {
			t.Fatalf("after progress without a sample rto %v, want the backed-off 1s", e.current())
		}
		// ...which the next timed send brings.
		e.sent(t0.Add(time.Second), 3)
		e.acked(t0.Add(time.Second+10*ms), 3)
		if e.current() >= time.Second || e.current() < 20*ms {
			t.Fatalf("after a new sample rto %v, want it collapsed", e.current())
		}
	})
	t.Run("RFC6298_a_round_trip_that_grew_is_learned_after_one_backoff", func(t *testing.T) {
		// Regression (found in operator review): the timeout collapsed to
		// the old estimate at every ACK, so after a client's round trip
		// grew from 0.1 ms to 150 ms each block expired at 20 ms, was
		// resent three times, and Karn's rule kept the estimator from
		// ever seeing the new round trip.
		e := newRTO(time.Second, 20*ms, true)
		now := t0
		for b := uint64(1); b <= 10; b++ { // a fast client: the 20 ms floor
			e.sent(now, b)
			now = now.Add(100 * time.Microsecond)
			e.acked(now, b)
		}
		spurious := 0
		for b := uint64(11); b <= 30; b++ { // now every ACK takes 150 ms
			e.sent(now, b)
			ackAt := now.Add(150 * ms)
			for wait := e.current(); now.Add(wait).Before(ackAt); wait = e.current() {
				now = now.Add(wait)
				e.expired(false)
				spurious++
			}
			now = ackAt
			e.acked(now, b)
		}
		if spurious > 3 {
			t.Errorf("%d spurious expiries over 20 slow blocks, want the first block's 3 at most", spurious)
		}
	})
	t.Run("Karn_no_sample_across_a_retransmission", func(t *testing.T) {
		e := newRTO(time.Second, 20*ms, true)
		e.sent(t0, 1)
		e.expired(false)
		e.acked(t0.Add(500*ms), 1) // which send does it answer? unknown: no sample
		if e.srtt != 0 {
			t.Fatalf("sampled %v across a retransmission", e.srtt)
		}
	})
	t.Run("negotiated_timeout_is_fixed", func(t *testing.T) {
		e := newRTO(3*time.Second, 20*ms, false)
		e.sent(t0, 1)
		e.acked(t0.Add(ms), 1)
		e.expired(false)
		if e.current() != 3*time.Second {
			t.Fatalf("rto %v, want 3s", e.current())
		}
	})
	t.Run("MinTimeout_at_or_above_Timeout_is_fixed", func(t *testing.T) {
		e := newRTO(time.Second, time.Hour, true)
		e.sent(t0, 1)
		e.acked(t0.Add(ms), 1)
		if e.current() != time.Second {
			t.Fatalf("rto %v, want 1s", e.current())
		}
	})
}
