package gateway

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway/internal/udp"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// floodSource is the i-th source of a flood of distinct addresses: IPv4
// in 127/8 for even i, and IPv6 in one /64 (what one attacker holds) for
// odd i.
func floodSource(i int) netip.Addr {
	if i%2 == 0 {
		return netip.AddrFrom4([4]byte{127, 100 + byte(i>>17), byte(i >> 9), byte(i >> 1)})
	}
	a := netip.MustParseAddr("2001:db8:1:2::").As16()
	a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	return netip.AddrFrom16(a)
}

// TestClientTableAgesOutIdleClients: once the client table holds
// maxClientEntries clients, a new client takes the place of the one idle
// the longest, instead of being refused (regression: with 65,536 entries
// whose rate limiters had not refilled, every new client got "server
// busy"). Clients with a running session are never removed, the table
// stays within its bound, and a removed client that comes back starts
// anew.
func TestClientTableAgesOutIdleClients(t *testing.T) {
	const flood = 70_000
	// A limiter that refills in 2,000 s: the periodic sweep frees nothing.
	c := (&Server{ClientRequestRate: 0.001, MaxSessions: -1, MaxSessionsPerClient: 4}).resolve()
	var st serverState
	st.clients.init()
	now := time.Now()
	st.lastSweep = now

	busy := netip.MustParseAddr("192.0.2.1")    // holds a session through the flood
	limited := netip.MustParseAddr("192.0.2.2") // spent its burst just before
	if !admitOK(&st, c, busy, now) || !admitOK(&st, c, limited, now) {
		t.Fatal("first requests refused")
	}
	st.release(limited, true, now)
	if admitOK(&st, c, limited, now) {
		t.Fatal("a second request within the rate limit's burst of 1 was admitted")
	}

	deadline := time.Now().Add(30 * time.Second)
	for i := range flood {
		if i%1024 == 0 && time.Now().After(deadline) {
			t.Fatalf("%d of %d sources in 30 s", i, flood)
		}
		src := floodSource(i)
		at := now.Add(time.Duration(i+1) * time.Microsecond)
		if !admitOK(&st, c, src, at) {
			t.Fatalf("source %d (%v) refused with %d clients in the table", i, src, len(st.clients.m))
		}
		st.release(src, true, at)
		if n := len(st.clients.m); n > maxClientEntries {
			t.Fatalf("%d clients in the table after source %d, bound %d", n, i, maxClientEntries)
		}
	}
	if e := st.clients.m[busy]; e == nil || e.sessions != 1 {
		t.Fatalf("the client with a running session lost its entry: %+v", e)
	}
	if _, ok := st.clients.m[floodSource(flood-1)]; !ok {
		t.Error("the newest client is not in the table")
	}
	if _, ok := st.clients.m[floodSource(0)]; ok {
		t.Error("the oldest idle client is still in the table")
	}
	// The rate-limited client was idle the longest: removed, it comes back
	// as a new client, with a full burst.
	if !admitOK(&st, c, limited, now.Add(time.Second)) {
		t.Error("a client removed from the table was refused on its return")
	}
	st.release(limited, true, now.Add(time.Second))
	st.release(busy, true, now.Add(time.Second))
	if st.running != 0 {
		t.Errorf("running %d after every session ended, want 0", st.running)
	}
	// The idle list and the map agree.
	n := 0
	for e := st.clients.oldestIdle(); e != nil && e != &st.clients.idle; e = e.next {
		if st.clients.m[e.addr] != e || e.sessions != 0 {
			t.Fatalf("idle list entry %v: in map %v, sessions %d", e.addr, st.clients.m[e.addr] == e, e.sessions)
		}
		n++
	}
	if n != len(st.clients.m) {
		t.Errorf("%d idle entries listed, %d in the table", n, len(st.clients.m))
	}
}

// TestClientTableSweep: the periodic sweep forgets the clients idle long
// enough for their burst to refill, oldest first, and keeps the others
// and those with sessions.
func TestClientTableSweep(t *testing.T) {
	c := (&Server{ClientRequestRate: 10}).resolve() // refills within 2 s
	var st serverState
	st.clients.init()
	t0 := time.Now()
	st.lastSweep = t0
	old, recent, running := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	for _, a := range []netip.Addr{old, running} {
		if !admitOK(&st, c, a, t0) {
			t.Fatal("refused")
		}
	}
	st.release(old, true, t0)
	if !admitOK(&st, c, recent, t0.Add(9*time.Second)) {
		t.Fatal("refused")
	}
	st.release(recent, true, t0.Add(9*time.Second))
	// A new client 11 s in triggers the sweep.
	if !admitOK(&st, c, netip.MustParseAddr("192.0.2.4"), t0.Add(11*time.Second)) {
		t.Fatal("refused")
	}
	for a, want := range map[netip.Addr]bool{old: false, recent: true, running: true} {
		if _, ok := st.clients.m[a]; ok != want {
			t.Errorf("%v in the table: %v, want %v", a, ok, want)
		}
	}
}

// TestClientFloodThroughListener: 70,000 read requests from distinct
// sources, through the listener's request handling (handlePacket, in
// single-port mode so that no socket is opened per session), are all
// admitted: none is refused with "server busy" for a full client table.
func TestClientFloodThroughListener(t *testing.T) {
	if testing.Short() {
		t.Skip("70,000 sessions")
	}
	const flood = 70_000
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	srv := &Server{
		Handler:           HandlerFunc(notFound), // each session ends at once
		SinglePort:        true,
		ClientRequestRate: 0.001, // the sweep frees nothing
		MaxSessions:       -1,
		Logger:            slog.New(slog.DiscardHandler),
	}
	c := srv.init()
	defer srv.Close()
	l := udp.NewListener(pc, true)
	dst := netip.MustParseAddr("127.0.0.1")
	rrq := wire.AppendRequest(nil, wire.OpRRQ, "pxelinux.0", "octet", nil)
	deadline := time.Now().Add(60 * time.Second)
	for i := range flood {
		for srv.state.activeN.Load() > 256 { // bounded: let sessions end
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d requests in 60 s", i, flood)
			}
			time.Sleep(time.Millisecond)
		}
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 100 + byte(i>>16), byte(i >> 8), byte(i)}), 40000)
		srv.handlePacket(c, l, rrq, src, dst, time.Now())
	}
	for range 1000 {
		if srv.state.activeN.Load() == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := srv.Stats()
	if st.BusyRefusals != 0 || st.Sessions[OutcomeError] != flood {
		t.Errorf("%d busy refusals, %d sessions ended with ERROR 1; want 0 and %d", st.BusyRefusals, st.Sessions[OutcomeError], flood)
	}
	srv.state.mu.Lock()
	n := len(srv.state.clients.m)
	srv.state.mu.Unlock()
	if n > maxClientEntries {
		t.Errorf("%d clients in the table, bound %d", n, maxClientEntries)
	}
}

// admitOK is serverState.admit under the server's limits, reporting only
// whether the session may start.
func admitOK(st *serverState, c *config, src netip.Addr, now time.Time) bool {
	ok, _, _ := st.admit(c, c.limits, src, now)
	return ok
}

// TestReleaseUndoesWhatAdmitCounted: when a client's requests meet
// different limits (an admission hook's, changed by a reload), each
// session's release undoes only what its admission counted: the client's
// entry ends with no session, whatever the order.
func TestReleaseUndoesWhatAdmitCounted(t *testing.T) {
	c := (&Server{}).resolve()
	var st serverState
	st.clients.init()
	now := time.Now()
	src := netip.MustParseAddr("192.0.2.1")
	perClient := requestLimits{maxSessionsPerClient: 1}
	none := requestLimits{}

	ok1, counted1, _ := st.admit(c, perClient, src, now)
	ok2, counted2, _ := st.admit(c, none, src, now)
	ok3, _, why := st.admit(c, perClient, src, now) // over 1: refused
	if !ok1 || !counted1 || !ok2 || counted2 || ok3 || why != busyClientSessions {
		t.Fatalf("admit: %v %v, %v %v, %v %v; want true true, true false, false max_sessions_per_client", ok1, counted1, ok2, counted2, ok3, why)
	}
	st.release(src, counted1, now)
	st.release(src, counted2, now)
	if e := st.clients.m[src]; st.running != 0 || e == nil || e.sessions != 0 || st.clients.oldestIdle() != e {
		t.Fatalf("after release: running %d, entry %+v", st.running, e)
	}
	if ok, _, _ := st.admit(c, perClient, src, now); !ok {
		t.Error("a client with no session left refused")
	}
}
