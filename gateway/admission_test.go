package gateway_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
)

// TestAdmissionHook: Server.Admit refuses with its ERROR, or drops, before
// the server spends anything on the request. A refusal comes from the
// listening port (no session socket was opened) and no session starts or
// ends; a drop draws nothing, for a WRQ too; both are counted. An accepted
// request is served.
func TestAdmissionHook(t *testing.T) {
	content := gatewaytest.Pattern(100)
	var seen []gateway.Arrival
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"pxelinux.cfg/default": content}, gatewaytest.FixedTimer, func(s *gateway.Server) {
		s.Admit = func(a gateway.Arrival) gateway.Admission {
			seen = append(seen, a) // the listener's goroutine only
			switch a.Client.Addr() {
			case netip.MustParseAddr("127.0.0.2"):
				return gateway.Admission{Action: gateway.AdmitRefuse, Error: &gateway.Error{Code: gateway.ErrAccessViolation, Message: "not from here"}}
			case netip.MustParseAddr("127.0.0.3"):
				return gateway.Admission{Action: gateway.AdmitDrop}
			case netip.MustParseAddr("127.0.0.4"):
				return gateway.Admission{Action: gateway.AdmitRefuse} // the default error
			}
			return gateway.Admission{}
		}
	})

	refused := gatewaytest.NewClientOn(t, "udp4", "127.0.0.2:0", ts.Addr())
	refused.RRQ("pxelinux.cfg/default", "octet")
	got, from := refused.Recv(5 * time.Second)
	if from != ts.Addr() {
		t.Errorf("refusal from %v, want the listening port %v: a session socket was opened", from, ts.Addr())
	}
	if want := gatewaytest.ErrorPacket(2, "not from here"); string(got) != string(want) {
		t.Errorf("refusal %q, want %q", got, want)
	}

	dropped := gatewaytest.NewClientOn(t, "udp4", "127.0.0.3:0", ts.Addr())
	dropped.RRQ("pxelinux.cfg/default", "octet")
	dropped.SendTo(ts.Addr(), gatewaytest.WriteRequest("upload.bin", "octet"))
	dropped.ExpectNothing(300 * time.Millisecond)

	plain := gatewaytest.NewClientOn(t, "udp4", "127.0.0.4:0", ts.Addr())
	plain.RRQ("pxelinux.cfg/default", "octet")
	plain.Expect(gatewaytest.ErrorPacket(2, "access violation"))

	ok := gatewaytest.NewClientOn(t, "udp4", "127.0.0.5:0", ts.Addr())
	ok.RRQ("pxelinux.cfg/default", "octet")
	ok.Expect(gatewaytest.Data(1, content))
	ok.Ack(1)
	if st := ts.NextStats(t); st.RemoteAddr.Addr() != netip.MustParseAddr("127.0.0.5") || st.Outcome != gateway.OutcomeOK {
		t.Errorf("the one session: %v from %v, want ok from 127.0.0.5", st.Outcome, st.RemoteAddr)
	}
	if st, ok := ts.WaitStats(100 * time.Millisecond); ok {
		t.Errorf("a refused or dropped request started a session: %+v", st)
	}
	st := ts.Config.Stats()
	if st.PolicyRefusals != 2 || st.PolicyDrops != 2 || st.Sessions[gateway.OutcomeError] != 0 || st.ErrorsSent[gateway.ErrAccessViolation] != 2 {
		t.Errorf("policy refusals %d, drops %d, error sessions %d, ERROR 2 sent %d; want 2, 2, 0, 2",
			st.PolicyRefusals, st.PolicyDrops, st.Sessions[gateway.OutcomeError], st.ErrorsSent[gateway.ErrAccessViolation])
	}
	if len(seen) != 5 || seen[0].RawPath != "pxelinux.cfg/default" || seen[0].Mode != "octet" || seen[2].Write != true ||
		seen[0].Local != ts.Addr() || seen[0].At.IsZero() {
		t.Errorf("arrivals %+v", seen)
	}
}

// TestAdmissionHookPanicRefuses: a hook that panics refuses the request
// and the server goes on.
func TestAdmissionHookPanicRefuses(t *testing.T) {
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": gatewaytest.Pattern(10)}, gatewaytest.FixedTimer, func(s *gateway.Server) {
		s.Admit = func(a gateway.Arrival) gateway.Admission {
			if strings.HasPrefix(a.RawPath, "boom") {
				panic("policy bug")
			}
			return gateway.Admission{}
		}
	})
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("boom-file-with-a-long-name", "octet")
	c.Expect(gatewaytest.ErrorPacket(2, "access violation"))
	c2 := gatewaytest.NewClient(t, ts.Addr())
	c2.RRQ("f", "octet")
	c2.Expect(gatewaytest.Data(1, gatewaytest.Pattern(10)))
	c2.Ack(1)
	ts.NextStats(t)
}

// TestChainOrder: Chain(h, a, b) is a(b(h)): the first middleware is the
// outermost.
func TestChainOrder(t *testing.T) {
	var order []string
	mw := func(name string) gateway.Middleware {
		return func(next gateway.Handler) gateway.Handler {
			return gateway.HandlerFunc(func(ctx context.Context, r *gateway.Request) (gateway.Content, error) {
				order = append(order, name)
				return next.ServeTFTP(ctx, r)
			})
		}
	}
	h := gateway.Chain(gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
		order = append(order, "handler")
		return gateway.BytesContent(nil), nil
	}), mw("a"), mw("b"), mw("c"))
	if _, err := h.ServeTFTP(context.Background(), &gateway.Request{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, ","); got != "a,b,c,handler" {
		t.Errorf("order %s, want a,b,c,handler", got)
	}
	if gateway.Chain(nil) != nil {
		t.Error("Chain of nothing is not the handler")
	}
}
