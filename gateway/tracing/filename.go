package tracing

import (
	"go.opentelemetry.io/otel/trace"
)

// traceparentLen is the length of a W3C traceparent of version 00:
// "vv-" 32 hex digits "-" 16 hex digits "-ff".
const traceparentLen = 2 + 1 + 32 + 1 + 16 + 1 + 2

// SplitTraceparent splits a W3C traceparent (https://www.w3.org/TR/trace-context/)
// appended to a filename with a dash, the way Tinkerbell's smee accepts it
// over TFTP and HTTP: "ipxe.efi-00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
// is the file "ipxe.efi" requested within trace
// 0af7651916cd43dd8448eb211c80319c, by span b7ad6b7169203331, sampled.
// It returns the filename without the suffix and the remote span context
// it names; ok is false, and name the whole filename, when the filename
// does not end with a valid traceparent: hex digits that are not
// lower-case, a trace or span id of zeros, version ff, or nothing before
// the suffix. The sampled flag (01) is kept: a parent that was not sampled
// makes a span that is not sampled either, under the default sampler.
func SplitTraceparent(filename string) (name string, parent trace.SpanContext, ok bool) {
	n := len(filename) - traceparentLen
	if n < 2 || filename[n-1] != '-' {
		return filename, trace.SpanContext{}, false
	}
	tp := filename[n:]
	if tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return filename, trace.SpanContext{}, false
	}
	version, flags := tp[0:2], tp[53:55]
	if !lowerHex(version) || version == "ff" || !lowerHex(flags) {
		return filename, trace.SpanContext{}, false
	}
	tid, err := trace.TraceIDFromHex(tp[3:35]) // lower-case hex, not all zeros
	if err != nil {
		return filename, trace.SpanContext{}, false
	}
	sid, err := trace.SpanIDFromHex(tp[36:52])
	if err != nil {
		return filename, trace.SpanContext{}, false
	}
	var tf trace.TraceFlags
	if unhex(flags[1])&1 != 0 {
		tf = trace.FlagsSampled
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: tf, Remote: true})
	return filename[:n-1], sc, true
}

// lowerHex reports whether s is lower-case hex digits only.
func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// unhex is the value of a lower-case hex digit.
func unhex(c byte) byte {
	if c >= 'a' {
		return c - 'a' + 10
	}
	return c - '0'
}
