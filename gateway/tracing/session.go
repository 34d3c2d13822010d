package tracing

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tftpgw/tftpgw/gateway"
)

// ScopeName is the instrumentation scope of the session spans.
const ScopeName = "github.com/tftpgw/tftpgw/gateway/tracing"

// SessionOptions are a Sessions tracer's.
type SessionOptions struct {
	// FilenameTraceparent accepts a W3C traceparent appended to the
	// filename, as Tinkerbell's smee does ("ipxe.efi-00-<trace id>-<span
	// id>-01", see SplitTraceparent): the suffix is removed before the
	// path is used, and the session's span is a child of that trace. A
	// malformed suffix is left in the filename. Off by default: a file
	// whose name ends with such a suffix is then served as named.
	FilenameTraceparent bool
}

// Sessions is a [gateway.SessionTracer] that makes every session a span,
// "TFTP read", "TFTP write" or, for the server's HTTP requests
// (gateway.Server.ServeHTTP), "HTTP read" (kind server), from the arrival of its
// request to its end, with the attributes README.md and
// docs/operations.md list (client.address, tftp.path, tftp.outcome,
// tftp.bytes_acked, ...). The context the handler gets carries the span.
//
// A session ended by the server with an ERROR the client cannot help
// (ERROR 0: a backend failure, busy, shutting down) or by a silent client
// has the span status Error; other refusals (file not found, access
// violation, upload too large) are answers, not failures, and leave it
// unset, as an HTTP server's 4xx does.
type Sessions struct {
	tracer trace.Tracer
	opts   SessionOptions
}

var _ gateway.SessionTracer = (*Sessions)(nil)

// NewSessions returns a tracer of sessions making spans with tp. With a
// nil tp it makes no span and only removes the traceparents of filenames
// (with o.FilenameTraceparent), at the cost of a look at the filename.
func NewSessions(tp trace.TracerProvider, o SessionOptions) *Sessions {
	s := &Sessions{opts: o}
	if tp != nil {
		s.tracer = tp.Tracer(ScopeName)
	}
	return s
}

// StartSession starts the session's span (see [gateway.SessionTracer]).
func (s *Sessions) StartSession(ctx context.Context, st *gateway.SessionStats) context.Context {
	raw := st.RawPath
	// An HTTP request's trace comes in its traceparent header (see
	// Tracing.HTTPHandler), never in its path.
	if s.opts.FilenameTraceparent && st.Protocol == gateway.ProtocolTFTP {
		if name, parent, ok := SplitTraceparent(raw); ok {
			st.RawPath = name
			if s.tracer == nil {
				return ctx
			}
			ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
		}
	}
	if s.tracer == nil {
		return ctx
	}
	name := "TFTP read"
	switch {
	case st.Protocol == gateway.ProtocolHTTP:
		name = "HTTP read"
	case st.Write:
		name = "TFTP write"
	}
	start := st.Start
	if start.IsZero() {
		start = time.Now()
	}
	ctx, span := s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start))
	if span.IsRecording() { // else the attributes are not built for nothing
		span.SetAttributes(sessionStartAttrs(st, raw)...)
	}
	return ctx
}

// sessionStartAttrs are the attributes of a session known at its start;
// raw is the filename as the client sent it.
func sessionStartAttrs(st *gateway.SessionStats, raw string) []attribute.KeyValue {
	op := "read"
	if st.Write {
		op = "write"
	}
	transport := "udp"
	if st.Protocol == gateway.ProtocolHTTP {
		transport = "tcp"
	}
	attrs := make([]attribute.KeyValue, 0, 11)
	attrs = append(attrs,
		attribute.String("client.address", st.RemoteAddr.Addr().String()),
		attribute.Int("client.port", int(st.RemoteAddr.Port())),
		attribute.String("server.address", st.LocalAddr.Addr().String()),
		attribute.Int("server.port", int(st.LocalAddr.Port())),
		attribute.String("network.transport", transport),
		attribute.String("network.protocol.name", st.Protocol.String()),
		attribute.String("tftp.session.id", st.SessionID),
		attribute.String("tftp.operation", op),
		attribute.String("tftp.filename", raw),
		attribute.String("tftp.mode", st.Mode),
	)
	if len(st.RequestedOptions) > 0 {
		attrs = append(attrs, attribute.StringSlice("tftp.options.requested", optionStrings(st.RequestedOptions)))
	}
	return attrs
}

// optionStrings are options as "name=value".
func optionStrings(opts []gateway.Option) []string {
	out := make([]string, len(opts))
	for i, o := range opts {
		out[i] = o.Name + "=" + o.Value
	}
	return out
}

// EndSession sets the session's outcome on its span and ends it.
func (s *Sessions) EndSession(ctx context.Context, st *gateway.SessionStats) {
	if s.tracer == nil {
		return
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(sessionEndAttrs(st)...)
	if failed(st) {
		msg := st.Outcome.String()
		if e := st.ErrorSent; e != nil {
			msg = e.Message
		}
		span.SetStatus(codes.Error, msg)
	}
	span.End(trace.WithTimestamp(st.Start.Add(st.Duration)))
}

// failed reports whether a session failed for reasons of the server's, or
// of a client gone silent (see Sessions).
func failed(st *gateway.SessionStats) bool {
	if st.Outcome == gateway.OutcomeTimeout {
		return true
	}
	e := st.ErrorSent
	return st.Outcome == gateway.OutcomeError && e != nil && e.Code == gateway.ErrNotDefined
}

// sessionEndAttrs are the attributes of a finished session.
func sessionEndAttrs(st *gateway.SessionStats) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 24)
	attrs = append(attrs,
		attribute.String("tftp.path", st.Path),
		attribute.String("tftp.outcome", st.Outcome.String()),
		attribute.Float64("tftp.duration", st.Duration.Seconds()),
	)
	if st.Protocol == gateway.ProtocolTFTP { // HTTP has no blocks nor packets of its own
		attrs = append(attrs,
			attribute.Int("tftp.blksize", st.BlockSize),
			attribute.Int("tftp.windowsize", st.WindowSize),
			attribute.Int64("tftp.retransmits", st.Retransmits),
			attribute.Int64("tftp.duplicate_acks", st.DuplicateAcks),
			attribute.Int64("tftp.packets_sent", st.PacketsSent),
		)
	}
	if st.RewrittenPath != "" {
		attrs = append(attrs, attribute.String("tftp.path.rewritten", st.RewrittenPath))
	}
	if st.Protocol == gateway.ProtocolHTTP {
		attrs = append(attrs, attribute.Int("http.response.status_code", st.HTTPStatus))
	}
	if st.Write {
		attrs = append(attrs, attribute.Int64("tftp.bytes_received", st.BytesReceived))
	} else {
		attrs = append(attrs,
			attribute.Int64("tftp.bytes_sent", st.BytesSent),
			attribute.Int64("tftp.bytes_acked", st.BytesAcked))
	}
	if st.TransferSize >= 0 {
		attrs = append(attrs, attribute.Int64("tftp.tsize", st.TransferSize))
	}
	if st.TimeToFirstData > 0 {
		attrs = append(attrs, attribute.Float64("tftp.time_to_first_data", st.TimeToFirstData.Seconds()))
	}
	if len(st.NegotiatedOptions) > 0 {
		attrs = append(attrs, attribute.StringSlice("tftp.options.negotiated", optionStrings(st.NegotiatedOptions)))
	}
	if e := st.ErrorSent; e != nil {
		attrs = append(attrs, attribute.Int("tftp.error.code", int(e.Code)), attribute.String("tftp.error.message", e.Message))
	}
	if e := st.ErrorReceived; e != nil {
		attrs = append(attrs, attribute.Int("tftp.client_error.code", int(e.Code)), attribute.String("tftp.client_error.message", e.Message))
	}
	if b := st.Backend; b != nil {
		attrs = append(attrs,
			attribute.String("tftp.backend.target", b.Target),
			attribute.Int("tftp.backend.resumes", b.Resumes))
		if b.Peer != "" {
			attrs = append(attrs, attribute.String("tftp.backend.peer", b.Peer))
		}
		if b.HeaderLatency > 0 {
			attrs = append(attrs, attribute.Float64("tftp.backend.header_latency", b.HeaderLatency.Seconds()))
		}
	}
	return attrs
}
