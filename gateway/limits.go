package gateway

import (
	"net/netip"
	"time"

	"golang.org/x/time/rate"
)

var errBusy = &Error{Code: ErrNotDefined, Message: "server busy"}

// clientEntry is what the server tracks of one client address.
type clientEntry struct {
	addr     netip.Addr
	limiter  *rate.Limiter // nil without a rate limit
	sessions int
	seen     time.Time // the last request, or the end of the last session

	// prev and next link the entries without sessions, in clientTable's
	// idle list; both are nil while the entry has sessions.
	prev, next *clientEntry
}

// maxClientEntries is the size the client table keeps to: past it, each
// new client takes the place of the client idle the longest (see
// clientTable), so that a flood from ever new addresses (spoofed, or an
// IPv6 /64's worth) bounds the table without refusing anyone.
const maxClientEntries = 1 << 16

// clientTable holds the clients' entries. Those without a session are
// also in a list ordered by when they were last seen, the longest idle
// first: it is where a full table takes its victim, and where the
// periodic sweep stops, both in constant time per entry removed. Entries
// with sessions are never removed (their sessions release them), so the
// table exceeds maxClientEntries only while more clients than that have
// sessions running.
type clientTable struct {
	m    map[netip.Addr]*clientEntry
	idle clientEntry // the idle list's sentinel: idle.next is the oldest
}

func (t *clientTable) init() {
	t.m = make(map[netip.Addr]*clientEntry)
	t.idle.next, t.idle.prev = &t.idle, &t.idle
}

// pushIdle appends e, which has no session, to the idle list.
func (t *clientTable) pushIdle(e *clientEntry) {
	e.prev, e.next = t.idle.prev, &t.idle
	t.idle.prev.next = e
	t.idle.prev = e
}

// unlinkIdle takes e out of the idle list, if it is in it.
func (t *clientTable) unlinkIdle(e *clientEntry) {
	if e.next == nil {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

// oldestIdle is the entry idle the longest, or nil.
func (t *clientTable) oldestIdle() *clientEntry {
	if t.idle.next == &t.idle {
		return nil
	}
	return t.idle.next
}

func (t *clientTable) remove(e *clientEntry) {
	t.unlinkIdle(e)
	delete(t.m, e.addr)
}

// busyReason names the limit a request refused with "server busy" was
// over, for the log.
type busyReason uint8

const (
	busyMaxSessions busyReason = iota
	busyClientSessions
	busyClientRate
	busyWindowMemory
	busyPortRange
)

func (r busyReason) String() string {
	return [...]string{
		busyMaxSessions:    "max_sessions",
		busyClientSessions: "max_sessions_per_client",
		busyClientRate:     "client_rate",
		busyWindowMemory:   "window_memory",
		busyPortRange:      "port_range",
	}[r]
}

// admit decides whether a new session for src may start under the limits
// l and, if so, counts it: in the client's entry too when perClient is
// true, which release must be told. A refusal says which limit refused it.
// The caller holds st.mu.
func (st *serverState) admit(c *config, l requestLimits, src netip.Addr, now time.Time) (ok, perClient bool, why busyReason) {
	if l.maxSessions > 0 && st.running >= l.maxSessions {
		return false, false, busyMaxSessions
	}
	if l.maxSessionsPerClient <= 0 && l.clientRate <= 0 {
		st.running++
		return true, false, 0
	}
	t := &st.clients
	e := t.m[src]
	if e == nil {
		if now.Sub(st.lastSweep) > 10*time.Second {
			st.sweepClients(c, now)
		}
		if len(t.m) >= maxClientEntries {
			if old := t.oldestIdle(); old != nil {
				// Its rate limiter goes with it: should that client
				// come back, it starts with a full burst, as a new one.
				t.remove(old)
			}
		}
		e = &clientEntry{addr: src}
		t.m[src] = e
	} else {
		t.unlinkIdle(e)
	}
	e.seen = now
	if l.clientRate > 0 {
		switch {
		case e.limiter == nil:
			e.limiter = rate.NewLimiter(rate.Limit(l.clientRate), burst(l.clientRate))
		case e.limiter.Limit() != rate.Limit(l.clientRate):
			e.limiter.SetLimitAt(now, rate.Limit(l.clientRate))
			e.limiter.SetBurstAt(now, burst(l.clientRate))
		}
	}
	switch {
	case l.maxSessionsPerClient > 0 && e.sessions >= l.maxSessionsPerClient:
		why = busyClientSessions
	case l.clientRate > 0 && !e.limiter.AllowN(now, 1):
		why = busyClientRate
	default:
		ok = true
		e.sessions++
		st.running++
	}
	if e.sessions == 0 {
		t.pushIdle(e) // the most recently seen
	}
	return ok, ok, why
}

// burst is the burst of a client's rate limiter: twice its rate.
func burst(r float64) int { return max(1, int(2*r)) }

// release undoes admit when a session ends; perClient is what admit
// returned. The caller holds st.mu.
func (st *serverState) release(src netip.Addr, perClient bool, now time.Time) {
	st.running--
	if !perClient {
		return
	}
	if e := st.clients.m[src]; e != nil {
		if e.sessions--; e.sessions == 0 {
			e.seen = now
			st.clients.pushIdle(e)
		}
	}
}

// sweepClients forgets clients without sessions whose rate limiter has
// refilled, so that the table shrinks when the clients go. The caller
// holds st.mu.
func (st *serverState) sweepClients(c *config, now time.Time) {
	st.lastSweep = now
	idle := 2 * time.Second // a full burst refills within this at any rate >= 1/s
	if r := c.limits.clientRate; r > 0 && r < 1 {
		idle = time.Duration(2 / r * float64(time.Second))
	}
	for e := st.clients.oldestIdle(); e != nil && now.Sub(e.seen) > idle; e = st.clients.oldestIdle() {
		st.clients.remove(e)
	}
}
