package collector_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/stats"
	"github.com/tftpgw/tftpgw/gateway/stats/collector"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

func numbered(edge, instance string, seq uint64) *tftpgwv1.StatsEvent {
	ev := sessionEvent(edge, int(seq))
	ev.Instance, ev.Sequence = instance, seq
	return ev
}

// written returns the sequence numbers of the events in out, in order.
func written(t *testing.T, out []byte) []string {
	t.Helper()
	var seqs []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		ev := &tftpgwv1.StatsEvent{}
		if err := protojson.Unmarshal([]byte(line), ev); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, fmt.Sprintf("%s/%d", ev.Instance, ev.Sequence))
	}
	return seqs
}

// TestCopiesDroppedAndGapsCounted: a copy of an event (same edge instance
// and sequence, from a batch sent again) is not written or counted twice;
// a gap in the sequence is counted and logged; a new instance (the edge
// restarted) starts a new sequence.
func TestCopiesDroppedAndGapsCounted(t *testing.T) {
	var out bytes.Buffer
	var logs syncbuf.Buffer
	sink := collector.New(collector.Config{Out: &out, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for _, ev := range []*tftpgwv1.StatsEvent{
		numbered("e1", "a", 1), numbered("e1", "a", 2), numbered("e1", "a", 2), // a copy
		numbered("e1", "a", 1),                         // a late copy
		numbered("e1", "a", 5),                         // 3 and 4 missing
		numbered("e1", "b", 1), numbered("e1", "b", 2), // restarted
		numbered("e1", "b", 4), // 3 missing
		numbered("e1", "", 0),  // not numbered: always written
		numbered("e2", "c", 7), // first seen mid-sequence: no gap counted
	} {
		if err := sink.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"a/1", "a/2", "a/5", "b/1", "b/2", "b/4", "/0", "c/7"}
	if got := written(t, out.Bytes()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("written %v, want %v", got, want)
	}
	hs := httptest.NewServer(sink.MetricsHandler())
	defer hs.Close()
	body := get(t, hs.URL)
	for _, w := range []string{
		`tftpgw_collector_events_missing_total{edge="e1"} 3`,
		`tftpgw_collector_events_duplicate_total{edge="e1"} 2`,
		`tftpgw_collector_events_received_total{edge="e1",type="session"} 7`,
		`tftpgw_collector_events_missing_total{edge="e2"} 0`,
	} {
		if !strings.Contains(body, w+"\n") {
			t.Errorf("metrics lack %q", w)
		}
	}
	if n := strings.Count(logs.String(), `msg="stats events missing from edge"`); n != 2 ||
		!strings.Contains(logs.String(), "edge=e1 instance=a missing=2 after=2 got=5") {
		t.Errorf("want two gap lines:\n%s", logs.String())
	}
}

// lostAckSink records the events of its first stream and then fails it,
// as if the acknowledgement were lost; the edge sends the batch again.
type lostAckSink struct {
	*collector.Sink
	once sync.Once
}

type failAck struct {
	tftpgwv1.StatsSink_PublishServer
}

func (failAck) SendAndClose(*tftpgwv1.PublishResponse) error {
	return status.Error(codes.Unavailable, "acknowledgement lost")
}

func (s *lostAckSink) Publish(stream tftpgwv1.StatsSink_PublishServer) error {
	first := false
	s.once.Do(func() { first = true })
	if first {
		if err := s.Sink.Publish(failAck{stream}); err != nil {
			return err
		}
	}
	return s.Sink.Publish(stream)
}

// TestRetriedBatchWrittenOnce: the edge sends again a batch whose
// acknowledgement was lost; the collector writes each event once.
func TestRetriedBatchWrittenOnce(t *testing.T) {
	out := &syncbuf.Buffer{}
	sink := &lostAckSink{Sink: collector.New(collector.Config{Out: out, Logger: slog.New(slog.DiscardHandler)})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	tftpgwv1.RegisterStatsSinkServer(gs, sink)
	served := make(chan struct{})
	go func() { defer close(served); gs.Serve(ln) }()
	defer func() { gs.Stop(); <-served }()

	p, err := stats.NewPublisher(stats.PublisherConfig{Target: ln.Addr().String(), EdgeID: "e",
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		p.SessionStats(gateway.SessionStats{SessionID: fmt.Sprint(i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if c := p.Counts(); c.Delivered != 20 {
		t.Fatalf("counts %+v", c)
	}
	got := written(t, out.Bytes())
	if len(got) != 20 {
		t.Fatalf("written %d events, want 20 (each once): %v", len(got), got)
	}
	hs := httptest.NewServer(sink.MetricsHandler())
	defer hs.Close()
	body := get(t, hs.URL)
	if !strings.Contains(body, `tftpgw_collector_events_duplicate_total{edge="e"} `) ||
		strings.Contains(body, `tftpgw_collector_events_duplicate_total{edge="e"} 0`+"\n") {
		t.Errorf("no copies counted:\n%s", body)
	}
}

// TestSeriesBoundedUnderForgedFlood is a regression test (issue 14 point
// 3): 2,001 forged events took a collector's /metrics from 37 to 140,055
// series. Label values now come from fixed sets and at most MaxEdges
// edges have series, so a flood of events with random edge IDs, codes and
// labels stays under collector.MaxSeries(MaxEdges).
func TestSeriesBoundedUnderForgedFlood(t *testing.T) {
	const maxEdges = 10
	sink := collector.New(collector.Config{MaxEdges: maxEdges, Logger: slog.New(slog.DiscardHandler)})
	rnd := rand.New(rand.NewPCG(1, 2))
	word := func() string {
		b := make([]byte, 1+rnd.IntN(300))
		for i := range b {
			b[i] = byte('a' + rnd.IntN(26))
		}
		return string(b)
	}
	const n = 2001
	for i := range n {
		errs := map[uint32]uint64{}
		backend := map[string]uint64{}
		for range 50 {
			errs[rnd.Uint32()] = rnd.Uint64N(1000)
			backend[word()] = rnd.Uint64N(1000)
		}
		errs[uint32(rnd.IntN(9))] = 1
		backend[codes.Code(rnd.IntN(17)).String()] = 1
		c := &tftpgwv1.Counters{ErrorsSent: errs, BackendErrors: backend}
		ev := &tftpgwv1.StatsEvent{Sequence: rnd.Uint64(), Instance: word()}
		if i%2 == 0 {
			ev.Event = &tftpgwv1.StatsEvent_Server{Server: &tftpgwv1.ServerStats{EdgeId: word(), Total: c, Delta: c}}
		} else {
			s := sessionEvent(word(), i).GetSession()
			s.Outcome = tftpgwv1.Outcome(rnd.Int32())
			ev.Event = &tftpgwv1.StatsEvent_Session{Session: s}
		}
		if err := sink.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	hs := httptest.NewServer(sink.MetricsHandler())
	defer hs.Close()
	body := get(t, hs.URL)
	series := 0
	for line := range strings.SplitSeq(body, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			series++
		}
	}
	if bound := collector.MaxSeries(maxEdges); series > bound {
		t.Errorf("%d series after %d forged events, want at most %d", series, n, bound)
	}
	if !strings.Contains(body, fmt.Sprintf("tftpgw_collector_edges %d\n", maxEdges)) {
		t.Errorf("want %d edges tracked", maxEdges)
	}
	var untracked float64
	fmt.Sscanf(body[strings.Index(body, "\ntftpgw_collector_events_untracked_total ")+1:], "tftpgw_collector_events_untracked_total %g", &untracked)
	if untracked != n-maxEdges {
		t.Errorf("untracked events %v, want %d", untracked, n-maxEdges)
	}
	t.Logf("%d series after %d forged events (bound %d), %d bytes a scrape", series, n, collector.MaxSeries(maxEdges), len(body))
}
