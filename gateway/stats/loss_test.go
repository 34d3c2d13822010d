package stats_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/stats"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// testSink is a StatsSink whose behaviour a test chooses. It keeps the
// events it acknowledged, in order.
type testSink struct {
	tftpgwv1.UnimplementedStatsSinkServer
	// publish, if set, handles the stream instead of readAll.
	publish func(s *testSink, stream tftpgwv1.StatsSink_PublishServer) error

	mu    sync.Mutex
	calls int
	acked []*tftpgwv1.StatsEvent
}

func (s *testSink) Publish(stream tftpgwv1.StatsSink_PublishServer) error {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	if s.publish != nil {
		return s.publish(s, stream)
	}
	evs, err := readAll(stream)
	if err != nil {
		return err
	}
	return s.ack(stream, evs, len(evs))
}

// ack keeps the first n of evs and acknowledges them.
func (s *testSink) ack(stream tftpgwv1.StatsSink_PublishServer, evs []*tftpgwv1.StatsEvent, n int) error {
	s.mu.Lock()
	s.acked = append(s.acked, evs[:n]...)
	s.mu.Unlock()
	return stream.SendAndClose(&tftpgwv1.PublishResponse{EventsReceived: uint64(n)})
}

func (s *testSink) stats() (calls int, acked []*tftpgwv1.StatsEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, append([]*tftpgwv1.StatsEvent(nil), s.acked...)
}

// readAll reads a stream to its end.
func readAll(stream tftpgwv1.StatsSink_PublishServer) ([]*tftpgwv1.StatsEvent, error) {
	var evs []*tftpgwv1.StatsEvent
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return evs, nil
		}
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
}

// serveGRPC serves gs on ln until the test ends.
func serveGRPC(t *testing.T, ln net.Listener, gs *grpc.Server) {
	t.Helper()
	served := make(chan struct{})
	go func() { defer close(served); gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-served })
}

// startSink serves sink (nil: a gRPC server without StatsSink) on addr.
func startSink(t *testing.T, addr string, sink *testSink) string {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port of a stopped server may take a moment to free
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	if sink != nil {
		tftpgwv1.RegisterStatsSinkServer(gs, sink)
	}
	serveGRPC(t, ln, gs)
	return ln.Addr().String()
}

// logLines is a slog.Logger writing text lines to a buffer.
type logLines struct{ syncbuf.Buffer }

func (l *logLines) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(&l.Buffer, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// count returns how many lines contain msg="msg".
func (l *logLines) count(msg string) int {
	return strings.Count(l.String(), "msg=\""+msg+"\"")
}

func (l *logLines) countPrefix(prefix string) int {
	return strings.Count(l.String(), "msg=\""+prefix)
}

// give makes n events: sessions, and a server report every 10th.
func give(p *stats.Publisher, n int) {
	for i := range n {
		if i%10 == 9 {
			p.ServerStats(gateway.ServerStats{Time: time.Now(), Interval: time.Second, Sessions: map[gateway.Outcome]int64{gateway.OutcomeOK: int64(i)}})
			continue
		}
		p.SessionStats(session(fmt.Sprintf("s%d", i)))
	}
}

// TestEveryEventDeliveredOrDropped is a regression test (issue 13 point
// 4): a sink that accepts the stream and never reads it, one that fails
// every call with UNAVAILABLE and a server without StatsSink lost events
// that gRPC had buffered while stats_events_dropped stayed 0. Now every
// event the publisher is given is either acknowledged by the sink or
// counted as dropped, exactly.
func TestEveryEventDeliveredOrDropped(t *testing.T) {
	neverReads := func(_ *testSink, stream tftpgwv1.StatsSink_PublishServer) error {
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	tests := []struct {
		name string
		sink *testSink // nil: no StatsSink service
		// wantAcked: the sink acknowledges every session in the end (the
		// queue then holds them all).
		wantAcked bool
	}{
		{"sink never reads", &testSink{publish: neverReads}, false},
		{"sink fails every call with UNAVAILABLE", &testSink{publish: func(_ *testSink, stream tftpgwv1.StatsSink_PublishServer) error {
			stream.Recv()
			return status.Error(codes.Unavailable, "overloaded")
		}}, false},
		{"server without StatsSink", nil, false},
		{"sink fails after reading the batch", &testSink{publish: func(_ *testSink, stream tftpgwv1.StatsSink_PublishServer) error {
			readAll(stream)
			return status.Error(codes.Internal, "disk full")
		}}, false},
		{"sink acknowledges fewer events than sent", &testSink{publish: func(s *testSink, stream tftpgwv1.StatsSink_PublishServer) error {
			evs, err := readAll(stream)
			if err != nil {
				return err
			}
			return s.ack(stream, evs, min(len(evs), 3))
		}}, false},
		{"sink acknowledges every event", &testSink{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startSink(t, "127.0.0.1:0", tt.sink)
			var logs logLines
			queue := 32
			if tt.wantAcked {
				queue = 256
			}
			p, err := stats.NewPublisher(stats.PublisherConfig{
				Target: addr, EdgeID: "edge-t", QueueSize: queue, BatchSize: 16,
				BatchTimeout: 100 * time.Millisecond,
				MinBackoff:   5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
				Logger: logs.logger(),
			})
			if err != nil {
				t.Fatal(err)
			}
			const n = 200
			give(p, n)
			// Let a few batches fail (or succeed) before closing.
			waitFor(t, "the queue to drain", func() bool { return p.Counts().Pending == 0 })
			if err := closePublisher(t, p, 2*time.Second); err != nil {
				t.Errorf("Close: %v", err)
			}
			c := p.Counts()
			var acked []*tftpgwv1.StatsEvent
			if tt.sink != nil {
				_, acked = tt.sink.stats()
			}
			if c.Events != n || c.Pending != 0 || c.Delivered+c.Dropped+c.Superseded != n {
				t.Errorf("counts %+v: want %d events, each delivered or dropped", c, n)
			}
			if uint64(len(acked)) != c.Delivered {
				t.Errorf("sink acknowledged %d events, publisher counts %d delivered", len(acked), c.Delivered)
			}
			sessions := 0
			for _, ev := range acked {
				if ev.GetSession() != nil {
					sessions++
				}
			}
			// Only reports replaced by newer ones before they were sent.
			if tt.wantAcked && (sessions != n-n/10 || c.Dropped >= n/10) {
				t.Errorf("counts %+v, %d sessions acknowledged: want all %d sessions delivered", c, sessions, n-n/10)
			}
			if !tt.wantAcked && c.Dropped == 0 {
				t.Errorf("counts %+v: want drops", c)
			}
			// The acknowledged events are distinct and in sequence order.
			var last uint64
			for _, ev := range acked {
				if ev.Sequence <= last || ev.Instance != p.Instance() {
					t.Fatalf("acknowledged event %d (instance %q) after %d", ev.Sequence, ev.Instance, last)
				}
				last = ev.Sequence
			}
		})
	}
}

// TestSinkDownThenBackLosesNothing: events given while the sink is down
// wait in the queue (within its bound) and are all delivered once it is
// back; those over the bound are counted. delivered + dropped = given.
func TestSinkDownThenBackLosesNothing(t *testing.T) {
	addr := freeAddr(t)
	m := stats.NewMetrics()
	var logs logLines
	p, err := stats.NewPublisher(stats.PublisherConfig{
		Target: addr, EdgeID: "edge-t", QueueSize: 100, BatchSize: 7,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Metrics: m, Logger: logs.logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer closePublisher(t, p, time.Second)

	give(p, 80)
	waitFor(t, "an outage logged", func() bool { return logs.count("stats sink unreachable") == 1 })
	give(p, 60) // 40 over the bound (the reports replace each other)
	before := p.Counts()
	if before.Delivered != 0 || before.Dropped == 0 {
		t.Fatalf("with the sink down: %+v", before)
	}

	sink := &testSink{}
	startSink(t, addr, sink)
	waitFor(t, "everything delivered", func() bool { return p.Counts().Pending == 0 })
	p.ServerStats(gateway.ServerStats{Time: time.Now(), Interval: time.Second})
	waitFor(t, "the last report", func() bool { return p.Counts().Pending == 0 })

	c := p.Counts()
	_, acked := sink.stats()
	if c.Events != 141 || c.Delivered+c.Dropped+c.Superseded != c.Events || uint64(len(acked)) != c.Delivered || c.Dropped != before.Dropped {
		t.Fatalf("counts %+v (before the sink came back %+v), sink acknowledged %d", c, before, len(acked))
	}
	last := acked[len(acked)-1].GetServer()
	if last == nil || last.Total.StatsEventsDropped != c.Dropped {
		t.Fatalf("last event %v: want a report of %d dropped", acked[len(acked)-1], c.Dropped)
	}
	got := scrapeRegistry(t, m)
	if got["tftpgw_stats_events_dropped_total"] != float64(c.Dropped) || got["tftpgw_stats_events_delivered_total"] != float64(c.Delivered) {
		t.Fatalf("metrics dropped %v delivered %v, want %d and %d", got["tftpgw_stats_events_dropped_total"],
			got["tftpgw_stats_events_delivered_total"], c.Dropped, c.Delivered)
	}
	// One line when the outage started, one when it ended.
	if logs.count("stats sink unreachable") != 1 || logs.count("stats sink reachable again") != 1 {
		t.Fatalf("want one outage and one recovery line:\n%s", logs.String())
	}
	if !regexp.MustCompile(`msg="stats sink reachable again" .*outage=\S+ dropped=[1-9]`).MatchString(logs.String()) {
		t.Errorf("recovery line does not say how many were dropped:\n%s", logs.String())
	}
}

// TestConfigurationErrorsLoggedOnce: a server without StatsSink and a sink
// refusing the edge's token are logged once each, as errors naming the
// cause, however many batches fail.
func TestConfigurationErrorsLoggedOnce(t *testing.T) {
	tests := []struct {
		name string
		sink *testSink
		want string
	}{
		{"UNIMPLEMENTED", nil, "stats sink does not serve tftpgw.v1.StatsSink (UNIMPLEMENTED)"},
		{"UNAUTHENTICATED", &testSink{publish: func(*testSink, tftpgwv1.StatsSink_PublishServer) error {
			return status.Error(codes.Unauthenticated, "invalid token")
		}}, "stats sink refused this edge's credentials (Unauthenticated)"},
		{"PERMISSION_DENIED", &testSink{publish: func(*testSink, tftpgwv1.StatsSink_PublishServer) error {
			return status.Error(codes.PermissionDenied, "not you")
		}}, "stats sink refused this edge's credentials (PermissionDenied)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startSink(t, "127.0.0.1:0", tt.sink)
			var logs logLines
			p, err := stats.NewPublisher(stats.PublisherConfig{
				Target: addr, QueueSize: 10, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond,
				Logger: logs.logger(),
			})
			if err != nil {
				t.Fatal(err)
			}
			var calls int
			for i := 0; i < 500 && calls < 10; i++ {
				p.SessionStats(session("x"))
				time.Sleep(5 * time.Millisecond)
				if tt.sink != nil {
					calls, _ = tt.sink.stats()
				} else {
					calls = i / 2 // no count without the service; give it time
				}
			}
			closePublisher(t, p, 100*time.Millisecond)
			if n := strings.Count(logs.String(), "level=ERROR"); n != 1 || !strings.Contains(logs.String(), tt.want) {
				t.Fatalf("want one ERROR line %q; got %d:\n%s", tt.want, n, logs.String())
			}
			if n := logs.countPrefix("stats sink"); n != 1 {
				t.Fatalf("want one line about the sink, got %d:\n%s", n, logs.String())
			}
		})
	}
}

// TestServerStatsReplacedCoverBoth: a report not yet sent when the next
// one is made is replaced in place: it keeps its sequence number, nothing
// is counted as dropped (found in operator review: every report replaced
// during a sink outage counted as a dropped event, which fired the
// documented alert and the collector's "missing" warning, though no event
// was lost), and the delta the sink receives covers both intervals, so
// the deltas add up to the totals. (A report the sink may have seen is
// dropped instead: TestServerStatsInFlightReplaced.)
func TestServerStatsReplacedCoverBoth(t *testing.T) {
	addr := freeAddr(t)
	var logs logLines
	p, err := stats.NewPublisher(stats.PublisherConfig{
		Target: addr, EdgeID: "e", MinBackoff: 300 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
		Logger: logs.logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer closePublisher(t, p, time.Second)
	t0 := time.Now()
	report := func(sec int, ok int64) gateway.ServerStats {
		return gateway.ServerStats{Time: t0.Add(time.Duration(sec) * time.Second), Interval: 10 * time.Second, Sessions: map[gateway.Outcome]int64{gateway.OutcomeOK: ok}, BytesSent: ok * 100}
	}
	p.ServerStats(report(10, 1))
	// The first attempt failed (nothing listens): the Publisher waits out
	// its backoff with the report queued, never written to a stream.
	waitFor(t, "the sink found unreachable", func() bool { return logs.count("stats sink unreachable") == 1 })
	p.ServerStats(report(20, 3))
	if c := p.Counts(); c != (stats.PublisherCounts{Events: 2, Superseded: 1, Pending: 1}) {
		t.Fatalf("after the second report: %+v, want the first superseded", c)
	}
	sink := &testSink{}
	startSink(t, addr, sink)
	waitFor(t, "the second report", func() bool { return p.Counts().Pending == 0 })
	p.ServerStats(report(30, 6))
	waitFor(t, "the third report", func() bool { return p.Counts().Pending == 0 })

	_, acked := sink.stats()
	if len(acked) != 2 {
		t.Fatalf("sink got %d reports, want 2", len(acked))
	}
	r2, r3 := acked[0].GetServer(), acked[1].GetServer()
	if r2.Delta.SessionsOk != 3 || r2.Interval.AsDuration() != 10*time.Second || r2.Total.StatsEventsDropped != 0 {
		t.Errorf("first delivered report: %v", r2)
	}
	if r3.Delta.SessionsOk != 3 || r3.Delta.BytesSent != 300 || r3.Interval.AsDuration() != 10*time.Second || r3.Total.SessionsOk != 6 {
		t.Errorf("second delivered report: %v", r3)
	}
	if acked[0].Sequence != 1 || acked[1].Sequence != 2 {
		t.Errorf("sequences %d, %d: want 1 and 2 (no gap)", acked[0].Sequence, acked[1].Sequence)
	}
	if c := p.Counts(); c.Dropped != 0 || c.Superseded != 1 || c.Delivered != 2 {
		t.Errorf("counts %+v", c)
	}
}

// TestServerStatsInFlightReplaced: a report in a batch that the sink then
// fails is dropped when a newer report is waiting; the newer one covers
// both intervals.
func TestServerStatsInFlightReplaced(t *testing.T) {
	release := make(chan bool) // true: acknowledge the batch; false: fail it
	sink := &testSink{publish: func(s *testSink, stream tftpgwv1.StatsSink_PublishServer) error {
		evs, err := readAll(stream)
		if err != nil {
			return err
		}
		if !<-release {
			return status.Error(codes.Unavailable, "try later")
		}
		return s.ack(stream, evs, len(evs))
	}}
	addr := startSink(t, "127.0.0.1:0", sink)
	p, err := stats.NewPublisher(stats.PublisherConfig{
		Target: addr, EdgeID: "e", MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	p.ServerStats(gateway.ServerStats{Time: t0, Interval: 10 * time.Second, Sessions: map[gateway.Outcome]int64{gateway.OutcomeOK: 1}})
	waitFor(t, "the first batch at the sink", func() bool { c, _ := sink.stats(); return c == 1 })
	p.ServerStats(gateway.ServerStats{Time: t0.Add(10 * time.Second), Interval: 10 * time.Second, Sessions: map[gateway.Outcome]int64{gateway.OutcomeOK: 4}})
	release <- false // the first report is not acknowledged
	release <- true  // the second one is
	waitFor(t, "the second report", func() bool { return p.Counts().Pending == 0 })
	if err := closePublisher(t, p, time.Second); err != nil {
		t.Fatal(err)
	}
	_, acked := sink.stats()
	if c := p.Counts(); c.Delivered != 1 || c.Dropped != 1 || len(acked) != 1 {
		t.Fatalf("counts %+v, sink acknowledged %d", c, len(acked))
	}
	r := acked[0].GetServer()
	// Built when its batch started, after the first was dropped: it counts
	// that drop.
	if r.Delta.SessionsOk != 4 || r.Total.StatsEventsDropped != 1 || acked[0].Sequence != 2 {
		t.Errorf("delivered report %v (sequence %d): want a delta of 4 and the first report's drop", r, acked[0].Sequence)
	}
}

// TestFailingSinkBacksOffAndLogsOnce is a regression test (issue 13 point
// 4): with a sink failing every call, the wait between attempts never
// grew (gRPC accepted each event into its buffer, which reset the
// backoff) and the log alternated "stream broken" and "reachable again"
// every attempt. Now the waits double, and the outage is one line.
func TestFailingSinkBacksOffAndLogsOnce(t *testing.T) {
	sink := &testSink{publish: func(_ *testSink, stream tftpgwv1.StatsSink_PublishServer) error {
		stream.Recv()
		return status.Error(codes.Unavailable, "overloaded")
	}}
	addr := startSink(t, "127.0.0.1:0", sink)
	var logs logLines
	p, err := stats.NewPublisher(stats.PublisherConfig{
		Target: addr, MinBackoff: 20 * time.Millisecond, MaxBackoff: 10 * time.Second,
		Logger: logs.logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Events keep coming for 1.5 s. With waits of 10 to 20 ms, 20 to 40,
	// 40 to 80, ... at most 8 batches fit (9 with the first); without a
	// growing wait there were one per event.
	for range 30 {
		p.SessionStats(session("x"))
		time.Sleep(50 * time.Millisecond)
	}
	calls, _ := sink.stats()
	closePublisher(t, p, 100*time.Millisecond)
	if calls < 2 || calls > 9 {
		t.Errorf("%d batches in 1.5 s: want 2 to 9 with a doubling backoff", calls)
	}
	if n := logs.countPrefix("stats sink"); n != 1 || logs.count("stats sink unreachable") != 1 {
		t.Errorf("want one line, the outage; got %d:\n%s", n, logs.String())
	}
}

// TestServerStatsReplacedWhileInFlightUnsent: a report taken into a batch
// whose stream never opened (a sink that accepts TCP and says nothing) is
// not dropped when a newer report is made meanwhile: it was never
// written, so the newer one takes its place and sequence number (found
// in review: it was counted as dropped, leaving a gap).
func TestServerStatsReplacedWhileInFlightUnsent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // held open, silent
		}
	}()
	p, err := stats.NewPublisher(stats.PublisherConfig{
		Target: addr, EdgeID: "e", BatchTimeout: 300 * time.Millisecond,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer closePublisher(t, p, 2*time.Second)
	t0 := time.Now()
	p.ServerStats(gateway.ServerStats{Time: t0, Interval: 10 * time.Second, Sessions: map[gateway.Outcome]int64{gateway.OutcomeOK: 1}})
	var conn net.Conn
	select {
	case conn = <-accepted: // the batch's stream is being opened
	case <-time.After(5 * time.Second):
		t.Fatal("no connection to the sink")
	}
	p.ServerStats(gateway.ServerStats{Time: t0.Add(10 * time.Second), Interval: 10 * time.Second, Sessions: map[gateway.Outcome]int64{gateway.OutcomeOK: 4}})
	waitFor(t, "the batch given up", func() bool { return p.Counts().Superseded == 1 })
	if c := p.Counts(); c != (stats.PublisherCounts{Events: 2, Superseded: 1, Pending: 1}) {
		t.Fatalf("counts %+v: want the first report superseded, not dropped", c)
	}
	// A real sink at that address now: the one report left arrives with
	// the first one's number, covering both intervals.
	ln.Close()
	conn.Close()
	sink := &testSink{}
	startSink(t, addr, sink)
	waitFor(t, "the report delivered", func() bool { return p.Counts().Pending == 0 })
	_, acked := sink.stats()
	if len(acked) != 1 || acked[0].Sequence != 1 || acked[0].GetServer().Delta.SessionsOk != 4 {
		t.Fatalf("sink acknowledged %v, want one report, sequence 1, a delta of 4", acked)
	}
	if c := p.Counts(); c.Dropped != 0 || c.Delivered != 1 {
		t.Errorf("counts %+v", c)
	}
}
