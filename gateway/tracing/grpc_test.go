package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	sdk "github.com/tftpgw/tftpgw/backend"
	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/gateway/remote"
	"github.com/tftpgw/tftpgw/gateway/tracing"
	"github.com/tftpgw/tftpgw/gateway/upload"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

var traceparentRe = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-01$`)

// seenMetadata records the traceparent of the calls a backend gets.
type seenMetadata struct {
	mu    sync.Mutex
	byOp  map[string]string // "read" or "write" -> traceparent ("" if none)
	store gateway.WriteHandler
}

func (s *seenMetadata) note(ctx context.Context, op string) {
	md, _ := metadata.FromIncomingContext(ctx)
	tp := ""
	if v := md.Get("traceparent"); len(v) > 0 {
		tp = v[0]
	}
	s.mu.Lock()
	s.byOp[op] = tp
	s.mu.Unlock()
}

func (s *seenMetadata) get(op string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tp, ok := s.byOp[op]
	return tp, ok
}

func (s *seenMetadata) ServeTFTP(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
	s.note(ctx, "read")
	return gateway.BytesContent([]byte("content")), nil
}

func (s *seenMetadata) ReceiveTFTP(ctx context.Context, req *gateway.Request) (gateway.Upload, error) {
	s.note(ctx, "write")
	return s.store.ReceiveTFTP(ctx, req)
}

// TestBackendCallsCarryTheSessionsTrace: through remote with
// Tracing.DialOptions, the backend's Read and Write calls carry a
// traceparent whose trace is the session's (the one in its log line);
// without them, none.
func TestBackendCallsCarryTheSessionsTrace(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "tracing on", false: "tracing off"}[on], func(t *testing.T) {
			seen := &seenMetadata{byOp: map[string]string{}, store: &upload.Dir{Root: t.TempDir()}}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			bsrv := sdk.NewServer(seen, sdk.Config{WriteHandler: seen, Logger: slog.New(slog.DiscardHandler)})
			served := make(chan struct{})
			go func() {
				defer close(served)
				bsrv.Serve(ln)
			}()
			t.Cleanup(func() { bsrv.Stop(); <-served })

			exporter := map[bool]string{true: "console", false: ""}[on]
			var spans bytes.Buffer
			tr, err := tracing.FromEnv(context.Background(), tracing.Config{Console: &spans, Getenv: env(map[string]string{"OTEL_TRACES_EXPORTER": exporter})})
			if err != nil {
				t.Fatal(err)
			}
			rh, err := remote.Dial(ln.Addr().String(), remote.Config{DialOptions: tr.DialOptions(), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			logs := &syncbuf.Buffer{}
			srv := gatewaytest.NewServer(t, rh, func(s *gateway.Server) {
				s.WriteHandler = rh
				s.Logger = slog.New(tracing.LogHandler(slog.NewJSONHandler(logs, nil)))
				if on {
					s.Tracer = tracing.NewSessions(tr.TracerProvider(), tracing.SessionOptions{})
				}
			})
			t.Cleanup(func() {
				srv.Close()
				rh.Close()
				tr.Shutdown(context.Background())
			})

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := tftpclient.Get(ctx, srv.Addr().String(), "f", io.Discard, tftpclient.Options{}); err != nil {
				t.Fatal(err)
			}
			srv.NextStats(t)
			if _, err := tftpclient.Put(ctx, srv.Addr().String(), "up", strings.NewReader("upload"), 6, tftpclient.Options{}); err != nil {
				t.Fatal(err)
			}
			srv.NextStats(t)

			var traceIDs []string // of the session lines, in order
			for l := range strings.SplitSeq(logs.String(), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "session end" {
					id, _ := m["trace_id"].(string)
					traceIDs = append(traceIDs, id)
				}
			}
			if len(traceIDs) != 2 {
				t.Fatalf("%d session lines:\n%s", len(traceIDs), logs)
			}
			for i, op := range []string{"read", "write"} {
				tp, ok := seen.get(op)
				if !ok {
					t.Fatalf("the backend got no %s call", op)
				}
				if !on {
					if tp != "" || traceIDs[i] != "" {
						t.Errorf("%s with tracing off: traceparent %q, log trace_id %q", op, tp, traceIDs[i])
					}
					continue
				}
				m := traceparentRe.FindStringSubmatch(tp)
				if m == nil || m[1] != traceIDs[i] {
					t.Errorf("%s: traceparent %q, session's trace_id %q", op, tp, traceIDs[i])
				}
			}
		})
	}
}
