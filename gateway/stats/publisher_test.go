package stats_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/stats"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

func session(id string) gateway.SessionStats {
	return gateway.SessionStats{SessionID: id, Path: "f", Mode: "octet", Outcome: gateway.OutcomeOK, BytesSent: 10, Start: time.Now()}
}

func newPublisher(t *testing.T, target string, queue int, m *stats.Metrics) *stats.Publisher {
	t.Helper()
	p, err := stats.NewPublisher(stats.PublisherConfig{
		Target: target, EdgeID: "edge-t", QueueSize: queue, Metrics: m,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func closePublisher(t *testing.T, p *stats.Publisher, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return p.Close(ctx)
}

func TestPublisherFlushesOnClose(t *testing.T) {
	srv, out, _ := startCollector(t, "127.0.0.1:0")
	p := newPublisher(t, srv.Addr().String(), 0, nil)
	for i := range 100 {
		p.SessionStats(session(string(rune('a' + i%26))))
	}
	p.ServerStats(gateway.ServerStats{Time: time.Now(), Interval: time.Second, Sessions: map[gateway.Outcome]int64{gateway.OutcomeOK: 100}, BytesSent: 1000})
	if err := closePublisher(t, p, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if c := p.Counts(); c != (stats.PublisherCounts{Events: 101, Delivered: 101}) {
		t.Fatalf("counts %+v", c)
	}
	// Close waited for the sink's response, so everything is written.
	evs := out.events(t)
	if len(evs) != 101 {
		t.Fatalf("collector got %d events, want 101", len(evs))
	}
	last := evs[100].GetServer()
	if last == nil || last.EdgeId != "edge-t" || last.Total.SessionsOk != 100 || last.Delta.BytesSent != 1000 {
		t.Fatalf("last event %v", evs[100])
	}
	// Events after Close are dropped, not queued.
	p.SessionStats(session("late"))
	if c := p.Counts(); c.Dropped != 1 {
		t.Fatalf("after close: %+v", c)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// freeAddr returns a loopback TCP address nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// stalledSink accepts streams and never reads them.
type stalledSink struct {
	tftpgwv1.UnimplementedStatsSinkServer
	opened chan struct{}
}

func (s *stalledSink) Publish(stream tftpgwv1.StatsSink_PublishServer) error {
	s.opened <- struct{}{}
	<-stream.Context().Done()
	return stream.Context().Err()
}

func TestPublisherStalledSinkNeverBlocks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Small fixed windows, so the stalled stream fills up quickly.
	gs := grpc.NewServer(grpc.InitialWindowSize(64<<10), grpc.InitialConnWindowSize(64<<10))
	sink := &stalledSink{opened: make(chan struct{}, 1)}
	tftpgwv1.RegisterStatsSinkServer(gs, sink)
	served := make(chan struct{})
	go func() { defer close(served); gs.Serve(ln) }()
	defer func() { gs.Stop(); <-served }()

	const queue = 128
	p := newPublisher(t, ln.Addr().String(), queue, nil)
	p.SessionStats(session("first"))
	<-sink.opened

	// 100k calls return: each either queues or drops, never waits.
	const n = 100_000
	for i := range n {
		p.SessionStats(session("s" + string(rune('a'+i%26))))
	}
	c := p.Counts()
	if c.Events != n+1 || c.Dropped == 0 || c.Delivered != 0 {
		t.Fatalf("counts %+v, want %d events and drops", c, n+1)
	}
	// The queue bounds what waits, the batch being sent included.
	if c.Pending > queue {
		t.Fatalf("counts %+v: more than the queue waiting", c)
	}

	// Close gives up at its deadline and counts what it could not send.
	err = closePublisher(t, p, 200*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want deadline exceeded", err)
	}
	if c2 := p.Counts(); c2.Delivered+c2.Dropped+c2.Superseded != n+1 || c2.Delivered != 0 {
		t.Fatalf("after Close: %+v", c2)
	}
}
