package stats

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/grpcauth"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// Defaults of [PublisherConfig].
const (
	DefaultQueueSize    = 4096
	DefaultBatchSize    = 512
	DefaultBatchTimeout = 10 * time.Second
	DefaultMinBackoff   = 100 * time.Millisecond
	DefaultMaxBackoff   = 10 * time.Second
)

// MaxSends is how many batches an event is sent in without being
// acknowledged before the [Publisher] drops it (and counts it). Events that
// never left the edge (the sink could not be reached) are not charged: they
// wait in the queue, which bounds them.
const MaxSends = 4

// PublisherConfig configures a [Publisher]. Only Target is required.
type PublisherConfig struct {
	// Target is the gRPC target of the StatsSink ("collector:7069",
	// "dns:///collector.example:7069", ...). Required.
	Target string

	// EdgeID stamps every event.
	EdgeID string

	// TLS, if not nil, makes the connection use TLS with this
	// configuration (set Certificates for mutual TLS); else it is
	// plaintext.
	TLS *tls.Config

	// Token, if not empty, is sent with every call as
	// "authorization: Bearer <Token>". TokenFile names a file holding the
	// token instead, read again when it changes (checked at most once a
	// second). Set at most one of them. A token is only sent over TLS, or
	// in plaintext to a target whose hosts are all loopback addresses
	// ("localhost", or a unix socket): NewPublisher refuses the others.
	Token     string
	TokenFile string

	// QueueSize bounds the events waiting for the sink, including those of
	// the batch being sent; DefaultQueueSize if zero. When it is full new
	// SessionStats are dropped and counted. A ServerStats is always queued
	// (it replaces the one waiting, if any).
	QueueSize int

	// BatchSize bounds the events of one Publish stream;
	// DefaultBatchSize if zero.
	BatchSize int

	// BatchTimeout bounds the time a batch may take, from opening its
	// stream to the sink's acknowledgement; DefaultBatchTimeout if zero. A
	// sink that does not answer in time acknowledged nothing.
	BatchTimeout time.Duration

	// MinBackoff and MaxBackoff bound the wait after a batch that was not
	// acknowledged: it doubles from MinBackoff at each failure up to
	// MaxBackoff, with jitter (each wait is drawn between half and all of
	// it), and starts again from MinBackoff after an acknowledged batch.
	// DefaultMinBackoff and DefaultMaxBackoff if zero.
	MinBackoff, MaxBackoff time.Duration

	// DialOptions are added after the client connection's own options (so
	// they may replace its transport credentials).
	DialOptions []grpc.DialOption

	// Metrics, if set, counts the delivered and dropped events
	// (tftpgw_stats_events_delivered_total,
	// tftpgw_stats_events_dropped_total) and provides the backend errors
	// reported in ServerStats.
	Metrics *Metrics

	// Logger receives the start and the end of each outage of the sink;
	// slog.Default() if nil.
	Logger *slog.Logger

	// sleep waits d, or returns false when ctx ends first; tests replace
	// it to see the backoff without waiting for it.
	sleep func(ctx context.Context, d time.Duration) bool
}

// Publisher streams an edge's stats to a StatsSink: a SessionStats event
// per finished session and a ServerStats event per report, each numbered
// (StatsEvent.sequence) and stamped with the Publisher's random instance
// ID.
//
// [Publisher.SessionStats] and [Publisher.ServerStats] never block: they
// put the event in a bounded queue, or drop and count it. A goroutine
// owned by the Publisher sends the queue in batches, one Publish stream
// per batch; the sink's PublishResponse.events_received acknowledges the
// first events of the batch, which count as delivered. The others are sent
// again in the next batch, after a backoff, and dropped (and counted) once
// they were sent in [MaxSends] batches. At most one ServerStats waits at a
// time: a newer one replaces it (the replaced one is dropped) and its
// delta is computed against the last acknowledged report, so it covers
// both intervals. Every event given to the Publisher is thus either
// delivered or dropped, and the number dropped is reported in the next
// ServerStats (Counters.stats_events_dropped) and by [Metrics].
//
// The Publisher logs the start of an outage of the sink once ("stats sink
// unreachable", or an error naming the cause when the sink refuses this
// edge's credentials or does not serve StatsSink) and its end once ("stats
// sink reachable again"). [Publisher.Close] sends what is queued and
// stops.
type Publisher struct {
	cfg      PublisherConfig
	logger   *slog.Logger
	conn     *grpc.ClientConn
	client   tftpgwv1.StatsSinkClient
	instance string
	reports  ServerReports

	mu       sync.Mutex
	queue    []*item // waiting, in sequence order
	inflight int     // events in the batch being sent
	report   *item   // the ServerStats waiting in queue, if any
	flying   *item   // the ServerStats in the batch being sent, if any
	closed   bool
	seq      uint64 // of the last event made
	counts   PublisherCounts

	wake      chan struct{}   // signalled when an event is queued
	ctx       context.Context // cancelled to abort all I/O
	cancel    context.CancelFunc
	flush     chan struct{} // closed by Close: drain, then stop
	done      chan struct{} // closed when run returns
	closeOnce sync.Once
	closeErr  error
}

// item is an event waiting for the sink.
type item struct {
	ev     *tftpgwv1.StatsEvent // nil for a report not built yet
	seq    uint64
	sends  int // batches it was sent in without acknowledgement
	report *reportArgs
	commit func(delivered bool) // of a built report
	// next is a newer report made while this one was in a batch being
	// sent: settle decides whether it takes this one's place.
	next *reportArgs
}

// reportArgs are what a ServerStats is built from when its batch starts,
// so that its delta counts from the last acknowledged report.
type reportArgs struct {
	s gateway.ServerStats
	x Extra
}

// NewPublisher creates the client connection (which connects lazily) and
// starts the goroutine that publishes; it does not wait for the sink.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.Target == "" {
		return nil, errors.New("stats: publisher: empty sink target")
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = DefaultBatchTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.sleep == nil {
		cfg.sleep = sleep
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// Reconnect as eagerly as the publisher retries, so a sink that
		// comes back is used within MaxBackoff.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  cfg.MinBackoff,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   cfg.MaxBackoff,
			},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithUserAgent("tftpgw"),
	}
	if cfg.Token != "" || cfg.TokenFile != "" {
		tc, err := grpcauth.NewTokenCreds(cfg.Token, cfg.TokenFile, cfg.Target, cfg.TLS == nil)
		if err != nil {
			return nil, fmt.Errorf("stats: publisher: %w", err)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(tc))
	}
	opts = append(opts, cfg.DialOptions...)
	conn, err := grpc.NewClient(cfg.Target, opts...)
	if err != nil {
		return nil, fmt.Errorf("stats: publisher: sink %q: %w", cfg.Target, err)
	}
	var id [8]byte
	rand.Read(id[:])
	ctx, cancel := context.WithCancel(context.Background())
	p := &Publisher{
		cfg:      cfg,
		logger:   logger.With("sink", cfg.Target),
		conn:     conn,
		client:   tftpgwv1.NewStatsSinkClient(conn),
		instance: hex.EncodeToString(id[:]),
		reports:  ServerReports{EdgeID: cfg.EdgeID},
		wake:     make(chan struct{}, 1),
		ctx:      ctx,
		cancel:   cancel,
		flush:    make(chan struct{}),
		done:     make(chan struct{}),
	}
	go p.run()
	return p, nil
}

// Instance returns the Publisher's random ID, sent in every event
// (StatsEvent.instance).
func (p *Publisher) Instance() string { return p.instance }

// SessionStats queues the stats of a finished session. It has the
// signature of [gateway.Server.SessionStatsFunc] and never blocks.
func (p *Publisher) SessionStats(s gateway.SessionStats) {
	ev := &tftpgwv1.StatsEvent{
		Event:    &tftpgwv1.StatsEvent_Session{Session: SessionProto(p.cfg.EdgeID, s)},
		Instance: p.instance,
	}
	p.mu.Lock()
	p.counts.Events++
	p.seq++
	ev.Sequence = p.seq
	if p.closed || len(p.queue)+p.inflight >= p.cfg.QueueSize {
		p.counts.Dropped++
		p.mu.Unlock()
		p.addDropped(1)
		return
	}
	p.queue = append(p.queue, &item{ev: ev, seq: p.seq})
	p.mu.Unlock()
	p.signal()
}

// ServerStats queues a server report; the report's delta is computed when
// it is first sent, against the last report the sink acknowledged. A
// report still waiting for the sink is replaced by this one: in place,
// keeping its place in the queue and its sequence number, if it was never
// written to a stream (the sink has not seen that number: nothing is
// lost and the sequence has no gap; counted as superseded); otherwise it
// is taken out and counted as dropped (the sink may have seen it). Either
// way the newer report's delta covers both intervals. It has the
// signature of [gateway.Server.ServerStatsFunc] and never blocks.
func (p *Publisher) ServerStats(s gateway.ServerStats) {
	var x Extra
	if p.cfg.Metrics != nil {
		x.BackendErrors = p.cfg.Metrics.BackendErrors()
	}
	s = cloneServerStats(s)
	p.mu.Lock()
	p.counts.Events++
	if f := p.flying; f != nil && !p.closed {
		// The report being sent: whether this one takes its place or
		// number is known when its batch ends (settle).
		if f.next != nil {
			p.counts.Superseded++ // a newer report than the one waiting
		}
		f.next = &reportArgs{s: s, x: x}
		p.mu.Unlock()
		return
	}
	if old := p.report; old != nil && !p.closed && old.sends == 0 {
		p.supersede(old, &reportArgs{s: s, x: x})
		p.mu.Unlock()
		p.signal()
		return
	}
	p.seq++
	dropped := 0
	if p.closed {
		dropped++
	} else {
		if old := p.report; old != nil {
			p.queue = slices.DeleteFunc(p.queue, func(it *item) bool { return it == old })
			if old.commit != nil {
				old.commit(false)
			}
			dropped++
		}
	}
	p.counts.Dropped += uint64(dropped)
	if !p.closed {
		x.EventsDropped = p.counts.Dropped
		it := &item{seq: p.seq, report: &reportArgs{s: s, x: x}}
		p.queue = append(p.queue, it)
		p.report = it
	}
	p.mu.Unlock()
	p.addDropped(dropped)
	p.signal()
}

// supersede makes it, a report never written to a stream, the newer
// report r: it keeps its place and sequence number, and is built again
// from r when its batch starts. The caller holds p.mu.
func (p *Publisher) supersede(it *item, r *reportArgs) {
	if it.commit != nil {
		it.commit(false)
	}
	it.report, it.ev, it.commit = r, nil, nil
	p.counts.Superseded++
}

// PublisherCounts are a Publisher's event counters. Events = Delivered +
// Dropped + Superseded + Pending; after [Publisher.Close] Pending is 0.
type PublisherCounts struct {
	Events     uint64 // given to the Publisher
	Delivered  uint64 // acknowledged by the sink
	Dropped    uint64 // queue full, replaced report already sent, sent MaxSends times, or not delivered by Close
	Superseded uint64 // server reports replaced by a newer one before they were sent: not lost, the newer covers them
	Pending    uint64 // queued or being sent
}

// Counts returns the event counters.
func (p *Publisher) Counts() PublisherCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts
	c.Pending = c.Events - c.Delivered - c.Dropped - c.Superseded
	return c
}

// Close stops accepting events and sends those still queued, the final
// ServerStats included, in batches until all are acknowledged or dropped.
// If ctx ends first it aborts the batch being sent; the events not
// delivered are counted as dropped and ctx's error is returned. Close is
// idempotent; later calls return the first one's result.
func (p *Publisher) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		close(p.flush)
		select {
		case <-p.done:
		case <-ctx.Done():
			p.closeErr = fmt.Errorf("stats: publisher: flush: %w", ctx.Err())
			p.cancel()
			<-p.done
		}
		p.cancel()
		p.mu.Lock()
		n := len(p.queue)
		for _, it := range p.queue {
			if it.commit != nil {
				it.commit(false)
			}
		}
		p.queue, p.report = nil, nil
		p.counts.Dropped += uint64(n)
		p.mu.Unlock()
		p.addDropped(n)
		if err := p.conn.Close(); err != nil && p.closeErr == nil {
			p.closeErr = fmt.Errorf("stats: publisher: %w", err)
		}
	})
	return p.closeErr
}

func (p *Publisher) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Publisher) addDropped(n int) {
	if n > 0 && p.cfg.Metrics != nil {
		p.cfg.Metrics.addDropped(n)
	}
}

// run sends the queue in batches until Close.
func (p *Publisher) run() {
	defer close(p.done)
	var (
		o       outage
		attempt int // failed batches since the last acknowledged one
	)
	for {
		batch := p.next()
		if batch == nil {
			return
		}
		sent, acked, err := p.send(batch)
		droppedBefore := p.Counts().Dropped
		if p.settle(batch, sent, acked, err) {
			attempt = 0
			o.end(p)
			continue
		}
		if p.ctx.Err() != nil {
			return
		}
		o.begin(p, err, sent, acked, droppedBefore)
		if !p.cfg.sleep(p.ctx, p.backoff(attempt)) {
			return
		}
		attempt++
	}
}

// next waits for events and takes the next batch; nil when the Publisher
// is closed and its queue empty, or aborted.
func (p *Publisher) next() []*item {
	for {
		p.mu.Lock()
		if n := min(len(p.queue), p.cfg.BatchSize); n > 0 {
			batch := slices.Clone(p.queue[:n])
			clear(p.queue[:n])
			p.queue = p.queue[n:]
			p.inflight = n
			for _, it := range batch {
				if it.report == nil {
					continue
				}
				if it == p.report {
					p.report = nil // in flight: a newer report waits in it.next
				}
				p.flying = it
				if it.ev == nil {
					x := it.report.x
					x.EventsDropped = p.counts.Dropped // as of this report's first send
					r, commit := p.reports.Next(it.report.s, x, it.report.s.Final)
					it.ev = &tftpgwv1.StatsEvent{Event: &tftpgwv1.StatsEvent_Server{Server: r}, Sequence: it.seq, Instance: p.instance}
					it.commit = commit
				}
			}
			p.mu.Unlock()
			return batch
		}
		closed := p.closed
		p.mu.Unlock()
		if closed {
			return nil
		}
		select {
		case <-p.wake:
		case <-p.flush:
		case <-p.ctx.Done():
			return nil
		}
	}
}

// send publishes batch on one stream and returns how many events were
// written to it and how many the sink acknowledged.
func (p *Publisher) send(batch []*item) (sent, acked int, err error) {
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.BatchTimeout)
	defer cancel()
	stream, err := p.client.Publish(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, it := range batch {
		// io.EOF means the sink ended the stream: CloseAndRecv says how.
		if stream.Send(it.ev) != nil {
			break
		}
		sent++
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return sent, 0, err
	}
	return sent, int(min(resp.GetEventsReceived(), uint64(sent))), nil
}

// settle counts the acknowledged events of batch as delivered and puts the
// others back at the front of the queue, or drops them. It reports whether
// the whole batch was acknowledged.
func (p *Publisher) settle(batch []*item, sent, acked int, err error) bool {
	p.mu.Lock()
	p.inflight = 0
	p.flying = nil
	var retry, later []*item
	dropped := 0
	// queueNext queues the newer report made while it was being sent,
	// with a sequence number of its own.
	queueNext := func(it *item) {
		p.seq++
		n := &item{seq: p.seq, report: it.next}
		it.next = nil
		later = append(later, n)
		p.report = n
	}
	for i, it := range batch {
		if i < acked {
			p.counts.Delivered++
			if it.commit != nil {
				it.commit(true)
			}
			if it.next != nil {
				queueNext(it)
			}
			continue
		}
		if i < sent {
			it.sends++
		}
		if it.next != nil {
			if it.sends == 0 {
				// Never written to a stream: the newer report takes its
				// place and sequence number, as in ServerStats.
				next := it.next
				it.next = nil
				p.supersede(it, next)
				p.report = it
				retry = append(retry, it)
				continue
			}
			// Written: the sink may have seen its number. Dropped; the
			// newer one covers its interval.
			if it.commit != nil {
				it.commit(false)
			}
			dropped++
			queueNext(it)
			continue
		}
		// A report replaced meanwhile by a newer one is dropped: the newer
		// one covers its interval.
		if it.sends >= MaxSends || it.report != nil && p.report != nil {
			if it.commit != nil {
				it.commit(false)
			}
			dropped++
			continue
		}
		if it.report != nil {
			p.report = it
		}
		retry = append(retry, it)
	}
	p.queue = append(append(retry, p.queue...), later...)
	p.counts.Dropped += uint64(dropped)
	p.mu.Unlock()
	p.addDropped(dropped)
	if p.cfg.Metrics != nil && acked > 0 {
		p.cfg.Metrics.addDelivered(acked)
	}
	return err == nil && acked == len(batch)
}

// backoff returns the wait after attempt+1 failed batches in a row:
// MinBackoff doubled attempt times, at most MaxBackoff, of which a random
// half ("equal jitter", so that edges do not retry in step).
func (p *Publisher) backoff(attempt int) time.Duration {
	b := p.cfg.MaxBackoff
	if attempt < 40 {
		if d := p.cfg.MinBackoff << attempt; d > 0 && d < b {
			b = d
		}
	}
	return b/2 + mrand.N(b/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// outage tracks a period in which batches are not acknowledged, to log
// its start and its end once.
type outage struct {
	since   time.Time
	dropped uint64          // the Publisher's drops when it started
	logged  map[string]bool // causes logged
}

// begin records a failed batch, logging the outage if it starts. A later
// batch of the same outage is logged only if it fails for a configuration
// error not logged yet (the sink came back but refuses this edge's
// credentials, say): causes that alternate, such as a TLS refusal and the
// broken connection that follows it, make one line.
func (o *outage) begin(p *Publisher, err error, sent, acked int, droppedBefore uint64) {
	cause, level, msg := failure(err, sent, acked)
	if o.since.IsZero() {
		o.since, o.dropped, o.logged = time.Now(), droppedBefore, map[string]bool{}
	} else if o.logged[cause] || level < slog.LevelError {
		return
	}
	o.logged[cause] = true
	args := []any{"queued", p.Counts().Pending}
	if err != nil {
		args = append(args, "err", err)
	} else {
		args = append(args, "sent", sent, "acknowledged", acked)
	}
	p.logger.Log(context.Background(), level, msg, args...)
}

// end logs the end of an outage, if there was one.
func (o *outage) end(p *Publisher) {
	if o.since.IsZero() {
		return
	}
	p.logger.Info("stats sink reachable again", "outage", time.Since(o.since),
		"dropped", p.Counts().Dropped-o.dropped)
	*o = outage{}
}

// failure classifies a batch that was not acknowledged: an outage of the
// sink, or a configuration error that an operator must fix.
func failure(err error, sent, acked int) (cause string, level slog.Level, msg string) {
	if err == nil {
		return "partial", slog.LevelWarn, "stats sink did not acknowledge every event"
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unimplemented:
		return "unimplemented", slog.LevelError, "stats sink does not serve tftpgw.v1.StatsSink (UNIMPLEMENTED): wrong -stats-sink address?"
	case codes.Unauthenticated, codes.PermissionDenied:
		return "auth", slog.LevelError, "stats sink refused this edge's credentials (" + st.Code().String() + "): check the token"
	case codes.Unavailable:
		if m := st.Message(); strings.Contains(m, "tls:") || strings.Contains(m, "handshake") || strings.Contains(m, "certificate") {
			return "tls", slog.LevelError, "stats sink TLS handshake failed: check the certificates"
		}
	}
	return "unreachable", slog.LevelWarn, "stats sink unreachable"
}
