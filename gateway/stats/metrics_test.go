package stats_test

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/stats"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// scrapeRegistry scrapes m's handler without a network server.
func scrapeRegistry(t *testing.T, m *stats.Metrics) map[string]float64 {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	return scrape(t, srv.URL)
}

// contentBackend sends a header, then fails with Unavailable.
type contentBackend struct {
	tftpgwv1.UnimplementedContentServiceServer
}

func (contentBackend) Read(req *tftpgwv1.ReadRequest, stream tftpgwv1.ContentService_ReadServer) error {
	if req.Path == "hang" {
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	if err := stream.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Header{Header: &tftpgwv1.Header{}}}); err != nil {
		return err
	}
	return status.Error(codes.Unavailable, "gone")
}

func TestMetricsEndpoints(t *testing.T) {
	m := stats.NewMetrics()
	h, err := stats.StartHTTP("127.0.0.1:0", m, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + h.Addr().String()
	if got := httpStatus(t, base+"/healthz"); got != 200 {
		t.Fatalf("/healthz = %d", got)
	}
	if got := httpStatus(t, base+"/readyz"); got != 503 {
		t.Fatalf("/readyz before SetReady = %d", got)
	}
	h.SetReady(true)
	if got := httpStatus(t, base+"/readyz"); got != 200 {
		t.Fatalf("/readyz after SetReady = %d", got)
	}
	// With a check (the edge's backends), ready only while it holds.
	var backendUp atomic.Bool
	h.SetReadyCheck(backendUp.Load)
	if got := httpStatus(t, base+"/readyz"); got != 503 {
		t.Fatalf("/readyz with no backend = %d, want 503", got)
	}
	backendUp.Store(true)
	if got := httpStatus(t, base+"/readyz"); got != 200 {
		t.Fatalf("/readyz with a backend = %d, want 200", got)
	}

	// A known workload: three sessions and a report.
	m.ObserveSession(gateway.SessionStats{Outcome: gateway.OutcomeOK, Duration: 2 * time.Second, TimeToFirstData: 5 * time.Millisecond, DuplicateAcks: 3})
	m.ObserveSession(gateway.SessionStats{Outcome: gateway.OutcomeError, Duration: 10 * time.Millisecond})
	m.ObserveSession(gateway.SessionStats{Outcome: gateway.OutcomeProbe, Duration: 20 * time.Millisecond, TimeToFirstData: time.Millisecond})
	m.ObserveServer(gateway.ServerStats{
		ActiveSessions: 2, Sessions: map[gateway.Outcome]int64{gateway.OutcomeOK: 1, gateway.OutcomeError: 1, gateway.OutcomeProbe: 1}, BytesSent: 1500, PacketsSent: 5,
		Retransmits: 1, ErrorsSent: map[gateway.ErrorCode]int64{1: 1}, MalformedPackets: 4,
		UnknownTIDPackets: 6, WriteRequests: 7, DuplicateRequests: 8,
		BusyRefusals: 9, IgnoredBroadcasts: 10, IntegrityFailures: 11,
	})

	// Backend calls through the interceptors: one that fails after its
	// header, one the caller cancels (not a backend error).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	tftpgwv1.RegisterContentServiceServer(gs, contentBackend{})
	served := make(chan struct{})
	go func() { defer close(served); gs.Serve(ln) }()
	defer func() { gs.Stop(); <-served }()
	conn, err := grpc.NewClient(ln.Addr().String(), append(m.GRPCDialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := tftpgwv1.NewContentServiceClient(conn)
	rs, err := client.Read(context.Background(), &tftpgwv1.ReadRequest{Path: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.Recv(); err != nil {
		t.Fatalf("header: %v", err)
	}
	if _, err := rs.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("second Recv = %v, want Unavailable", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs, err = client.Read(ctx, &tftpgwv1.ReadRequest{Path: "hang"})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := rs.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled Recv = %v", err)
	}
	// A call the caller cancelled because the backend missed a budget
	// (the remote handler's header budget, with a backend that is down):
	// the backend's DeadlineExceeded.
	bctx, bcancel := context.WithCancelCause(context.Background())
	rs, err = client.Read(bctx, &tftpgwv1.ReadRequest{Path: "hang"})
	if err != nil {
		t.Fatal(err)
	}
	bcancel(fmt.Errorf("no header within the budget: %w", context.DeadlineExceeded))
	if _, err := rs.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("Recv cancelled for a budget = %v", err)
	}
	if got := m.BackendErrors(); len(got) != 2 || got["Unavailable"] != 1 || got["DeadlineExceeded"] != 1 {
		t.Fatalf("BackendErrors = %v", got)
	}

	got := scrape(t, base+"/metrics")
	want := map[string]float64{
		`tftpgw_sessions_total{outcome="ok"}`:                           1,
		`tftpgw_sessions_total{outcome="error"}`:                        1,
		`tftpgw_sessions_total{outcome="probe"}`:                        1,
		`tftpgw_sessions_total{outcome="aborted"}`:                      0,
		`tftpgw_sessions_total{outcome="timeout"}`:                      0,
		`tftpgw_bytes_sent_total`:                                       1500,
		`tftpgw_packets_sent_total`:                                     5,
		`tftpgw_retransmits_total`:                                      1,
		`tftpgw_duplicate_acks_total`:                                   3,
		`tftpgw_errors_sent_total{code="1"}`:                            1,
		`tftpgw_malformed_packets_total`:                                4,
		`tftpgw_unknown_tid_packets_total`:                              6,
		`tftpgw_write_requests_total`:                                   7,
		`tftpgw_duplicate_requests_total`:                               8,
		`tftpgw_busy_refusals_total`:                                    9,
		`tftpgw_ignored_broadcasts_total`:                               10,
		`tftpgw_integrity_failures_total`:                               11,
		`tftpgw_active_sessions`:                                        2,
		`tftpgw_stats_events_dropped_total`:                             0,
		`tftpgw_session_duration_seconds_count{outcome="ok"}`:           1,
		`tftpgw_session_duration_seconds_sum{outcome="ok"}`:             2,
		`tftpgw_session_duration_seconds_bucket{outcome="ok",le="1"}`:   0,
		`tftpgw_session_duration_seconds_bucket{outcome="ok",le="2.5"}`: 1,
		`tftpgw_session_duration_seconds_count{outcome="error"}`:        1,
		`tftpgw_time_to_first_data_seconds_count`:                       2,
		`tftpgw_time_to_first_data_seconds_bucket{le="0.001"}`:          1,
		`tftpgw_time_to_first_data_seconds_bucket{le="0.005"}`:          2,
		`tftpgw_backend_header_latency_seconds_count`:                   1,
		`tftpgw_backend_errors_total{code="Unavailable"}`:               1,
		`tftpgw_backend_errors_total{code="DeadlineExceeded"}`:          1,
		`grpc_client_started_total{grpc_method="Read",grpc_service="tftpgw.v1.ContentService",grpc_type="server_stream"}`:                         3,
		`grpc_client_handled_total{grpc_code="Unavailable",grpc_method="Read",grpc_service="tftpgw.v1.ContentService",grpc_type="server_stream"}`: 1,
		`grpc_client_handled_total{grpc_code="Canceled",grpc_method="Read",grpc_service="tftpgw.v1.ContentService",grpc_type="server_stream"}`:    2,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if _, ok := got[`tftpgw_backend_errors_total{code="Canceled"}`]; ok {
		t.Errorf("a cancelled call was counted as a backend error")
	}

	// A live source replaces the last report.
	m.SetSource(func() gateway.ServerStats { return gateway.ServerStats{ActiveSessions: 9} })
	if got := scrape(t, base+"/metrics")["tftpgw_active_sessions"]; got != 9 {
		t.Errorf("with a source: tftpgw_active_sessions = %v, want 9", got)
	}

	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.Ready() {
		t.Fatal("ready after Shutdown")
	}
}
