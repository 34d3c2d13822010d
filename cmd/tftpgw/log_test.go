package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// decodeLine decodes one JSON log line keeping numbers as json.Number, so
// that a test sees the number as it was written.
func decodeLine(t *testing.T, line string) map[string]any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(line))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("%v: %q", err, line)
	}
	return m
}

// seconds returns m[key] as a float, failing unless it is a JSON number.
func seconds(t *testing.T, m map[string]any, key string) float64 {
	t.Helper()
	n, ok := m[key].(json.Number)
	if !ok {
		t.Fatalf("%q is %#v, want a JSON number of seconds", key, m[key])
	}
	f, err := n.Float64()
	if err != nil {
		t.Fatalf("%q: %v", key, err)
	}
	return f
}

// TestNewLoggerJSONDurationsInSeconds: -log-format json writes durations
// as float seconds, top-level and in groups; text keeps Go's "12.345678ms".
func TestNewLoggerJSONDurationsInSeconds(t *testing.T) {
	var buf bytes.Buffer
	logger, err := newLogger(&buf, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("session end",
		slog.Duration("duration", 12345678*time.Nanosecond),
		slog.Int64("bytes", 12345678),
		slog.Group("rtt", slog.Duration("srtt", 1500*time.Microsecond)))
	m := decodeLine(t, buf.String())
	if got := seconds(t, m, "duration"); got != 0.012345678 {
		t.Errorf("duration = %v, want 0.012345678 (seconds)\n%s", got, buf.String())
	}
	if got := m["bytes"]; got != json.Number("12345678") {
		t.Errorf("bytes = %#v, want 12345678 untouched", got)
	}
	group, ok := m["rtt"].(map[string]any)
	if !ok {
		t.Fatalf("no group rtt in %s", buf.String())
	}
	if got := seconds(t, group, "srtt"); got != 0.0015 {
		t.Errorf("rtt.srtt = %v, want 0.0015 (seconds)", got)
	}

	buf.Reset()
	if logger, err = newLogger(&buf, "text", "info"); err != nil {
		t.Fatal(err)
	}
	logger.Info("session end", slog.Duration("duration", 12345678*time.Nanosecond))
	if !strings.Contains(buf.String(), " duration=12.345678ms") {
		t.Errorf("text format changed: %s", buf.String())
	}
}

// TestSessionEndDurationInSeconds: the binary's "session end" line, with
// -log-format json, carries "duration" as a JSON number of seconds.
func TestSessionEndDurationInSeconds(t *testing.T) {
	root := t.TempDir()
	want := randomFile(t, root, "f", 100) // one block
	g := startGateway(t, "-root", root)   // startGateway sets -log-format json
	c := newPeer(t)
	start := time.Now()
	c.rrq(g.port, "f")
	if got := c.expectData(1); !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d", len(got), len(want))
	}
	c.ack(1)
	g.waitLog(t, `"msg":"session end"`)
	elapsed := time.Since(start).Seconds()

	for line := range strings.SplitSeq(g.logText(), "\n") {
		if !strings.Contains(line, `"msg":"session end"`) {
			continue
		}
		m := decodeLine(t, line)
		// In nanoseconds it would be in the thousands at least.
		if got := seconds(t, m, "duration"); got <= 0 || got > elapsed {
			t.Errorf("duration = %v, want seconds in (0, %v]\n%s", got, elapsed, line)
		}
		return
	}
	t.Fatalf("no session end line:\n%s", g.logText())
}
