package gateway

import (
	"net/netip"
	"time"

	"golang.org/x/time/rate"
)

var errBusy = &Error{Code: ErrNotDefined, Message: "server busy"}

// clientEntry is what the server tracks of one client address.
type clientEntry struct {
	limiter  *rate.Limiter // nil without a rate limit
	sessions int
	seen     time.Time
}

// maxClientEntries bounds the client table; sources beyond it (a spoofed
// flood) are refused until idle entries are swept.
const maxClientEntries = 1 << 16

// admit decides whether a new session for src may start and, if so,
// counts it. The caller holds st.mu.
func (st *serverState) admit(c *config, src netip.Addr, now time.Time) bool {
	if c.maxSessions > 0 && st.running >= c.maxSessions {
		return false
	}
	if c.maxSessionsPerClient <= 0 && c.clientRate <= 0 {
		st.running++
		return true
	}
	e := st.clients[src]
	if e == nil {
		if len(st.clients) >= maxClientEntries || now.Sub(st.lastSweep) > 10*time.Second {
			st.sweepClients(c, now)
		}
		if len(st.clients) >= maxClientEntries {
			return false
		}
		e = &clientEntry{}
		if c.clientRate > 0 {
			e.limiter = rate.NewLimiter(rate.Limit(c.clientRate), max(1, int(2*c.clientRate)))
		}
		st.clients[src] = e
	}
	e.seen = now
	if c.maxSessionsPerClient > 0 && e.sessions >= c.maxSessionsPerClient {
		return false
	}
	if e.limiter != nil && !e.limiter.AllowN(now, 1) {
		return false
	}
	e.sessions++
	st.running++
	return true
}

// release undoes admit when a session ends. The caller holds st.mu.
func (st *serverState) release(src netip.Addr) {
	st.running--
	if e := st.clients[src]; e != nil {
		e.sessions--
	}
}

// sweepClients forgets clients without sessions whose rate limiter has
// refilled, so the table stays small. The caller holds st.mu.
func (st *serverState) sweepClients(c *config, now time.Time) {
	st.lastSweep = now
	idle := 2 * time.Second // a full burst refills within this at any rate >= 1/s
	if c.clientRate > 0 && c.clientRate < 1 {
		idle = time.Duration(2 / c.clientRate * float64(time.Second))
	}
	for a, e := range st.clients {
		if e.sessions == 0 && now.Sub(e.seen) > idle {
			delete(st.clients, a)
		}
	}
}
