package tracing_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/tracing"
)

// TestHTTPRequestContinuesTheClientsTrace: an HTTP request to the server
// (gateway.Server.ServeHTTP) through Tracing.HTTPHandler is a span "HTTP
// read" in the trace of its traceparent header, with its status; the
// handler's context carries it.
func TestHTTPRequestContinuesTheClientsTrace(t *testing.T) {
	var console bytes.Buffer
	tr, err := tracing.FromEnv(context.Background(), tracing.Config{
		Console: &console,
		Getenv:  func(k string) string { return map[string]string{"OTEL_TRACES_EXPORTER": "console"}[k] },
	})
	if err != nil {
		t.Fatal(err)
	}
	hc := &handlerCtx{h: gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		return gateway.BytesContent([]byte("#!ipxe\n")), nil
	})}
	srv := &gateway.Server{Handler: hc, Logger: slog.New(slog.DiscardHandler), Tracer: tracing.NewSessions(tr.TracerProvider(), tracing.SessionOptions{FilenameTraceparent: true})}
	ts := httptest.NewServer(tr.HTTPHandler(srv))
	defer func() {
		ts.Close()
		srv.Close()
	}()
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/boot.ipxe", nil)
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "#!ipxe\n" {
		t.Fatalf("body %q", body)
	}
	if got := hc.last(t).TraceID().String(); got != traceID {
		t.Errorf("the handler's trace %s, want the header's %s", got, traceID)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := console.String()
	for _, want := range []string{`"Name":"HTTP read"`, `"Parent":{"TraceID":"` + traceID, `"SpanID":"00f067aa0ba902b7"`, `"http.response.status_code"`, `"tcp"`} {
		if !strings.Contains(out, want) {
			t.Errorf("console spans lack %s:\n%s", want, out)
		}
	}
}
