package stats

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tftpgw/tftpgw/gateway"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// Defaults of [PublisherConfig].
const (
	DefaultQueueSize  = 4096
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
)

// PublisherConfig configures a [Publisher].
type PublisherConfig struct {
	// Target is the gRPC target of the StatsSink ("collector:7069",
	// "dns:///collector.example:7069", ...). Required.
	Target string

	// EdgeID stamps every event.
	EdgeID string

	// QueueSize bounds the events waiting for the sink; DefaultQueueSize if
	// zero. When it is full new events are dropped and counted.
	QueueSize int

	// DialOptions are added to the client connection's options. The
	// connection is plaintext (insecure credentials) unless they set
	// transport credentials.
	DialOptions []grpc.DialOption

	// MinBackoff and MaxBackoff bound the wait between two attempts to
	// reach the sink; DefaultMinBackoff and DefaultMaxBackoff if zero.
	MinBackoff, MaxBackoff time.Duration

	// Metrics, if set, counts the dropped events
	// (tftpgw_stats_events_dropped_total) and provides the backend errors
	// reported in ServerStats.
	Metrics *Metrics

	// Logger receives connection changes; slog.Default() if nil.
	Logger *slog.Logger
}

// Publisher streams an edge's stats to a StatsSink: a SessionStats event
// per finished session and a ServerStats event per report.
//
// [Publisher.SessionStats] and [Publisher.ServerStats] never block: they
// convert the stats and put them in a bounded queue, or drop and count
// them when it is full. A goroutine owned by the Publisher drains the
// queue into a Publish stream; when the sink is down or the stream breaks
// it reconnects with an exponential backoff, and the events that arrive
// meanwhile wait in the queue (up to its bound). The number of dropped
// events is reported in the next ServerStats and by [Metrics].
// [Publisher.Close] flushes the queue and ends the stream.
type Publisher struct {
	cfg     PublisherConfig
	logger  *slog.Logger
	conn    *grpc.ClientConn
	client  tftpgwv1.StatsSinkClient
	queue   chan *tftpgwv1.StatsEvent
	reports ServerReports

	closed                atomic.Bool
	queued, sent, dropped atomic.Uint64
	ctx                   context.Context // cancelled to abort all I/O
	cancel                context.CancelFunc
	flush                 chan struct{} // closed by Close: drain, then stop
	done                  chan struct{} // closed when run returns
	closeOnce             sync.Once
	closeErr              error
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
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
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
	}, cfg.DialOptions...)
	conn, err := grpc.NewClient(cfg.Target, opts...)
	if err != nil {
		return nil, fmt.Errorf("stats: publisher: sink %q: %w", cfg.Target, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Publisher{
		cfg:     cfg,
		logger:  logger.With("sink", cfg.Target),
		conn:    conn,
		client:  tftpgwv1.NewStatsSinkClient(conn),
		queue:   make(chan *tftpgwv1.StatsEvent, cfg.QueueSize),
		reports: ServerReports{EdgeID: cfg.EdgeID},
		ctx:     ctx,
		cancel:  cancel,
		flush:   make(chan struct{}),
		done:    make(chan struct{}),
	}
	go p.run()
	return p, nil
}

// SessionStats queues the stats of a finished session. It has the
// signature of [gateway.Server.SessionStatsFunc] and never blocks.
func (p *Publisher) SessionStats(s gateway.SessionStats) {
	if p.full() {
		p.drop(1)
		return
	}
	p.enqueue(&tftpgwv1.StatsEvent{Event: &tftpgwv1.StatsEvent_Session{Session: SessionProto(p.cfg.EdgeID, s)}})
}

// ServerStats queues a server report, with its delta since the previous
// queued report. It has the signature of [gateway.Server.ServerStatsFunc]
// and never blocks.
func (p *Publisher) ServerStats(s gateway.ServerStats) {
	x := Extra{DuplicateAcks: count(s.DuplicateAcks), EventsDropped: p.dropped.Load()}
	if p.cfg.Metrics != nil {
		x.BackendErrors = p.cfg.Metrics.BackendErrors()
	}
	r, commit := p.reports.Next(s, x, s.Final)
	commit(p.enqueue(&tftpgwv1.StatsEvent{Event: &tftpgwv1.StatsEvent_Server{Server: r}}))
}

// PublisherCounts are a Publisher's event counters. Queued + Dropped is
// the number of events given to it.
type PublisherCounts struct {
	Queued  uint64 // put in the queue
	Sent    uint64 // written to a Publish stream
	Dropped uint64 // dropped: queue full, Publisher closed, or not flushed in time by Close
}

// Counts returns the event counters.
func (p *Publisher) Counts() PublisherCounts {
	return PublisherCounts{Queued: p.queued.Load(), Sent: p.sent.Load(), Dropped: p.dropped.Load()}
}

// Close stops accepting events, sends those still queued and closes the
// stream (CloseAndRecv). If ctx ends first it aborts the stream; the
// events not sent are counted as dropped and ctx's error is returned.
// Close is idempotent; later calls return the first one's result.
func (p *Publisher) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		close(p.flush)
		select {
		case <-p.done:
		case <-ctx.Done():
			p.closeErr = fmt.Errorf("stats: publisher: flush: %w", ctx.Err())
			p.cancel()
			<-p.done
		}
		p.cancel()
		// Whatever is left was not delivered (including events that raced
		// with Close).
		if n := len(p.queue); n > 0 {
			p.drop(n)
		}
		if err := p.conn.Close(); err != nil && p.closeErr == nil {
			p.closeErr = fmt.Errorf("stats: publisher: %w", err)
		}
	})
	return p.closeErr
}

func (p *Publisher) full() bool { return p.closed.Load() || len(p.queue) == cap(p.queue) }

// enqueue puts ev in the queue without blocking and reports whether it
// did; otherwise ev is counted as dropped.
func (p *Publisher) enqueue(ev *tftpgwv1.StatsEvent) bool {
	if !p.closed.Load() {
		select {
		case p.queue <- ev:
			p.queued.Add(1)
			return true
		default:
		}
	}
	p.drop(1)
	return false
}

func (p *Publisher) drop(n int) {
	p.dropped.Add(uint64(n))
	if p.cfg.Metrics != nil {
		p.cfg.Metrics.addDropped(n)
	}
}

// run drains the queue into the sink until Close.
func (p *Publisher) run() {
	defer close(p.done)
	var (
		stream  grpc.ClientStreamingClient[tftpgwv1.StatsEvent, tftpgwv1.PublishResponse]
		cancel  context.CancelFunc
		pending *tftpgwv1.StatsEvent // taken from the queue but not sent yet
		wait    time.Duration        // next backoff
		down    bool                 // last attempt failed (to log changes only)
	)
	defer func() {
		if pending != nil {
			p.drop(1)
		}
		if cancel != nil {
			cancel()
		}
	}()
	for {
		if pending == nil {
			select {
			case pending = <-p.queue:
			case <-p.ctx.Done():
				return
			case <-p.flush:
				select {
				case pending = <-p.queue:
				default:
					if stream != nil {
						_, err := stream.CloseAndRecv()
						if err != nil && p.ctx.Err() == nil {
							p.logger.Warn("stats sink: closing stream", "err", err)
						}
					}
					return
				}
			}
		}
		if stream == nil {
			ctx, c := context.WithCancel(p.ctx)
			s, err := p.client.Publish(ctx)
			if err != nil {
				c()
				if p.ctx.Err() != nil {
					return
				}
				if !down {
					p.logger.Warn("stats sink unreachable, queueing events", "err", err)
					down = true
				}
				if !p.sleep(&wait) {
					return
				}
				continue
			}
			stream, cancel = s, c
		}
		if err := stream.Send(pending); err != nil {
			// io.EOF means the sink ended the stream; its status says why.
			if errors.Is(err, io.EOF) {
				_, err = stream.CloseAndRecv()
			}
			cancel()
			stream, cancel = nil, nil
			if p.ctx.Err() != nil {
				return
			}
			if !down {
				p.logger.Warn("stats sink stream broken, reconnecting", "err", err)
				down = true
			}
			if !p.sleep(&wait) {
				return
			}
			continue
		}
		pending = nil
		p.sent.Add(1)
		if down {
			p.logger.Info("stats sink reachable again")
			down = false
		}
		wait = 0
	}
}

// sleep waits for the next backoff, doubling it; false if the Publisher
// was aborted meanwhile.
func (p *Publisher) sleep(wait *time.Duration) bool {
	if *wait == 0 {
		*wait = p.cfg.MinBackoff
	} else {
		*wait = min(*wait*2, p.cfg.MaxBackoff)
	}
	// ±20 % jitter, so that many edges do not reconnect in step.
	d := time.Duration(float64(*wait) * (0.8 + 0.4*rand.Float64()))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}
