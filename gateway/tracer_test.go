package gateway_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

type tracerKey struct{}

// fakeTracer records what a SessionTracer sees, puts the session's ID in
// the context, and removes a "+suffix" from filenames.
type fakeTracer struct {
	mu     sync.Mutex
	starts []gateway.SessionStats
	ends   []gateway.SessionStats
	endCtx []any // the context value at the end
	events []string
	panic  string // "start" or "end": panic there
}

func (f *fakeTracer) StartSession(ctx context.Context, st *gateway.SessionStats) context.Context {
	f.mu.Lock()
	f.starts = append(f.starts, *st)
	f.events = append(f.events, "start")
	f.mu.Unlock()
	if i := strings.IndexByte(st.RawPath, '+'); i >= 0 {
		st.RawPath = st.RawPath[:i]
	}
	if f.panic == "start" {
		panic("tracer start")
	}
	return context.WithValue(ctx, tracerKey{}, st.SessionID)
}

func (f *fakeTracer) EndSession(ctx context.Context, st *gateway.SessionStats) {
	f.mu.Lock()
	f.ends = append(f.ends, *st)
	f.endCtx = append(f.endCtx, ctx.Value(tracerKey{}))
	f.events = append(f.events, "end")
	f.mu.Unlock()
	if f.panic == "end" {
		panic("tracer end")
	}
}

// ctxLog records the tracer's context value of each "session end" line.
type ctxLog struct {
	slog.Handler
	mu   sync.Mutex
	vals []any
}

func (h *ctxLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "session end" {
		h.mu.Lock()
		h.vals = append(h.vals, ctx.Value(tracerKey{}))
		h.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

// TestSessionTracerSeam: the tracer sees a session start with what is
// known of it, the context it returns is the handler's and the log
// line's, a filename it shortens is the one served and reported, and it
// sees the session end with the final stats before SessionStatsFunc.
func TestSessionTracerSeam(t *testing.T) {
	tr := &fakeTracer{}
	lh := &ctxLog{Handler: slog.NewTextHandler(io.Discard, nil)}
	var handlerVal any
	var handlerReq gateway.Request
	h := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		handlerVal, handlerReq = ctx.Value(tracerKey{}), *req
		return gateway.BytesContent([]byte("hello")), nil
	})
	srv := gatewaytest.NewServer(t, h, func(s *gateway.Server) {
		s.Tracer = tr
		s.Logger = slog.New(lh)
		s.SessionStatsFunc = func(gateway.SessionStats) {
			tr.mu.Lock()
			tr.events = append(tr.events, "stats")
			tr.mu.Unlock()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var buf bytes.Buffer
	if _, err := tftpclient.Get(ctx, srv.Addr().String(), "dir/f+trace", &buf, tftpclient.Options{BlockSize: 1024}); err != nil || buf.String() != "hello" {
		t.Fatalf("got %q, %v", buf.String(), err)
	}
	st := srv.NextStats(t)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.starts) != 1 || len(tr.ends) != 1 {
		t.Fatalf("%d starts, %d ends", len(tr.starts), len(tr.ends))
	}
	s := tr.starts[0]
	if s.SessionID != st.SessionID || s.RemoteAddr != st.RemoteAddr || s.LocalAddr != st.LocalAddr || s.Write ||
		s.RawPath != "dir/f+trace" || s.Mode != "octet" || len(s.RequestedOptions) != 1 || !s.Start.Equal(st.Start) {
		t.Errorf("start stats %+v", s)
	}
	if s.Outcome != gateway.OutcomeUnknown || s.Path != "" {
		t.Errorf("start stats already have an outcome %v or path %q", s.Outcome, s.Path)
	}
	if handlerVal != st.SessionID || lh.vals[0] != st.SessionID || tr.endCtx[0] != st.SessionID {
		t.Errorf("the tracer's context: handler %v, log line %v, end %v; want %s", handlerVal, lh.vals, tr.endCtx, st.SessionID)
	}
	if handlerReq.RawPath != "dir/f" || handlerReq.Path != "dir/f" || st.RawPath != "dir/f" || st.Path != "dir/f" {
		t.Errorf("request %q %q, stats %q %q; want the shortened filename", handlerReq.RawPath, handlerReq.Path, st.RawPath, st.Path)
	}
	e := tr.ends[0]
	if e.Outcome != gateway.OutcomeOK || e.BytesAcked != 5 || e.BlockSize != 1024 || e.Duration <= 0 {
		t.Errorf("end stats %+v", e)
	}
	if got := strings.Join(tr.events, " "); got != "start end stats" {
		t.Errorf("order %q, want start end stats", got)
	}
}

// TestSessionTracerUpload: an upload's session is traced too, with Write
// set from its start.
func TestSessionTracerUpload(t *testing.T) {
	tr := &fakeTracer{}
	srv := gatewaytest.NewServer(t, gatewaytest.Files{}, func(s *gateway.Server) {
		s.Tracer = tr
		s.WriteHandler = gateway.WriteHandlerFunc(func(context.Context, *gateway.Request) (gateway.Upload, error) {
			return nil, gateway.ErrUploadRefused
		})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := tftpclient.Put(ctx, srv.Addr().String(), "up", strings.NewReader("x"), 1, tftpclient.Options{}); err == nil {
		t.Fatal("upload accepted")
	}
	srv.NextStats(t)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.starts) != 1 || !tr.starts[0].Write || len(tr.ends) != 1 || !tr.ends[0].Write || tr.ends[0].Outcome != gateway.OutcomeError {
		t.Errorf("starts %+v, ends %+v", tr.starts, tr.ends)
	}
}

// TestSessionTracerPanics: a tracer that panics is logged, and the session
// is served as if there were none (the filename as sent).
func TestSessionTracerPanics(t *testing.T) {
	for _, where := range []string{"start", "end"} {
		t.Run(where, func(t *testing.T) {
			tr := &fakeTracer{panic: where}
			logs := &syncbuf.Buffer{}
			srv := gatewaytest.NewServer(t, gatewaytest.Files{"f+x": []byte("plus"), "f": []byte("f")}, func(s *gateway.Server) {
				s.Tracer = tr
				s.Logger = slog.New(slog.NewTextHandler(logs, nil))
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var buf bytes.Buffer
			if _, err := tftpclient.Get(ctx, srv.Addr().String(), "f+x", &buf, tftpclient.Options{}); err != nil {
				t.Fatal(err)
			}
			st := srv.NextStats(t)
			want := map[string]string{"start": "plus", "end": "f"}[where]
			if buf.String() != want || st.Outcome != gateway.OutcomeOK {
				t.Errorf("got %q, outcome %v; want %q", buf.String(), st.Outcome, want)
			}
			if !strings.Contains(logs.String(), "SessionTracer panic on "+where) {
				t.Errorf("panic not logged:\n%s", logs)
			}
		})
	}
}
