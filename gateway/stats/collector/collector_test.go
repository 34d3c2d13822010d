package collector_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tftpgw/tftpgw/gateway/stats/collector"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func sessionEvent(edge string, i int) *tftpgwv1.StatsEvent {
	return &tftpgwv1.StatsEvent{Event: &tftpgwv1.StatsEvent_Session{Session: &tftpgwv1.SessionStats{
		SessionId:         fmt.Sprintf("%s-%d", edge, i),
		EdgeId:            edge,
		ClientAddress:     &tftpgwv1.Address{Ip: "192.0.2.1", Port: 1000},
		Path:              "boot/\u00e9.efi",
		RequestedOptions:  []*tftpgwv1.Option{{Name: "tsize", Value: "0"}},
		Outcome:           tftpgwv1.Outcome_OUTCOME_OK,
		ErrorSent:         &tftpgwv1.TFTPError{Code: 1, Message: "file \"x\" not found"},
		BytesSent:         1 << 40,
		StartTime:         timestamppb.New(time.Unix(1700000000, 5)),
		Duration:          durationpb.New(1500 * time.Millisecond),
		TimeToFirstData:   durationpb.New(time.Millisecond),
		TransferSize:      -1,
		Backend:           &tftpgwv1.Backend{Target: "dns:///b:1", HeaderLatency: durationpb.New(2 * time.Millisecond), Resumes: 1},
		NegotiatedOptions: []*tftpgwv1.Option{{Name: "tsize", Value: "123"}},
	}}}
}

func serverEvent(edge string, ok uint64) *tftpgwv1.StatsEvent {
	total := &tftpgwv1.Counters{SessionsOk: ok, BytesSent: 100 * ok, ErrorsSent: map[uint32]uint64{1: 2},
		BackendErrors: map[string]uint64{"Unavailable": 3}, StatsEventsDropped: 4}
	return &tftpgwv1.StatsEvent{Event: &tftpgwv1.StatsEvent_Server{Server: &tftpgwv1.ServerStats{
		EdgeId: edge, Time: timestamppb.Now(), Interval: durationpb.New(time.Minute),
		ActiveSessions: 7, Delta: total, Total: total, Final: true,
	}}}
}

func TestRecordRoundTrip(t *testing.T) {
	var out bytes.Buffer
	sink := collector.New(collector.Config{Out: &out})
	in := []*tftpgwv1.StatsEvent{sessionEvent("e1", 1), serverEvent("e1", 5)}
	for _, ev := range in {
		if err := sink.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(in) {
		t.Fatalf("%d lines: %q", len(lines), out.String())
	}
	for i, line := range lines {
		got := &tftpgwv1.StatsEvent{}
		if err := protojson.Unmarshal([]byte(line), got); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if !proto.Equal(got, in[i]) {
			t.Errorf("line %d round-trips to %v, want %v", i, got, in[i])
		}
	}
	if !strings.Contains(lines[0], `"session_id"`) {
		t.Errorf("want proto field names: %s", lines[0])
	}
}

func TestConcurrentEdges(t *testing.T) {
	out := &syncbuf.Buffer{}
	sink := collector.New(collector.Config{Out: out})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := collector.Serve(ln, sink)
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	client := tftpgwv1.NewStatsSinkClient(conn)

	const edges, perEdge = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, edges)
	for e := range edges {
		wg.Go(func() {
			edge := fmt.Sprintf("edge%d", e)
			stream, err := client.Publish(context.Background())
			if err != nil {
				errs <- err
				return
			}
			for i := range perEdge {
				if err := stream.Send(sessionEvent(edge, i)); err != nil {
					errs <- err
					return
				}
			}
			if err := stream.Send(serverEvent(edge, uint64(e))); err != nil {
				errs <- err
				return
			}
			resp, err := stream.CloseAndRecv()
			if err != nil {
				errs <- err
				return
			}
			if resp.EventsReceived != perEdge+1 {
				errs <- fmt.Errorf("%s: sink received %d", edge, resp.EventsReceived)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	// Every line is a whole event; per edge, in order.
	next := make(map[string]int)
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	n := 0
	for sc.Scan() {
		ev := &tftpgwv1.StatsEvent{}
		if err := protojson.Unmarshal(sc.Bytes(), ev); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		n++
		if s := ev.GetSession(); s != nil {
			if want := fmt.Sprintf("%s-%d", s.EdgeId, next[s.EdgeId]); s.SessionId != want {
				t.Fatalf("got %s, want %s", s.SessionId, want)
			}
			next[s.EdgeId]++
		}
	}
	if n != edges*(perEdge+1) {
		t.Fatalf("%d lines, want %d", n, edges*(perEdge+1))
	}

	// Metrics, by edge.
	hs := httptest.NewServer(sink.MetricsHandler())
	defer hs.Close()
	body := get(t, hs.URL)
	for _, want := range []string{
		`tftpgw_collector_events_received_total{edge="edge3",type="session"} 200`,
		`tftpgw_collector_events_received_total{edge="edge3",type="server"} 1`,
		`tftpgw_collector_edge_sessions_total{edge="edge3",outcome="ok"} 3`,
		`tftpgw_collector_edge_bytes_sent_total{edge="edge5"} 500`,
		`tftpgw_collector_edge_errors_sent_total{code="1",edge="edge5"} 2`,
		`tftpgw_collector_edge_backend_errors_total{code="Unavailable",edge="edge1"} 3`,
		`tftpgw_collector_edge_stats_events_dropped_total{edge="edge1"} 4`,
		`tftpgw_collector_edge_active_sessions{edge="edge7"} 7`,
		`tftpgw_collector_session_duration_seconds_count{outcome="ok"} 1600`,
		`tftpgw_collector_backend_header_latency_seconds_count 1600`,
		`tftpgw_collector_streams 0`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	r, err := httpGet(url)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
