package gateway_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
)

// TestShutdown: Shutdown refuses new sessions and lets running ones finish;
// when its context ends first, the rest get ERROR 0 "server shutting down".
func TestShutdown(t *testing.T) {
	content := pattern(1500)
	t.Run("drains_running_sessions", func(t *testing.T) {
		ts := startServer(t, files{"f": content}, nil)
		c := newClient(t, ts.addr)
		c.rrq("f", "octet")
		c.expect(data(1, content[:512]))
		done := make(chan error, 1)
		go func() { done <- ts.srv.Shutdown(context.Background()) }()
		time.Sleep(50 * time.Millisecond) // let Shutdown close the listener
		late := newClient(t, ts.addr)
		late.rrq("f", "octet")
		late.expectNothing(200 * time.Millisecond)
		c.ack(1)
		c.expect(data(2, content[512:1024]))
		c.ack(2)
		c.expect(data(3, content[1024:]))
		c.ack(3)
		if err := <-done; err != nil {
			t.Fatalf("Shutdown = %v, want nil", err)
		}
		if st := ts.nextStats(t); st.Outcome != gateway.OutcomeOK {
			t.Errorf("outcome %v, want ok", st.Outcome)
		}
	})
	t.Run("ends_the_rest_when_the_context_ends", func(t *testing.T) {
		ts := startServer(t, files{"f": content}, func(s *gateway.Server) { s.Timeout = 10 * time.Second })
		c := newClient(t, ts.addr)
		c.rrq("f", "octet")
		c.expect(data(1, content[:512]))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := ts.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
		}
		c.expect(errPkt(0, "server shutting down"))
		if st := ts.nextStats(t); st.Outcome != gateway.OutcomeError || st.ErrorSent == nil || st.ErrorSent.Message != "server shutting down" {
			t.Errorf("outcome %v error %v", st.Outcome, st.ErrorSent)
		}
	})
	t.Run("slow_handler_is_cancelled", func(t *testing.T) {
		cancelled := make(chan struct{})
		h := gateway.HandlerFunc(func(ctx context.Context, _ *gateway.Request) (gateway.Content, error) {
			<-ctx.Done()
			close(cancelled)
			return nil, ctx.Err()
		})
		ts := startServer(t, h, nil)
		c := newClient(t, ts.addr)
		c.rrq("f", "octet")
		time.Sleep(50 * time.Millisecond)
		ts.srv.Close()
		<-cancelled
		ts.nextStats(t)
	})
	t.Run("Serve_after_Shutdown_returns_ErrServerClosed", func(t *testing.T) {
		srv := &gateway.Server{Addr: "127.0.0.1:0"}
		srv.Shutdown(context.Background())
		if err := srv.ListenAndServe(); !errors.Is(err, gateway.ErrServerClosed) {
			t.Errorf("ListenAndServe after Shutdown = %v", err)
		}
	})
}

// TestServerStats: the server-stats callback runs every interval and once
// more at shutdown, with counters that match the sessions.
func TestServerStats(t *testing.T) {
	reports := make(chan gateway.ServerStats, 100)
	ts := startServer(t, files{"f": []byte("abc")}, func(s *gateway.Server) {
		s.StatsInterval = 20 * time.Millisecond
		s.ServerStatsFunc = func(st gateway.ServerStats) { reports <- st }
	})
	c := newClient(t, ts.addr)
	c.rrq("f", "octet")
	c.expect(data(1, []byte("abc")))
	c.ack(1)
	c2 := newClient(t, ts.addr)
	c2.rrq("missing", "octet")
	c2.expect(errPkt(1, "file not found"))
	ts.nextStats(t)
	ts.nextStats(t)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case r := <-reports:
			if r.Interval != 20*time.Millisecond {
				t.Fatalf("Interval %v", r.Interval)
			}
			if r.Sessions[gateway.OutcomeOK] == 1 && r.Sessions[gateway.OutcomeError] == 1 {
				if r.BytesSent != 3 || r.ErrorsSent[gateway.ErrFileNotFound] != 1 || r.ActiveSessions != 0 || r.PacketsSent != 2 {
					t.Errorf("report %+v", r)
				}
				return
			}
		case <-deadline:
			t.Fatal("no report with both sessions")
		}
	}
}

// TestServerStatsFuncPanicIsNotFatal: a panic in ServerStatsFunc is logged
// like one in SessionStatsFunc; the server goes on serving and reporting.
func TestServerStatsFuncPanicIsNotFatal(t *testing.T) {
	var calls atomic.Int64
	ts := startServer(t, files{"f": []byte("abc")}, func(s *gateway.Server) {
		s.StatsInterval = 10 * time.Millisecond
		s.ServerStatsFunc = func(gateway.ServerStats) {
			calls.Add(1)
			panic("collector bug")
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := calls.Load(); n < 3 {
		t.Fatalf("%d reports, want reports to go on after a panic", n)
	}
	c := newClient(t, ts.addr)
	c.rrq("f", "octet")
	c.expect(data(1, []byte("abc")))
	c.ack(1)
	ts.nextStats(t)
}
