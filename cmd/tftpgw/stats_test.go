package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/stats/collector"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
)

func TestSetupStats(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	out := &syncbuf.Buffer{}
	col := collector.Serve(ln, collector.New(collector.Config{Out: out}))
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		col.Stop(ctx)
	}()

	opts, err := parseFlags([]string{"-root", t.TempDir(),
		"-stats-sink", col.Addr().String(), "-metrics", "127.0.0.1:0", "-stats-interval", "250ms"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}

	var prevSessions, prevReports int
	srv := opts.server()
	srv.SessionStatsFunc = func(gateway.SessionStats) { prevSessions++ }
	srv.ServerStatsFunc = func(gateway.ServerStats) { prevReports++ }
	e := newEdge(opts, slog.New(slog.DiscardHandler))
	stop, err := e.setupStats(context.Background(), srv)
	if err != nil {
		t.Fatal(err)
	}
	if srv.StatsInterval != 250*time.Millisecond {
		t.Errorf("StatsInterval = %v", srv.StatsInterval)
	}
	h := e.http
	if h == nil {
		t.Fatal("no metrics server")
	}
	readyz := "http://" + h.Addr().String() + "/readyz"
	if code := getStatus(t, readyz); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before ready = %d", code)
	}
	e.setReady(true)
	if code := getStatus(t, readyz); code != http.StatusOK {
		t.Errorf("/readyz when ready = %d", code)
	}

	srv.SessionStatsFunc(gateway.SessionStats{SessionID: "s1", Outcome: gateway.OutcomeProbe})
	srv.ServerStatsFunc(gateway.ServerStats{Time: time.Now(), Sessions: map[gateway.Outcome]int64{gateway.OutcomeProbe: 1}})
	if prevSessions != 1 || prevReports != 1 {
		t.Errorf("previous funcs called %d and %d times, want 1 and 1", prevSessions, prevReports)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stop(ctx)
	if e.http != nil {
		t.Error("metrics server still registered after stop")
	}
	got := out.String()
	if !strings.Contains(got, `"session_id":"s1"`) || !strings.Contains(got, `"edge_id":"`+opts.edgeID()+`"`) ||
		!strings.Contains(got, `"sessions_probe":"1"`) {
		t.Errorf("collector got %s", got)
	}
	if n := len(e.backendDialOptions()); n != 2 {
		t.Errorf("backendDialOptions: %d options", n)
	}
}

func TestSetupStatsOff(t *testing.T) {
	opts, err := parseFlags([]string{"-root", t.TempDir()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	srv := opts.server()
	stop, err := newEdge(opts, slog.New(slog.DiscardHandler)).setupStats(context.Background(), srv)
	if err != nil {
		t.Fatal(err)
	}
	stop(context.Background())
	if srv.SessionStatsFunc != nil || srv.ServerStatsFunc != nil || srv.StatsInterval != gateway.DefaultStatsInterval {
		t.Errorf("stats wired without flags: %+v", srv)
	}
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
