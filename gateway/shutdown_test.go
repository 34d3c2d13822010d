package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
)

// TestShutdown: Shutdown refuses new sessions and lets running ones finish;
// when its context ends first, the rest get ERROR 0 "server shutting down".
func TestShutdown(t *testing.T) {
	content := gatewaytest.Pattern(1500)
	t.Run("drains_running_sessions", func(t *testing.T) {
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer)
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		c.Expect(gatewaytest.Data(1, content[:512]))
		done := make(chan error, 1)
		go func() { done <- ts.Config.Shutdown(context.Background()) }()
		time.Sleep(50 * time.Millisecond) // let Shutdown close the listener
		late := gatewaytest.NewClient(t, ts.Addr())
		late.RRQ("f", "octet")
		late.ExpectNothing(200 * time.Millisecond)
		c.Ack(1)
		c.Expect(gatewaytest.Data(2, content[512:1024]))
		c.Ack(2)
		c.Expect(gatewaytest.Data(3, content[1024:]))
		c.Ack(3)
		if err := <-done; err != nil {
			t.Fatalf("Shutdown = %v, want nil", err)
		}
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
			t.Errorf("outcome %v, want ok", st.Outcome)
		}
	})
	t.Run("ends_the_rest_when_the_context_ends", func(t *testing.T) {
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout = 10 * time.Second })
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		c.Expect(gatewaytest.Data(1, content[:512]))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := ts.Config.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
		}
		c.Expect(gatewaytest.ErrorPacket(0, "server shutting down"))
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeError || st.ErrorSent == nil || st.ErrorSent.Message != "server shutting down" {
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
		ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer)
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		time.Sleep(50 * time.Millisecond)
		ts.Config.Close()
		<-cancelled
		ts.NextStats(t)
	})
	t.Run("Serve_after_Shutdown_returns_ErrServerClosed", func(t *testing.T) {
		srv := &gateway.Server{Addr: "127.0.0.1:0"}
		srv.Shutdown(context.Background())
		if err := srv.ListenAndServe(); !errors.Is(err, gateway.ErrServerClosed) {
			t.Errorf("ListenAndServe after Shutdown = %v", err)
		}
	})
}

// TestCloseServesNothingReadBefore is a regression test (found in review):
// the listener reads requests several at a time (recvmmsg), and those
// still in hand when the server is closed must not run its hooks after
// Close: here ten requests wait before Serve starts, the first one's
// Admit holds the read loop while the server closes, and Admit must not
// see the other nine.
func TestCloseServesNothingReadBefore(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 10 {
		rrq := append([]byte{0, 1}, fmt.Sprintf("f%d\x00octet\x00", i)...)
		if _, err := c.WriteTo(rrq, pc.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	var calls atomic.Int32
	release := make(chan struct{})
	s := &gateway.Server{
		Handler: gatewaytest.Files{},
		Logger:  slog.New(slog.DiscardHandler),
		Admit: func(gateway.Arrival) gateway.Admission {
			if calls.Add(1) == 1 {
				<-release
			}
			return gateway.Admission{}
		},
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(pc) }()
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	time.Sleep(50 * time.Millisecond) // Close marks the server closed, then waits for nothing of Admit's
	close(release)
	if err := <-served; !errors.Is(err, gateway.ErrServerClosed) {
		t.Errorf("Serve = %v, want ErrServerClosed", err)
	}
	<-closed
	if n := calls.Load(); n != 1 {
		t.Errorf("Admit called %d times, want 1: requests read before Close were served after it", n)
	}
}
