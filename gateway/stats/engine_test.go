package stats_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/gateway/stats"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// download fetches file without options, lock-step, and returns its
// bytes.
func download(t *testing.T, c *gatewaytest.Client, file string) []byte {
	t.Helper()
	c.RRQ(file, "octet")
	var data []byte
	for block := uint16(1); ; block++ {
		p, _ := c.Recv(5 * time.Second)
		if binary.BigEndian.Uint16(p) != 3 || binary.BigEndian.Uint16(p[2:]) != block {
			t.Fatalf("want DATA %d, got %q", block, p)
		}
		data = append(data, p[4:]...)
		c.Ack(block)
		if len(p)-4 < 512 {
			return data
		}
	}
}

func TestEngineStatsEndToEnd(t *testing.T) {
	file := bytes.Repeat([]byte("x"), 1500) // DATA of 512, 512 and 476 bytes
	h := gateway.HandlerFunc(func(_ context.Context, r *gateway.Request) (gateway.Content, error) {
		if r.Path == "boot.efi" {
			return gateway.BytesContent(file), nil
		}
		return nil, fs.ErrNotExist
	})

	col, out, stopCollector := startCollector(t, "127.0.0.1:0")
	m := stats.NewMetrics()
	p := newPublisher(t, col.Addr().String(), 0, m)
	srv := &gateway.Server{
		Handler:          h,
		Logger:           slog.New(slog.DiscardHandler),
		StatsInterval:    100 * time.Millisecond,
		SessionStatsFunc: func(s gateway.SessionStats) { m.ObserveSession(s); p.SessionStats(s) },
		ServerStatsFunc:  func(s gateway.ServerStats) { m.ObserveServer(s); p.ServerStats(s) },
	}
	m.SetSource(srv.Stats)
	httpSrv, err := stats.StartHTTP("127.0.0.1:0", m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer httpSrv.Shutdown(context.Background())

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(pc) }()
	httpSrv.SetReady(true)
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		httpSrv.SetReady(false)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, gateway.ErrServerClosed) {
			t.Errorf("Serve = %v", err)
		}
		if err := p.Close(ctx); err != nil {
			t.Errorf("publisher Close: %v", err)
		}
	}
	defer stop()

	// 1. A download.
	c := gatewaytest.NewClient(t, server)
	if got := download(t, c, "boot.efi"); !bytes.Equal(got, file) {
		t.Fatalf("download: got %d bytes", len(got))
	}
	// 2. Not found.
	c = gatewaytest.NewClient(t, server)
	c.RRQ("missing", "octet")
	if p, _ := c.Recv(5 * time.Second); !bytes.Equal(p[:4], []byte{0, 5, 0, 1}) {
		t.Fatalf("missing: want ERROR 1, got %q", p)
	}
	// 3. A UEFI size probe: tsize 0, OACK, ERROR 8.
	c = gatewaytest.NewClient(t, server)
	c.RRQ("boot.efi", "octet", "tsize", "0")
	if oack, _ := c.Recv(5 * time.Second); !bytes.Equal(oack, gatewaytest.OACK("tsize", "1500")) {
		t.Fatalf("probe: want OACK tsize 1500, got %q", oack)
	}
	c.SendError(8, "User aborted the transfer")

	sessionsOf := func() map[tftpgwv1.Outcome]*tftpgwv1.SessionStats {
		r := make(map[tftpgwv1.Outcome]*tftpgwv1.SessionStats)
		for _, ev := range out.events(t) {
			if s := ev.GetSession(); s != nil {
				r[s.Outcome] = s
			}
		}
		return r
	}
	waitFor(t, "three sessions at the collector", func() bool { return len(sessionsOf()) == 3 })
	ss := sessionsOf()
	ok, notFound, probe := ss[tftpgwv1.Outcome_OUTCOME_OK], ss[tftpgwv1.Outcome_OUTCOME_ERROR], ss[tftpgwv1.Outcome_OUTCOME_PROBE]
	if ok == nil || notFound == nil || probe == nil {
		t.Fatalf("sessions by outcome: %v", ss)
	}
	if ok.Path != "boot.efi" || ok.BytesSent != 1500 || ok.BytesAcked != 1500 || ok.PacketsSent != 3 ||
		ok.TransferSize != 1500 || ok.BlockSize != 512 || ok.TimeToFirstData == nil || ok.EdgeId != "edge-t" ||
		ok.ClientAddress.GetIp() != "127.0.0.1" || ok.LocalAddress.GetPort() != uint32(server.Port()) {
		t.Errorf("download session: %v", ok)
	}
	if notFound.Path != "missing" || notFound.ErrorSent.GetCode() != 1 || notFound.BytesSent != 0 || notFound.PacketsSent != 1 {
		t.Errorf("not-found session: %v", notFound)
	}
	if probe.BytesSent != 0 || probe.PacketsSent != 1 || probe.ErrorReceived.GetCode() != 8 ||
		len(probe.RequestedOptions) != 1 || len(probe.NegotiatedOptions) != 1 || probe.NegotiatedOptions[0].Value != "1500" {
		t.Errorf("probe session: %v", probe)
	}

	// Reports arrive every interval; wait for one that counts the three
	// sessions and a later one, then check the deltas add up to the totals.
	wantTotal := func(c *tftpgwv1.Counters) bool {
		return c.SessionsOk == 1 && c.SessionsError == 1 && c.SessionsProbe == 1 &&
			c.BytesSent == 1500 && c.PacketsSent == 5 && c.ErrorsSent[1] == 1 && len(c.ErrorsSent) == 1 &&
			c.Retransmits == 0 && c.StatsEventsDropped == 0
	}
	var reports []*tftpgwv1.ServerStats
	waitFor(t, "two reports with all sessions", func() bool {
		reports = reports[:0]
		n := 0
		for _, ev := range out.events(t) {
			if r := ev.GetServer(); r != nil {
				reports = append(reports, r)
				if wantTotal(r.Total) {
					n++
				}
			}
		}
		return n >= 2
	})
	var sum tftpgwv1.Counters
	for i, r := range reports {
		if r.Interval.AsDuration() <= 0 || r.EdgeId != "edge-t" {
			t.Errorf("report %d: %v", i, r)
		}
		sum.SessionsOk += r.Delta.SessionsOk
		sum.SessionsError += r.Delta.SessionsError
		sum.SessionsProbe += r.Delta.SessionsProbe
		sum.BytesSent += r.Delta.BytesSent
		sum.PacketsSent += r.Delta.PacketsSent
	}
	last := reports[len(reports)-1]
	if !wantTotal(last.Total) || last.ActiveSessions != 0 || sum.SessionsOk != 1 || sum.SessionsError != 1 ||
		sum.SessionsProbe != 1 || sum.BytesSent != 1500 || sum.PacketsSent != 5 {
		t.Errorf("last report %v; sum of deltas %v", last, &sum)
	}

	// /metrics shows the same workload.
	got := scrape(t, "http://"+httpSrv.Addr().String()+"/metrics")
	for k, v := range map[string]float64{
		`tftpgw_sessions_total{outcome="ok"}`:                    1,
		`tftpgw_sessions_total{outcome="error"}`:                 1,
		`tftpgw_sessions_total{outcome="probe"}`:                 1,
		`tftpgw_sessions_total{outcome="aborted"}`:               0,
		`tftpgw_sessions_total{outcome="timeout"}`:               0,
		`tftpgw_bytes_sent_total`:                                1500,
		`tftpgw_packets_sent_total`:                              5,
		`tftpgw_retransmits_total`:                               0,
		`tftpgw_duplicate_acks_total`:                            0,
		`tftpgw_errors_sent_total{code="1"}`:                     1,
		`tftpgw_active_sessions`:                                 0,
		`tftpgw_stats_events_dropped_total`:                      0,
		`tftpgw_session_duration_seconds_count{outcome="ok"}`:    1,
		`tftpgw_session_duration_seconds_count{outcome="error"}`: 1,
		`tftpgw_session_duration_seconds_count{outcome="probe"}`: 1,
		`tftpgw_time_to_first_data_seconds_count`:                1,
	} {
		if g, present := got[k]; !present || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, present, v)
		}
	}

	// Stopping sends a last report, flushed by the publisher's Close.
	before := len(out.events(t))
	stop()
	stopCollector()
	evs := out.events(t)
	if len(evs) <= before || evs[len(evs)-1].GetServer() == nil || !wantTotal(evs[len(evs)-1].GetServer().Total) {
		t.Errorf("no final report after Shutdown (events %d -> %d)", before, len(evs))
	}
}
