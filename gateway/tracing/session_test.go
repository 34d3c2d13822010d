package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/gateway/tracing"
	"github.com/tftpgw/tftpgw/gateway/upload"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// recorder is an SDK tracer provider whose spans are kept in memory,
// exported as each ends.
func recorder(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp, exp
}

// handlerCtx records the span context the handler was called with.
type handlerCtx struct {
	mu  sync.Mutex
	scs []trace.SpanContext
	h   gateway.Handler
}

func (h *handlerCtx) ServeTFTP(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
	h.mu.Lock()
	h.scs = append(h.scs, trace.SpanContextFromContext(ctx))
	h.mu.Unlock()
	return h.h.ServeTFTP(ctx, req)
}

func (h *handlerCtx) last(t *testing.T) trace.SpanContext {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.scs) == 0 {
		t.Fatal("the handler was not called")
	}
	return h.scs[len(h.scs)-1]
}

// oneSpan returns the only span exported.
func oneSpan(t *testing.T, exp *tracetest.InMemoryExporter) tracetest.SpanStub {
	t.Helper()
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1: %v", len(spans), spans)
	}
	return spans[0]
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

// wantAttrs checks the attributes of s named in want (strings, ints,
// string slices); a nil value means the attribute must be absent.
func wantAttrs(t *testing.T, s tracetest.SpanStub, want map[string]any) {
	t.Helper()
	got := attrs(s)
	for k, w := range want {
		v, ok := got[attribute.Key(k)]
		switch w := w.(type) {
		case nil:
			if ok {
				t.Errorf("%s = %v, want none", k, v.String())
			}
		case string:
			if !ok || v.Type() != attribute.STRING || v.AsString() != w {
				t.Errorf("%s = %v, want %q", k, v.String(), w)
			}
		case int:
			if !ok || v.Type() != attribute.INT64 || v.AsInt64() != int64(w) {
				t.Errorf("%s = %v, want %d", k, v.String(), w)
			}
		case []string:
			if !ok || strings.Join(v.AsStringSlice(), " ") != strings.Join(w, " ") {
				t.Errorf("%s = %v, want %v", k, v.String(), w)
			}
		default:
			t.Fatalf("bad expectation %T", w)
		}
	}
}

// TestReadSessionIsASpan: a read is one server span from its request to
// its end, with the session's attributes, and its context is the
// handler's.
func TestReadSessionIsASpan(t *testing.T) {
	tp, exp := recorder(t)
	data := gatewaytest.Pattern(10000)
	h := &handlerCtx{h: gatewaytest.Files{"boot/f.bin": data}}
	rewrite := func(next gateway.Handler) gateway.Handler {
		return gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
			req.Path = "boot/" + req.Path
			return next.ServeTFTP(ctx, req)
		})
	}
	srv := gatewaytest.NewServer(t, gateway.Chain(h, rewrite), func(s *gateway.Server) {
		s.Tracer = tracing.NewSessions(tp, tracing.SessionOptions{})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var buf bytes.Buffer
	if _, err := tftpclient.Get(ctx, srv.Addr().String(), "f.bin", &buf, tftpclient.Options{BlockSize: 1468, WindowSize: 4, TSize: true}); err != nil {
		t.Fatal(err)
	}
	st := srv.NextStats(t) // reported after the span ended
	s := oneSpan(t, exp)
	if s.Name != "TFTP read" || s.SpanKind != trace.SpanKindServer {
		t.Errorf("span %q kind %v, want \"TFTP read\", server", s.Name, s.SpanKind)
	}
	if sc := h.last(t); !sc.Equal(s.SpanContext) {
		t.Errorf("the handler's span context %v is not the session's %v", sc, s.SpanContext)
	}
	if s.Parent.IsValid() {
		t.Errorf("parent %v: want a root span", s.Parent)
	}
	if !s.StartTime.Equal(st.Start) || !s.EndTime.Equal(st.Start.Add(st.Duration)) {
		t.Errorf("span %v..%v, session %v for %v", s.StartTime, s.EndTime, st.Start, st.Duration)
	}
	if s.Status.Code != codes.Unset {
		t.Errorf("status %v, want unset", s.Status)
	}
	wantAttrs(t, s, map[string]any{
		"client.address":            "127.0.0.1",
		"client.port":               int(st.RemoteAddr.Port()),
		"server.address":            "127.0.0.1",
		"server.port":               int(srv.Addr().Port()),
		"network.transport":         "udp",
		"tftp.session.id":           st.SessionID,
		"tftp.operation":            "read",
		"tftp.filename":             "f.bin",
		"tftp.path":                 "f.bin",
		"tftp.path.rewritten":       "boot/f.bin",
		"tftp.mode":                 "octet",
		"tftp.outcome":              "ok",
		"tftp.options.requested":    []string{"blksize=1468", "tsize=0", "windowsize=4"},
		"tftp.options.negotiated":   []string{"blksize=1468", "tsize=10000", "windowsize=4"},
		"tftp.blksize":              1468,
		"tftp.windowsize":           4,
		"tftp.tsize":                10000,
		"tftp.bytes_sent":           10000,
		"tftp.bytes_acked":          10000,
		"tftp.retransmits":          0,
		"tftp.packets_sent":         int(st.PacketsSent),
		"tftp.error.code":           nil,
		"tftp.client_error.code":    nil,
		"tftp.bytes_received":       nil,
		"tftp.backend.target":       nil,
		"tftp.client_error.message": nil,
	})
	if d := attrs(s)["tftp.duration"]; d.AsFloat64() != st.Duration.Seconds() {
		t.Errorf("tftp.duration %v, want %v", d.AsFloat64(), st.Duration.Seconds())
	}
}

// TestRefusedSessionsSpans: a refusal is an answer (status unset) with its
// error; an ERROR 0 of a failing handler makes the span an error.
func TestRefusedSessionsSpans(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		code     int
		msg      string
		status   codes.Code
		filename string
		path     string
	}{
		{"not found", nil, 1, "file not found", codes.Unset, "nothing", "nothing"},
		{"escape", nil, 2, "access violation", codes.Unset, "../x", ""},
		{"backend failure", &gateway.Error{Code: gateway.ErrNotDefined, Message: "backend unavailable"}, 0, "backend unavailable", codes.Error, "f", "f"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp, exp := recorder(t)
			var h gateway.Handler = gatewaytest.Files{}
			if tc.err != nil {
				h = gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) { return nil, tc.err })
			}
			srv := gatewaytest.NewServer(t, h, func(s *gateway.Server) {
				s.Tracer = tracing.NewSessions(tp, tracing.SessionOptions{})
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := tftpclient.Get(ctx, srv.Addr().String(), tc.filename, &bytes.Buffer{}, tftpclient.Options{})
			var te *tftpclient.Error
			if !errors.As(err, &te) {
				t.Fatalf("got %v, want a TFTP error", err)
			}
			srv.NextStats(t)
			s := oneSpan(t, exp)
			wantAttrs(t, s, map[string]any{
				"tftp.outcome":       "error",
				"tftp.error.code":    tc.code,
				"tftp.error.message": tc.msg,
				"tftp.filename":      tc.filename,
				"tftp.path":          tc.path,
			})
			if s.Status.Code != tc.status {
				t.Errorf("status %v, want %v", s.Status, tc.status)
			}
		})
	}
}

// TestUploadSessionIsASpan: an upload is a "TFTP write" span with the
// bytes received.
func TestUploadSessionIsASpan(t *testing.T) {
	tp, exp := recorder(t)
	dir := t.TempDir()
	srv := gatewaytest.NewServer(t, gatewaytest.Files{}, func(s *gateway.Server) {
		s.Tracer = tracing.NewSessions(tp, tracing.SessionOptions{})
		s.WriteHandler = &upload.Dir{Root: dir}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	data := gatewaytest.Pattern(3000)
	if _, err := tftpclient.Put(ctx, srv.Addr().String(), "up.bin", bytes.NewReader(data), int64(len(data)), tftpclient.Options{TSize: true}); err != nil {
		t.Fatal(err)
	}
	srv.NextStats(t)
	s := oneSpan(t, exp)
	if s.Name != "TFTP write" {
		t.Errorf("span %q, want \"TFTP write\"", s.Name)
	}
	wantAttrs(t, s, map[string]any{
		"tftp.operation":      "write",
		"tftp.path":           "up.bin",
		"tftp.outcome":        "ok",
		"tftp.bytes_received": 3000,
		"tftp.bytes_acked":    nil,
		"tftp.tsize":          3000,
	})
	if b, err := os.ReadFile(filepath.Join(dir, "up.bin")); err != nil || !bytes.Equal(b, data) {
		t.Errorf("stored %d bytes, %v", len(b), err)
	}
}

// TestFilenameTraceparent: with FilenameTraceparent, a traceparent
// appended to the filename is removed before the path is used, and the
// session's span is a child of the span it names; without it the
// filename is used as sent.
func TestFilenameTraceparent(t *testing.T) {
	const file = "ipxe.efi-00-" + tid + "-" + sid + "-01"
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[on], func(t *testing.T) {
			tp, exp := recorder(t)
			h := &handlerCtx{h: gatewaytest.Files{"ipxe.efi": []byte("ipxe")}}
			srv := gatewaytest.NewServer(t, h, func(s *gateway.Server) {
				s.Tracer = tracing.NewSessions(tp, tracing.SessionOptions{FilenameTraceparent: on})
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var buf bytes.Buffer
			_, err := tftpclient.Get(ctx, srv.Addr().String(), file, &buf, tftpclient.Options{})
			st := srv.NextStats(t)
			s := oneSpan(t, exp)
			if !on {
				if err == nil || st.Path != file || st.RawPath != file {
					t.Errorf("off: err %v, path %q, raw %q: want ERROR 1 for the whole name", err, st.Path, st.RawPath)
				}
				if s.Parent.IsValid() {
					t.Errorf("off: parent %v", s.Parent)
				}
				return
			}
			if err != nil || buf.String() != "ipxe" {
				t.Fatalf("got %q, %v", buf.String(), err)
			}
			if st.RawPath != "ipxe.efi" || st.Path != "ipxe.efi" {
				t.Errorf("stats raw path %q, path %q; want ipxe.efi", st.RawPath, st.Path)
			}
			if s.SpanContext.TraceID().String() != tid || s.Parent.SpanID().String() != sid || !s.Parent.IsRemote() {
				t.Errorf("span trace %s parent %s: want trace %s, remote parent %s", s.SpanContext.TraceID(), s.Parent.SpanID(), tid, sid)
			}
			if sc := h.last(t); !sc.Equal(s.SpanContext) {
				t.Errorf("the handler's span context %v is not the session's %v", sc, s.SpanContext)
			}
			wantAttrs(t, s, map[string]any{"tftp.filename": file, "tftp.path": "ipxe.efi"})
		})
	}
}

// TestSessionLogLineNamesTheSpan: the session's log line, through
// LogHandler, carries the trace and span ids of the session's span.
func TestSessionLogLineNamesTheSpan(t *testing.T) {
	tp, exp := recorder(t)
	logs := &syncbuf.Buffer{}
	srv := gatewaytest.NewServer(t, gatewaytest.Files{"f": []byte("x")}, func(s *gateway.Server) {
		s.Tracer = tracing.NewSessions(tp, tracing.SessionOptions{})
		s.Logger = slog.New(tracing.LogHandler(slog.NewJSONHandler(logs, nil)))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := tftpclient.Get(ctx, srv.Addr().String(), "f", &bytes.Buffer{}, tftpclient.Options{}); err != nil {
		t.Fatal(err)
	}
	srv.NextStats(t)
	s := oneSpan(t, exp)
	var line map[string]any
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, `"session end"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line == nil {
		t.Fatalf("no session line in %s", logs)
	}
	if line["trace_id"] != s.SpanContext.TraceID().String() || line["span_id"] != s.SpanContext.SpanID().String() {
		t.Errorf("log line trace_id %v span_id %v; span %s %s", line["trace_id"], line["span_id"], s.SpanContext.TraceID(), s.SpanContext.SpanID())
	}
}

// TestUnsampledSessions: under a sampler that samples nothing, sessions
// record nothing and their log lines have no ids.
func TestUnsampledSessions(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.NeverSample()))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	logs := &syncbuf.Buffer{}
	srv := gatewaytest.NewServer(t, gatewaytest.Files{"f": []byte("x")}, func(s *gateway.Server) {
		s.Tracer = tracing.NewSessions(tp, tracing.SessionOptions{})
		s.Logger = slog.New(tracing.LogHandler(slog.NewJSONHandler(logs, nil)))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := tftpclient.Get(ctx, srv.Addr().String(), "f", &bytes.Buffer{}, tftpclient.Options{}); err != nil {
		t.Fatal(err)
	}
	srv.NextStats(t)
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans exported, want none", n)
	}
	if strings.Contains(logs.String(), "trace_id") {
		t.Errorf("an unsampled session's line has a trace_id:\n%s", logs)
	}
}

// TestFilenameTraceparentWithoutSpans: with no tracer provider (tracing
// off), the suffix is still removed, and no span is in the handler's
// context.
func TestFilenameTraceparentWithoutSpans(t *testing.T) {
	h := &handlerCtx{h: gatewaytest.Files{"ipxe.efi": []byte("ipxe")}}
	srv := gatewaytest.NewServer(t, h, func(s *gateway.Server) {
		s.Tracer = tracing.NewSessions(nil, tracing.SessionOptions{FilenameTraceparent: true})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var buf bytes.Buffer
	if _, err := tftpclient.Get(ctx, srv.Addr().String(), "ipxe.efi-00-"+tid+"-"+sid+"-01", &buf, tftpclient.Options{}); err != nil || buf.String() != "ipxe" {
		t.Fatalf("got %q, %v", buf.String(), err)
	}
	if st := srv.NextStats(t); st.Path != "ipxe.efi" {
		t.Errorf("path %q", st.Path)
	}
	if sc := h.last(t); sc.IsValid() {
		t.Errorf("a span context %v with tracing off", sc)
	}
}
