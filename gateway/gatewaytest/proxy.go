package gatewaytest

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/internal/wire"
)

// Direction is the way a datagram travels through a [Proxy].
type Direction int

const (
	// ClientToServer: RRQs, ACKs and client ERRORs.
	ClientToServer Direction = iota
	// ServerToClient: OACKs, DATA and server ERRORs.
	ServerToClient
)

func (d Direction) String() string {
	switch d {
	case ClientToServer:
		return "client->server"
	case ServerToClient:
		return "server->client"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// DefaultReorderHold is how long a datagram chosen for reordering waits
// for the next one in its direction when [ProxyConfig.ReorderHold] is zero.
const DefaultReorderHold = 20 * time.Millisecond

// MaxProxySockets caps the sockets a [Proxy] opens on each side (one per
// client address toward the server, one per server transfer ID toward the
// clients). Datagrams that would need more are dropped and counted.
const MaxProxySockets = 256

// ProxyConfig sets the impairments of a [Proxy]. The zero value relays
// every datagram once, in order, at once. Each rate is a probability
// between 0 and 1, applied to each datagram independently, in each
// direction.
type ProxyConfig struct {
	// DropRate is the probability that a datagram is dropped.
	DropRate float64
	// DuplicateRate is the probability that a datagram is sent twice.
	DuplicateRate float64
	// ReorderRate is the probability that a datagram is held back until the
	// next datagram in its direction has been sent (or ReorderHold has
	// passed), so that the two swap places.
	ReorderRate float64
	// ReorderHold bounds how long a reordered datagram is held;
	// DefaultReorderHold if zero.
	ReorderHold time.Duration

	// Delay is added to every datagram, plus a uniformly random extra
	// delay in [0, Jitter). Jitter larger than the gap between datagrams
	// reorders them too.
	Delay, Jitter time.Duration

	// Seed seeds the random decisions (a PCG of math/rand/v2; each
	// direction has its own stream). The decisions for the n-th datagram
	// of a direction depend only on Seed and n; which datagram is the n-th
	// depends on timing, so runs are repeatable but not bit-identical.
	Seed int64

	// Drop, if set, is called for every datagram before the random
	// decisions; returning true drops it (counted as dropped). It runs on
	// the proxy's goroutines, one at a time per direction, and must not
	// retain pkt.
	Drop func(dir Direction, pkt []byte) bool

	// Exempt, if set, is called for every datagram that Drop kept;
	// returning true relays it once, at once, spared from the random
	// impairments (say the final ACK, which a client sends only once).
	// Like Drop, it must not retain pkt.
	Exempt func(dir Direction, pkt []byte) bool
}

// ProxyStats are a [Proxy]'s counters. Arrays are indexed by [Direction].
type ProxyStats struct {
	Received   [2]int64 // datagrams read
	Relayed    [2]int64 // datagrams written, duplicates included
	Dropped    [2]int64 // datagrams dropped (random, Drop callback or socket cap)
	Exempted   [2]int64 // datagrams Exempt spared
	Duplicated [2]int64 // datagrams sent twice
	Reordered  [2]int64 // datagrams held back to swap with the next one

	// FromServer counts the datagrams read from the server by TFTP opcode
	// (index 3 is DATA, 6 OACK, 5 ERROR; 0 is anything unparseable or
	// unknown), before any impairment: what the server sent.
	FromServer [7]int64
}

// ServerData returns how many DATA packets the server sent through the
// proxy.
func (s ProxyStats) ServerData() int64 { return s.FromServer[wire.OpDATA] }

// Proxy relays TFTP between clients and one server through loopback
// sockets, impairing the traffic as its [ProxyConfig] says.
//
// Clients send their requests to [Proxy.Addr]. For every client address
// the proxy opens a socket toward the server, and for every server address
// (transfer ID) it hears from, a socket toward the clients, so the client
// sees one distinct proxy port per server TID, and ERROR 5 for a wrong TID
// still works end to end. Datagrams from the server's listening port come
// back from [Proxy.Addr].
type Proxy struct {
	cfg    ProxyConfig
	target netip.AddrPort
	front  *face

	mu        sync.Mutex
	faces     map[netip.AddrPort]*face     // by server address
	upstreams map[netip.AddrPort]*upstream // by client address
	closed    bool

	dirMu [2]sync.Mutex // serialises decisions per direction
	rng   [2]*rand.Rand // guarded by dirMu
	held  [2]*pending   // guarded by dirMu
	hold  [2]*time.Timer

	sched scheduler

	wg   sync.WaitGroup
	done chan struct{}

	received, relayed, dropped, exempted, duplicated, reordered [2]atomic.Int64
	fromServer                                                  [7]atomic.Int64
	readErrors                                                  atomic.Int64

	closeOnce sync.Once
}

// face is a socket the clients talk to; it stands for one server address.
type face struct {
	conn   *net.UDPConn
	server netip.AddrPort
}

// upstream is a socket the server talks to; it stands for one client.
type upstream struct {
	conn   *net.UDPConn
	client netip.AddrPort
}

// NewProxy starts a proxy on 127.0.0.1:0 relaying to target (a server's
// listening address). It is closed by t.Cleanup.
func NewProxy(t testing.TB, target netip.AddrPort, cfg ProxyConfig) *Proxy {
	t.Helper()
	for _, r := range []float64{cfg.DropRate, cfg.DuplicateRate, cfg.ReorderRate} {
		if r < 0 || r > 1 {
			t.Fatalf("gatewaytest: proxy rate %v out of [0, 1]", r)
		}
	}
	if cfg.Delay < 0 || cfg.Jitter < 0 || cfg.ReorderHold < 0 {
		t.Fatalf("gatewaytest: negative proxy delay")
	}
	if cfg.ReorderHold == 0 {
		cfg.ReorderHold = DefaultReorderHold
	}
	c, err := listenLoopback()
	if err != nil {
		t.Fatalf("gatewaytest: proxy listen: %v", err)
	}
	target = netip.AddrPortFrom(target.Addr().Unmap(), target.Port())
	p := &Proxy{
		cfg:       cfg,
		target:    target,
		front:     &face{conn: c, server: target},
		faces:     make(map[netip.AddrPort]*face),
		upstreams: make(map[netip.AddrPort]*upstream),
		done:      make(chan struct{}),
	}
	for d := range p.rng {
		a := splitmix64(uint64(cfg.Seed)*2 + uint64(d))
		p.rng[d] = rand.New(rand.NewPCG(a, splitmix64(a)))
	}
	p.faces[target] = p.front
	p.sched.init()
	p.wg.Add(2)
	go p.readFace(p.front)
	go func() {
		defer p.wg.Done()
		p.sched.run(p.done, p.write)
	}()
	t.Cleanup(func() { p.Close() })
	return p
}

// Addr returns the address clients send their requests to.
func (p *Proxy) Addr() netip.AddrPort { return p.front.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Stats returns the counters now.
func (p *Proxy) Stats() ProxyStats {
	var s ProxyStats
	for d := range 2 {
		s.Received[d] = p.received[d].Load()
		s.Relayed[d] = p.relayed[d].Load()
		s.Dropped[d] = p.dropped[d].Load()
		s.Exempted[d] = p.exempted[d].Load()
		s.Duplicated[d] = p.duplicated[d].Load()
		s.Reordered[d] = p.reordered[d].Load()
	}
	for i := range s.FromServer {
		s.FromServer[i] = p.fromServer[i].Load()
	}
	return s
}

// Close stops the proxy: its sockets are closed, datagrams still delayed
// or held are discarded, and its goroutines have returned when Close does.
// It may be called more than once.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		conns := []*net.UDPConn{}
		for _, f := range p.faces {
			conns = append(conns, f.conn)
		}
		for _, u := range p.upstreams {
			conns = append(conns, u.conn)
		}
		p.mu.Unlock()
		for d := range p.dirMu {
			p.dirMu[d].Lock()
			if p.hold[d] != nil {
				p.hold[d].Stop()
			}
			p.held[d] = nil
			p.dirMu[d].Unlock()
		}
		close(p.done)
		for _, c := range conns {
			c.Close()
		}
		p.wg.Wait()
	})
	return nil
}

// splitmix64 spreads a small seed over 64 bits: PCG streams from nearby
// raw seeds start out correlated.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// readFace relays datagrams from clients to the server address f stands
// for, each through the client's own upstream socket.
func (p *Proxy) readFace(f *face) {
	defer p.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := f.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if p.readFailed(err) {
				return
			}
			continue
		}
		p.received[ClientToServer].Add(1)
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		u := p.upstream(from)
		if u == nil {
			p.dropped[ClientToServer].Add(1)
			continue
		}
		p.relay(ClientToServer, buf[:n], u.conn, f.server)
	}
}

// readUpstream relays datagrams from the server to u's client, each
// through the face of the server address it came from.
func (p *Proxy) readUpstream(u *upstream) {
	defer p.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := u.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if p.readFailed(err) {
				return
			}
			continue
		}
		p.received[ServerToClient].Add(1)
		op, _ := wire.PacketOpcode(buf[:n]) // 0 if unparseable or unknown
		p.fromServer[op].Add(1)
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		f := p.face(from)
		if f == nil {
			p.dropped[ServerToClient].Add(1)
			continue
		}
		p.relay(ServerToClient, buf[:n], f.conn, u.client)
	}
}

// readFailed reports whether a reader must stop: the proxy is closed, or
// its socket keeps failing.
func (p *Proxy) readFailed(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return true
	}
	select {
	case <-p.done:
		return true
	default:
	}
	// Transient (say ICMP feedback); give up on a socket that only fails.
	return p.readErrors.Add(1) > 10000
}

// upstream returns the socket toward the server for client, opening it
// (and its reader) on first use; nil once closed or at the cap.
func (p *Proxy) upstream(client netip.AddrPort) *upstream {
	p.mu.Lock()
	defer p.mu.Unlock()
	if u, ok := p.upstreams[client]; ok {
		return u
	}
	if p.closed || len(p.upstreams) >= MaxProxySockets {
		return nil
	}
	c, err := listenLoopback()
	if err != nil {
		return nil
	}
	u := &upstream{conn: c, client: client}
	p.upstreams[client] = u
	p.wg.Add(1)
	go p.readUpstream(u)
	return u
}

// face returns the socket toward the clients for server, opening it on
// first use; nil once closed or at the cap.
func (p *Proxy) face(server netip.AddrPort) *face {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.faces[server]; ok {
		return f
	}
	if p.closed || len(p.faces) >= MaxProxySockets {
		return nil
	}
	c, err := listenLoopback()
	if err != nil {
		return nil
	}
	f := &face{conn: c, server: server}
	p.faces[server] = f
	p.wg.Add(1)
	go p.readFace(f)
	return f
}

// pending is a datagram on its way out.
type pending struct {
	at     time.Time
	seq    uint64 // FIFO among equal times
	dir    Direction
	conn   *net.UDPConn
	to     netip.AddrPort
	pkt    []byte
	copies int
}

// relay applies the impairments to one datagram. pkt is only valid during
// the call.
func (p *Proxy) relay(dir Direction, pkt []byte, conn *net.UDPConn, to netip.AddrPort) {
	mu := &p.dirMu[dir]
	mu.Lock()
	// Four draws per datagram, always, so that one decision never shifts
	// the others.
	r := p.rng[dir]
	drop, dup, reorder, jit := r.Float64(), r.Float64(), r.Float64(), r.Float64()
	if p.cfg.Drop != nil && p.cfg.Drop(dir, pkt) {
		mu.Unlock()
		p.dropped[dir].Add(1)
		return
	}
	cur := &pending{dir: dir, conn: conn, to: to, copies: 1}
	if p.cfg.Exempt != nil && p.cfg.Exempt(dir, pkt) {
		p.exempted[dir].Add(1)
		cur.pkt = pkt
		p.write(cur)
		mu.Unlock()
		return
	}
	if drop < p.cfg.DropRate {
		mu.Unlock()
		p.dropped[dir].Add(1)
		return
	}
	if dup < p.cfg.DuplicateRate {
		cur.copies = 2
		p.duplicated[dir].Add(1)
	}
	delay := p.cfg.Delay + time.Duration(jit*float64(p.cfg.Jitter))
	if reorder < p.cfg.ReorderRate && p.held[dir] == nil {
		cur.pkt = append([]byte(nil), pkt...)
		p.held[dir] = cur
		p.reordered[dir].Add(1)
		if p.hold[dir] == nil {
			p.hold[dir] = time.AfterFunc(p.cfg.ReorderHold, func() { p.release(dir) })
		} else {
			p.hold[dir].Reset(p.cfg.ReorderHold)
		}
		mu.Unlock()
		return
	}
	held := p.held[dir]
	p.held[dir] = nil
	if held != nil {
		p.hold[dir].Stop()
	}
	if delay == 0 && held == nil {
		// The common case: straight out, no copy.
		cur.pkt = pkt
		p.write(cur)
		mu.Unlock()
		return
	}
	cur.pkt = append([]byte(nil), pkt...)
	p.emit(cur, delay)
	if held != nil {
		p.emit(held, delay)
	}
	mu.Unlock()
}

// release sends the held datagram of dir when no other came in time.
func (p *Proxy) release(dir Direction) {
	mu := &p.dirMu[dir]
	mu.Lock()
	defer mu.Unlock()
	held := p.held[dir]
	p.held[dir] = nil
	if held == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	p.emit(held, p.cfg.Delay)
}

// emit sends d now or hands it to the scheduler. The caller holds dirMu.
func (p *Proxy) emit(d *pending, delay time.Duration) {
	if delay <= 0 {
		p.write(d)
		return
	}
	d.at = time.Now().Add(delay)
	p.sched.push(d)
}

func (p *Proxy) write(d *pending) {
	for range d.copies {
		// Counted before the write: the receiver may act on the datagram
		// (a session end, and a test reading Stats) before the write returns.
		p.relayed[d.dir].Add(1)
		if _, err := d.conn.WriteToUDPAddrPort(d.pkt, d.to); err != nil {
			p.relayed[d.dir].Add(-1)
		}
	}
}

// scheduler sends delayed datagrams at their time, from one goroutine.
type scheduler struct {
	mu   sync.Mutex
	q    pendingHeap
	seq  uint64
	wake chan struct{} // capacity 1
}

func (s *scheduler) init() { s.wake = make(chan struct{}, 1) }

func (s *scheduler) push(d *pending) {
	s.mu.Lock()
	s.seq++
	d.seq = s.seq
	heap.Push(&s.q, d)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run sends what is due until done is closed; what is left is discarded.
func (s *scheduler) run(done <-chan struct{}, write func(*pending)) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		var due []*pending
		now := time.Now()
		for len(s.q) > 0 && !s.q[0].at.After(now) {
			due = append(due, heap.Pop(&s.q).(*pending))
		}
		wait := time.Hour
		if len(s.q) > 0 {
			wait = s.q[0].at.Sub(now)
		}
		s.mu.Unlock()
		for _, d := range due {
			write(d)
		}
		if len(due) > 0 {
			continue // sending took time: look again before sleeping
		}
		timer.Reset(wait)
		select {
		case <-done:
			return
		case <-s.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

type pendingHeap []*pending

func (h pendingHeap) Len() int { return len(h) }
func (h pendingHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h pendingHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pendingHeap) Push(x any)   { *h = append(*h, x.(*pending)) }
func (h *pendingHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return d
}
