package session

import "time"

// rtoEstimator is a session's retransmission timer (RFC 1123 4.2.3.2
// makes adaptive timeouts a MUST). When the client negotiated no timeout
// it follows RFC 6298: the timeout starts at the configured one, then
// tracks SRTT + 4 RTTVAR from round-trip samples, between a floor and the
// configured timeout, doubling on each expiry (capped at the configured
// timeout). Karn's rule applies: no sample is taken across a
// retransmission, and the backed-off timeout stays until a new sample
// collapses it (RFC 6298 section 5), so that a client whose round trip
// grew is measured at the next send instead of being retransmitted to,
// spuriously, on every block. A negotiated timeout is used as it is.
type rtoEstimator struct {
	adaptive     bool
	floor, limit time.Duration
	srtt, rttvar time.Duration
	minRTT       time.Duration // the smallest sample (see quiet)
	rto          time.Duration

	sampling bool // a fresh send is being timed
	sentAt   time.Time
	block    uint64 // the ACK that completes the sample
}

func newRTO(timeout, floor time.Duration, adaptive bool) rtoEstimator {
	return rtoEstimator{adaptive: adaptive && floor < timeout, floor: floor, limit: timeout, rto: timeout}
}

// current is the timeout to wait now.
func (e *rtoEstimator) current() time.Duration { return e.rto }

// sent starts timing a send, of which no packet was sent before, that the
// ACK of block will complete. Samples are taken with a negotiated timeout
// too: quiet needs the round trip.
func (e *rtoEstimator) sent(now time.Time, block uint64) {
	if !e.sampling {
		e.sampling, e.sentAt, e.block = true, now, block
	}
}

// acked records progress up to block: a sample if it completes the timed
// send, which also ends any backoff.
func (e *rtoEstimator) acked(now time.Time, block uint64) {
	e.rto = min(e.rto, e.limit) // the end of a first packet's backoff
	if e.sampling && block >= e.block {
		e.sampling = false
		if block == e.block {
			e.sample(now.Sub(e.sentAt))
			if e.adaptive {
				e.rto = e.fromEstimate()
			}
		}
	}
}

// quietFloor is the shortest quiet spell after which a duplicate ACK is
// taken for the client's timer, and how long, at least, it must follow the
// client's previous ACK: longer than a round trip of a few milliseconds
// and than the gap between two ACKs of a burst (a packet's time on any
// link of a megabit per second and up), shorter than the timers of
// clients (a quarter of a second and up).
const quietFloor = 100 * time.Millisecond

// quiet is how long a duplicate ACK must follow the last send to be the
// client's retransmission timer rather than an answer to that send: twice
// the smallest round trip seen, at least quietFloor. The smallest, not the
// smoothed estimate: a sample that the client's own retransmitted ACK
// completed (its ACK 0 lost, say) counts the client's timer in, and would
// make the quiet spell outlast the client's timer. Zero (never) until a
// round trip has been measured.
func (e *rtoEstimator) quiet() time.Duration {
	if e.minRTT == 0 {
		return 0
	}
	return max(quietFloor, 2*e.minRTT)
}

// cancelSample drops the sample in progress (a window restarted: an ACK
// could answer either send).
func (e *rtoEstimator) cancelSample() { e.sampling = false }

// expired backs off after a timeout and drops the sample (Karn). An
// adaptive timer doubles up to the configured timeout; with uncapped (a
// first packet that nothing has answered yet, and no timeout negotiated)
// any timer doubles without that cap, as in.tftpd's does (1, 2, 4 s), the
// session's give-up time bounding it.
func (e *rtoEstimator) expired(uncapped bool) {
	e.sampling = false
	switch {
	case uncapped:
		e.rto *= 2
	case e.adaptive:
		e.rto = min(2*e.rto, e.limit)
	}
}

func (e *rtoEstimator) sample(r time.Duration) {
	if e.minRTT == 0 || r < e.minRTT {
		e.minRTT = max(r, 1)
	}
	if e.srtt == 0 {
		e.srtt, e.rttvar = r, r/2
		return
	}
	d := e.srtt - r
	if d < 0 {
		d = -d
	}
	e.rttvar = (3*e.rttvar + d) / 4
	e.srtt = (7*e.srtt + r) / 8
}

func (e *rtoEstimator) fromEstimate() time.Duration {
	if e.srtt == 0 {
		return e.limit
	}
	return min(max(e.srtt+max(time.Millisecond, 4*e.rttvar), e.floor), e.limit)
}
