package examples_test

// Tracing end to end (issue 18's acceptance): the real tftpgw binary with
// OTEL_TRACES_EXPORTER=console in front of a backend written in Python
// (../testdata/tracing/backend.py, Debian's python3-grpcio), which logs
// the traceparent of every Read call's metadata. The trace id it sees must
// be the trace_id of the edge's log line for that session and the trace of
// the session's span printed on the edge's standard output; the Read call
// is the child of the session's span. Without OTEL_TRACES_EXPORTER there
// is no traceparent, no trace_id and no span.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// tracingBackend runs testdata/tracing/backend.py.
var tracingBackend = backend{
	name:    "tracing",
	missing: pythonMissing,
	command: func(root, listen string, extra ...string) []string {
		return append([]string{python, "../testdata/tracing/backend.py", "--root", root, "--listen", listen}, extra...)
	},
	serving: exampleServing,
}

// tracingEnv sets the OpenTelemetry environment tftpgw starts with:
// exporter (empty: unset) and nothing else that could change the outcome.
// The spans are exported only when tftpgw stops, in one go, so that no
// span line is written while a log line is.
func tracingEnv(t *testing.T, exporter string) {
	for k, v := range map[string]string{
		"OTEL_TRACES_EXPORTER": exporter, "OTEL_BSP_SCHEDULE_DELAY": "600000",
		"OTEL_TRACES_SAMPLER": "", "OTEL_TRACES_SAMPLER_ARG": "", "OTEL_SERVICE_NAME": "", "OTEL_RESOURCE_ATTRIBUTES": "",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_EXPORTER_OTLP_PROTOCOL": "",
	} {
		t.Setenv(k, v)
	}
}

// jsonLines are the lines of g's output that are JSON objects: its log
// and, with the console exporter, its spans.
func jsonLines(g *gwProc) []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(g.logs.String(), "\n") {
		var m map[string]any
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// readSessionLine waits for g's "session end" line of a read of path.
func readSessionLine(t *testing.T, g *gwProc, path string) map[string]any {
	t.Helper()
	var line map[string]any
	if !waitFor(func() bool {
		for _, m := range jsonLines(g) {
			if m["msg"] == "session end" && m["path"] == path {
				line = m
				return true
			}
		}
		return false
	}) {
		t.Fatalf("tftpgw logged no session end for %q within %s", path, logTimeout)
	}
	return line
}

// stopTFTPGW stops g with SIGTERM and waits for it to exit, so that its
// output is complete (the last spans are exported on the way out).
func stopTFTPGW(t *testing.T, g *gwProc) {
	t.Helper()
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(stopTimeout):
		t.Fatalf("tftpgw still running %s after SIGTERM", stopTimeout)
	}
}

// printedSpan is what the console exporter prints of a span.
type printedSpan struct {
	Name        string
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct{ TraceID, SpanID string }
	Attributes  []struct {
		Key   string
		Value struct{ Value any }
	}
}

func (s printedSpan) attr(key string) any {
	for _, a := range s.Attributes {
		if a.Key == key {
			return a.Value.Value
		}
	}
	return nil
}

// printedSpans are the spans in g's output.
func printedSpans(t *testing.T, g *gwProc) []printedSpan {
	t.Helper()
	var spans []printedSpan
	for line := range strings.SplitSeq(g.logs.String(), "\n") {
		if !strings.HasPrefix(line, `{"Name":`) {
			continue
		}
		var s printedSpan
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("a span line that is not JSON: %v\n%s", err, line)
		}
		spans = append(spans, s)
	}
	return spans
}

var (
	traceparentRe = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-01$`)
	backendReadRe = func(path string) *regexp.Regexp {
		return regexp.MustCompile(`read path='` + regexp.QuoteMeta(path) + `' traceparent=(\S+) tracestate=`)
	}
)

// TestTraceReachesPythonBackend: the session's trace reaches a backend in
// Python as a traceparent in the Read call's metadata, and its trace id
// is the one in the edge's log line and in the spans the edge prints.
func TestTraceReachesPythonBackend(t *testing.T) {
	need(t, tracingBackend)
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "boot.ipxe"), []byte("#!ipxe\nchain http://boot/${mac}\n"))
	mustWrite(t, filepath.Join(root, "kernel"), make([]byte, 100_000))
	p := start(t, tracingBackend, root, "127.0.0.1:0")
	tracingEnv(t, "console")
	g := startTFTPGW(t, "-backend", p.addr, "-trace-filename-traceparent")

	if r := strictGet(t, g, "boot.ipxe", tftpclient.Options{BlockSize: 1468}); r.err != nil {
		t.Fatalf("boot.ipxe: %v", r.err)
	}
	tp := p.waitLog(t, backendReadRe("boot.ipxe"))[1]
	m := traceparentRe.FindStringSubmatch(tp)
	if m == nil {
		t.Fatalf("the backend's Read carried traceparent %q, want 00-TRACEID-SPANID-01", tp)
	}
	traceID, callSpanID := m[1], m[2]
	line := readSessionLine(t, g, "boot.ipxe")
	if line["trace_id"] != traceID {
		t.Errorf("edge log line trace_id %v, backend's traceparent trace id %s", line["trace_id"], traceID)
	}
	sessionSpanID, _ := line["span_id"].(string)

	// A client that appends a traceparent to the filename (Tinkerbell's
	// iPXE scripts do): the backend is asked for the file, within the
	// client's trace.
	const clientTrace, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	if r := strictGet(t, g, "kernel-00-"+clientTrace+"-"+clientSpan+"-01", tftpclient.Options{BlockSize: 1468, WindowSize: 8}); r.err != nil || len(r.data) != 100_000 {
		t.Fatalf("kernel with a traceparent: %d bytes, %v", len(r.data), r.err)
	}
	tp2 := p.waitLog(t, backendReadRe("kernel"))[1]
	if m := traceparentRe.FindStringSubmatch(tp2); m == nil || m[1] != clientTrace {
		t.Errorf("the backend's Read of kernel carried traceparent %q, want the client's trace %s", tp2, clientTrace)
	}
	if l := readSessionLine(t, g, "kernel"); l["trace_id"] != clientTrace {
		t.Errorf("edge log line of kernel: trace_id %v, want the client's %s", l["trace_id"], clientTrace)
	}

	stopTFTPGW(t, g) // the spans are printed on the way out
	spans := printedSpans(t, g)
	var session, call *printedSpan
	for i, s := range spans {
		switch {
		case s.Name == "TFTP read" && s.attr("tftp.path") == "boot.ipxe":
			session = &spans[i]
		case s.SpanContext.SpanID == callSpanID:
			call = &spans[i]
		}
	}
	if session == nil || call == nil {
		t.Fatalf("printed spans: session %v, backend call %v; want both:\n%s", session, call, g.logs)
	}
	if session.SpanContext.TraceID != traceID || session.SpanContext.SpanID != sessionSpanID {
		t.Errorf("session span %s/%s, log line %s/%s", session.SpanContext.TraceID, session.SpanContext.SpanID, traceID, sessionSpanID)
	}
	if call.Name != "tftpgw.v1.ContentService/Read" || call.Parent.SpanID != sessionSpanID {
		t.Errorf("backend call span %q, parent %s; want tftpgw.v1.ContentService/Read, child of the session's %s", call.Name, call.Parent.SpanID, sessionSpanID)
	}
	if session.attr("tftp.outcome") != "ok" || session.attr("client.address") != "127.0.0.1" {
		t.Errorf("session span attributes %+v", session.Attributes)
	}
	var kernel *printedSpan
	for i, s := range spans {
		if s.Name == "TFTP read" && s.attr("tftp.path") == "kernel" {
			kernel = &spans[i]
		}
	}
	if kernel == nil || kernel.SpanContext.TraceID != clientTrace || kernel.Parent.SpanID != clientSpan {
		t.Errorf("kernel's session span %+v: want trace %s, parent %s", kernel, clientTrace, clientSpan)
	}
}

// TestNoTraceWithoutExporter: with OTEL_TRACES_EXPORTER unset, tracing is
// off: the backend's Read carries no traceparent, the log line no
// trace_id, and nothing is printed.
func TestNoTraceWithoutExporter(t *testing.T) {
	need(t, tracingBackend)
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "boot.ipxe"), []byte("#!ipxe\n"))
	p := start(t, tracingBackend, root, "127.0.0.1:0")
	tracingEnv(t, "")
	os.Unsetenv("OTEL_TRACES_EXPORTER") // unset, not empty (t.Setenv restores it)
	g := startTFTPGW(t, "-backend", p.addr)
	if r := strictGet(t, g, "boot.ipxe", tftpclient.Options{}); r.err != nil {
		t.Fatal(r.err)
	}
	if tp := p.waitLog(t, backendReadRe("boot.ipxe"))[1]; tp != "-" {
		t.Errorf("the backend's Read carried traceparent %q with tracing off", tp)
	}
	line := readSessionLine(t, g, "boot.ipxe")
	stopTFTPGW(t, g)
	if _, ok := line["trace_id"]; ok {
		t.Errorf("a trace_id with tracing off: %v", line)
	}
	if spans := printedSpans(t, g); len(spans) != 0 || strings.Contains(g.logs.String(), "tracing on") {
		t.Errorf("tracing off, yet %d spans printed:\n%s", len(spans), g.logs)
	}
}
