package gateway_test

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
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

// TestAdmissionLimitsPerClientOptions: the Limits of an admission change
// the session's negotiation for that request only: an option it refuses
// is left out of the OACK, its MaxBlockSize caps blksize; another client
// gets the server's.
func TestAdmissionLimitsPerClientOptions(t *testing.T) {
	content := gatewaytest.Pattern(3000)
	narrow := &gateway.Limits{RefuseOptions: []string{"windowsize"}, MaxBlockSize: 1024}
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) {
		s.Admit = func(a gateway.Arrival) gateway.Admission {
			if a.Client.Addr() == netip.MustParseAddr("127.0.0.2") {
				return gateway.Admission{Limits: narrow}
			}
			return gateway.Admission{}
		}
	})
	for _, tc := range []struct {
		client string
		oack   []byte
		blk    int
	}{
		{"127.0.0.2:0", gatewaytest.OACK("blksize", "1024", "tsize", "3000"), 1024},
		{"127.0.0.3:0", gatewaytest.OACK("blksize", "1468", "tsize", "3000", "windowsize", "8"), 1468},
	} {
		c := gatewaytest.NewClientOn(t, "udp4", tc.client, ts.Addr())
		c.RRQ("f", "octet", "blksize", "1468", "tsize", "0", "windowsize", "8")
		c.Expect(tc.oack)
		c.Ack(0)
		c.Expect(gatewaytest.Data(1, content[:tc.blk]))
		c.SendError(0, "enough")
		if st := ts.NextStats(t); st.BlockSize != tc.blk {
			t.Errorf("%s: blksize %d, want %d", tc.client, st.BlockSize, tc.blk)
		}
	}
}

// TestRefuseOptions: Server.RefuseOptions are never granted (tftp-hpa's
// -r): left out of the OACK; with every requested option refused there is
// no OACK at all and DATA 1 comes at once (RFC 2347: the server may
// decline every option).
func TestRefuseOptions(t *testing.T) {
	content := gatewaytest.Pattern(600)
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) {
		s.RefuseOptions = []string{"tsize", "Blksize"}
	})
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet", "tsize", "0", "timeout", "3")
	c.Expect(gatewaytest.OACK("timeout", "3"))
	c.SendError(0, "enough")
	ts.NextStats(t)

	c = gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet", "tsize", "0", "blksize", "1024")
	c.Expect(gatewaytest.Data(1, content[:512]))
	c.SendError(0, "enough")
	ts.NextStats(t)
}

// TestAdmissionLimitsReplaceServerLimits: the session limits of an
// admission replace the server's for the request, so that a hook can
// change them while the server runs (a configuration reload): one session
// per client, then no limit.
func TestAdmissionLimitsReplaceServerLimits(t *testing.T) {
	var limits atomic.Pointer[gateway.Limits]
	limits.Store(&gateway.Limits{MaxSessionsPerClient: 1})
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"a": gatewaytest.Pattern(600), "second-file": gatewaytest.Pattern(600)}, gatewaytest.FixedTimer, func(s *gateway.Server) {
		s.Admit = func(gateway.Arrival) gateway.Admission { return gateway.Admission{Limits: limits.Load()} }
	})
	first := gatewaytest.NewClient(t, ts.Addr())
	first.RRQ("a", "octet")
	first.Expect(gatewaytest.Data(1, gatewaytest.Pattern(600)[:512]))
	second := gatewaytest.NewClientOn(t, "udp4", "127.0.0.1:0", ts.Addr())
	second.RRQ("second-file", "octet")
	second.Expect(gatewaytest.ErrorPacket(0, "server busy"))

	limits.Store(&gateway.Limits{MaxSessionsPerClient: -1, MaxSessions: 2})
	second = gatewaytest.NewClient(t, ts.Addr())
	second.RRQ("second-file", "octet")
	second.Expect(gatewaytest.Data(1, gatewaytest.Pattern(600)[:512]))
	third := gatewaytest.NewClient(t, ts.Addr())
	third.RRQ("second-file", "octet")
	third.Expect(gatewaytest.ErrorPacket(0, "server busy")) // MaxSessions 2

	for _, c := range []*gatewaytest.Client{first, second} {
		c.SendError(0, "enough")
	}
	ts.NextStats(t)
	ts.NextStats(t)
	if st := ts.WaitIdle(t); st.BusyRefusals != 2 {
		t.Errorf("busy refusals %d, want 2", st.BusyRefusals)
	}
}

// TestLimitsValidate: the values a Limits or Server.RefuseOptions cannot
// have are reported, each by its field.
func TestLimitsValidate(t *testing.T) {
	for _, tc := range []struct {
		l    gateway.Limits
		want string // "" for valid
	}{
		{gateway.Limits{}, ""},
		{gateway.Limits{RefuseOptions: []string{"blksize", "timeout", "tsize", "windowsize"}, MaxBlockSize: 1024, MaxSessions: -1}, ""},
		{gateway.Limits{RefuseOptions: []string{"multicast"}}, `RefuseOptions "multicast": want blksize, timeout, tsize or windowsize`},
		{gateway.Limits{MaxBlockSize: 4}, "MaxBlockSize 4: want 8 to 65464"},
		{gateway.Limits{MaxWindowSize: 40000}, "MaxWindowSize 40000: want 1 to 32767"},
	} {
		err := tc.l.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.l, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want %q", tc.l, err, tc.want)
		}
	}
	if err := (&gateway.Server{RefuseOptions: []string{"tsize", "bogus"}}).Validate(); err == nil || !strings.Contains(err.Error(), `"bogus"`) {
		t.Errorf("Server.Validate: %v", err)
	}
}

// TestRewrittenPathReported: a middleware that rewrites Request.Path in
// place has the requested and the rewritten path reported in
// SessionStats and the session's log line.
func TestRewrittenPathReported(t *testing.T) {
	var log strings.Builder
	var mu sync.Mutex
	rewrite := func(next gateway.Handler) gateway.Handler {
		return gateway.HandlerFunc(func(ctx context.Context, r *gateway.Request) (gateway.Content, error) {
			r.Path = strings.TrimPrefix(r.Path, "boot/")
			return next.ServeTFTP(ctx, r)
		})
	}
	h := gateway.Chain(gatewaytest.Files{"x": gatewaytest.Pattern(10)}, rewrite)
	ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer, func(s *gateway.Server) {
		s.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &log}, nil))
	})
	for _, tc := range []struct{ raw, path, rewritten string }{
		{"/boot/x", "boot/x", "x"},
		{"x", "x", ""},
	} {
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ(tc.raw, "octet")
		c.Expect(gatewaytest.Data(1, gatewaytest.Pattern(10)))
		c.Ack(1)
		st := ts.NextStats(t)
		if st.RawPath != tc.raw || st.Path != tc.path || st.RewrittenPath != tc.rewritten {
			t.Errorf("%s: raw %q path %q rewritten %q, want %q %q %q", tc.raw, st.RawPath, st.Path, st.RewrittenPath, tc.raw, tc.path, tc.rewritten)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(log.String(), "path=boot/x rewritten=x ") || strings.Count(log.String(), "rewritten=") != 1 {
		t.Errorf("log lines:\n%s", log.String())
	}
}

// lockedWriter serialises the writes of concurrent log calls.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestPolicyRefusalsLoggedAtDebug: a refused or dropped request leaves a
// line at debug level, to follow one client; none at info.
func TestPolicyRefusalsLoggedAtDebug(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		var log strings.Builder
		var mu sync.Mutex
		ts := gatewaytest.NewServer(t, gatewaytest.Files{}, gatewaytest.FixedTimer, func(s *gateway.Server) {
			s.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &log}, &slog.HandlerOptions{Level: level}))
			s.Admit = func(a gateway.Arrival) gateway.Admission {
				if a.RawPath == "drop-me" {
					return gateway.Admission{Action: gateway.AdmitDrop}
				}
				return gateway.Admission{Action: gateway.AdmitRefuse}
			}
		})
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("refuse-me-with-a-long-name", "octet")
		c.Expect(gatewaytest.ErrorPacket(2, "access violation"))
		c.RRQ("drop-me", "octet")
		c.ExpectNothing(100 * time.Millisecond)
		ts.Close()
		mu.Lock()
		got := log.String()
		mu.Unlock()
		refused := strings.Contains(got, `msg="request refused by policy"`) && strings.Contains(got, "raw_path=refuse-me-with-a-long-name write=false error_code=2")
		dropped := strings.Contains(got, `msg="request dropped by policy"`) && strings.Contains(got, "raw_path=drop-me")
		if want := level == slog.LevelDebug; refused != want || dropped != want {
			t.Errorf("level %v: refused logged %v, dropped logged %v, want %v:\n%s", level, refused, dropped, want, got)
		}
	}
}
