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
	logger, err := newLogger(&buf, "json", "info", nil)
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
	if logger, err = newLogger(&buf, "text", "info", nil); err != nil {
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

// TestLogEscapesClientText: what a client sends (a file name, the
// message of its ERROR, a refused path) reaches the log with C1 controls
// (U+0085, U+009B), bidi overrides (U+202E), other controls and bytes
// that are not UTF-8 escaped, in both formats: the text format quotes the
// value (strconv escapes), the JSON format writes JSON escapes (it wrote
// them raw). A refused traversal names the path asked for in its cause
// (it was logged with path="" and nothing else).
func TestLogEscapesClientText(t *testing.T) {
	const (
		name   = "a\u0085b\u009bc\u202etxt.0"          // a file served
		errMsg = "x\u202ey\u0085z\x1b[2J"              // the client's ERROR message
		escape = "../\u202e\xff/etc/passwd"            // a refused traversal
		rawBad = "\u0085|\u009b|\u202e|\x1b|\x7f|\xff" // must not appear raw in any line
	)
	for _, tc := range []struct {
		format string
		want   []string // exact bytes of the line's attributes
	}{
		{"text", []string{
			` path="a\u0085b\u009bc\u202etxt.0" `,
			` client_error="x\u202ey\u0085z\x1b[2J"`,
			` path="" `,
			` cause="gateway: path escapes the root: \"../\\u202e\\xff/etc/passwd\""`,
		}},
		{"json", []string{
			`,"path":"a\u0085b\u009bc\u202etxt.0",`,
			`,"client_error":"x\u202ey\u0085z\u001b[2J"`,
			`,"path":"",`,
			`,"cause":"gateway: path escapes the root: \"../\\u202e\\xff/etc/passwd\""`,
		}},
	} {
		t.Run(tc.format, func(t *testing.T) {
			root := t.TempDir()
			want := randomFile(t, root, name, 100)
			g := startGateway(t, "-root", root, "-log-format", tc.format)
			c := newPeer(t)
			c.rrq(g.port, name)
			if got := c.expectData(1); !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes, want %d", len(got), len(want))
			}
			c.send(c.tid, append(append([]byte{0, 5, 0, 0}, errMsg...), 0))
			bad := newPeer(t)
			bad.rrq(g.port, escape)
			if b := bad.recv(5 * time.Second); !bytes.Equal(b, []byte("\x00\x05\x00\x02access violation\x00")) {
				t.Fatalf("traversal: got %q, want ERROR 2", b)
			}
			for range 500 {
				if strings.Count(g.logText(), "session end") == 2 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			logs := g.logText()
			var lines []string
			for line := range strings.SplitSeq(logs, "\n") {
				if strings.Contains(line, "session end") {
					lines = append(lines, line)
				}
			}
			if len(lines) != 2 {
				t.Fatalf("want 2 session end lines:\n%s", logs)
			}
			all := strings.Join(lines, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("no %s in\n%s", w, all)
				}
			}
			for r := range strings.SplitSeq(rawBad, "|") {
				if strings.Contains(logs, r) {
					t.Errorf("%q written raw:\n%q", r, logs)
				}
			}
			if tc.format == "json" {
				for _, line := range lines {
					m := decodeLine(t, line)
					if p := m["path"]; p != "" && p != name {
						t.Errorf("path decodes to %q, want %q", p, name)
					}
				}
			}
		})
	}
}
