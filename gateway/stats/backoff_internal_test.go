package stats

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// flakySink fails its calls with UNAVAILABLE while failing is set.
type flakySink struct {
	tftpgwv1.UnimplementedStatsSinkServer
	mu      sync.Mutex
	failing bool
	calls   int
}

func (s *flakySink) set(failing bool) {
	s.mu.Lock()
	s.failing = failing
	s.mu.Unlock()
}

func (s *flakySink) Publish(stream tftpgwv1.StatsSink_PublishServer) error {
	s.mu.Lock()
	s.calls++
	failing := s.failing
	s.mu.Unlock()
	var n uint64
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		n++
	}
	if failing {
		return status.Error(codes.Unavailable, "not now")
	}
	return stream.SendAndClose(&tftpgwv1.PublishResponse{EventsReceived: n})
}

// TestBackoffGrowsAndResets: after each batch the sink fails, the wait
// doubles from MinBackoff up to MaxBackoff, jittered within the upper half;
// an acknowledged batch starts it again from MinBackoff. The outage and
// its end are logged once each. The waits are recorded by a fake sleep, so
// the test does not depend on the machine's speed.
func TestBackoffGrowsAndResets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	sink := &flakySink{failing: true}
	tftpgwv1.RegisterStatsSinkServer(gs, sink)
	served := make(chan struct{})
	go func() { defer close(served); gs.Serve(ln) }()
	defer func() { gs.Stop(); <-served }()

	const minB, maxB = 10 * time.Millisecond, 160 * time.Millisecond
	waits := make(chan time.Duration)
	resume := make(chan struct{})
	var logs syncbuf.Buffer
	p, err := NewPublisher(PublisherConfig{
		Target: ln.Addr().String(), MinBackoff: minB, MaxBackoff: maxB,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		sleep: func(ctx context.Context, d time.Duration) bool {
			select {
			case waits <- d:
			case <-ctx.Done():
				return false
			}
			select {
			case <-resume:
				return true
			case <-ctx.Done():
				return false
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	var got []time.Duration
	// fail lets n batches fail; the sink acknowledges the next one.
	fail := func(n int) {
		t.Helper()
		for i := range n {
			select {
			case d := <-waits:
				got = append(got, d)
			case <-time.After(10 * time.Second):
				t.Fatalf("no retry after %v; counts %+v\n%s", got, p.Counts(), logs.String())
			}
			if i == n-1 {
				sink.set(false)
			}
			// An event is dropped after MaxSends batches: give another,
			// so that the next batch has one.
			p.SessionStats(gateway.SessionStats{SessionID: "x"})
			resume <- struct{}{}
		}
	}
	p.SessionStats(gateway.SessionStats{SessionID: "a"})
	fail(8)
	waitFor(t, func() bool { c := p.Counts(); return c.Pending == 0 && c.Delivered > 0 })
	sink.set(true)
	delivered := p.Counts().Delivered
	p.SessionStats(gateway.SessionStats{SessionID: "b"})
	fail(3)
	waitFor(t, func() bool { c := p.Counts(); return c.Pending == 0 && c.Delivered > delivered })

	want := []time.Duration{minB, 2 * minB, 4 * minB, 8 * minB, maxB, maxB, maxB, maxB, minB, 2 * minB, 4 * minB}
	if len(got) != len(want) {
		t.Fatalf("waits %v, want %d", got, len(want))
	}
	for i, w := range want {
		if got[i] < w/2 || got[i] > w {
			t.Errorf("wait %d = %v, want within [%v, %v]", i, got[i], w/2, w)
		}
	}
	// One line when each outage started, one when it ended.
	text := logs.String()
	if n := strings.Count(text, `msg="stats sink unreachable"`); n != 2 {
		t.Errorf("%d outage lines for two outages:\n%s", n, text)
	}
	if n := strings.Count(text, `msg="stats sink reachable again"`); n != 2 {
		t.Errorf("%d recovery lines for two outages:\n%s", n, text)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("timed out")
}
