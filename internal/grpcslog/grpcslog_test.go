package grpcslog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func jsonLines(t *testing.T, b *bytes.Buffer) []map[string]any {
	t.Helper()
	var r []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		r = append(r, m)
	}
	return r
}

// TestSeveritiesMapToLevels: INFO at debug, WARNING at warn, ERROR at
// error; severities below the option's are not logged, nor lines below
// the slog logger's level.
func TestSeveritiesMapToLevels(t *testing.T) {
	for _, tt := range []struct {
		name     string
		severity Severity
		level    slog.Level
		want     []string // levels of the lines written
	}{
		{"all, debug", SeverityInfo, slog.LevelDebug, []string{"DEBUG", "DEBUG", "DEBUG", "WARN", "WARN", "WARN", "ERROR", "ERROR", "ERROR"}},
		{"all, info", SeverityInfo, slog.LevelInfo, []string{"WARN", "WARN", "WARN", "ERROR", "ERROR", "ERROR"}},
		{"warning", SeverityWarning, slog.LevelDebug, []string{"WARN", "WARN", "WARN", "ERROR", "ERROR", "ERROR"}},
		{"error (gRPC's default)", SeverityError, slog.LevelDebug, []string{"ERROR", "ERROR", "ERROR"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			g := New(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: tt.level})), Options{Severity: tt.severity})
			g.Info("a", 1)
			g.Infoln("b", 2)
			g.Infof("c %d", 3)
			g.Warning("d")
			g.Warningln("e")
			g.Warningf("f %s", "x")
			g.Error("g")
			g.Errorln("h")
			g.Errorf("i %v", true)
			var got []string
			for _, m := range jsonLines(t, &buf) {
				got = append(got, m["level"].(string))
				if m["system"] != "grpc" {
					t.Errorf("line without system=grpc: %v", m)
				}
				if msg := m["msg"].(string); strings.HasSuffix(msg, "\n") {
					t.Errorf("message ends in a newline: %q", msg)
				}
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("levels %v, want %v", got, tt.want)
			}
		})
	}
}

func TestComponentAttribute(t *testing.T) {
	var buf bytes.Buffer
	g := New(slog.New(slog.NewJSONHandler(&buf, nil)), Options{})
	g.Warningln("[core] [Channel #1 SubChannel #2]grpc: addrConn.createTransport failed to connect")
	g.Warningln("[not a component] x")
	lines := jsonLines(t, &buf)
	if lines[0]["grpc_component"] != "core" || lines[0]["msg"] != "[Channel #1 SubChannel #2]grpc: addrConn.createTransport failed to connect" {
		t.Errorf("component line: %v", lines[0])
	}
	if _, ok := lines[1]["grpc_component"]; ok || lines[1]["msg"] != "[not a component] x" {
		t.Errorf("plain line: %v", lines[1])
	}
}

func TestVerbosity(t *testing.T) {
	g := New(nil, Options{Verbosity: 2})
	if !g.V(0) || !g.V(2) || g.V(3) {
		t.Errorf("V with verbosity 2: %v %v %v", g.V(0), g.V(2), g.V(3))
	}
}

func TestSetLoggerSwitchesTarget(t *testing.T) {
	var a, b bytes.Buffer
	g := New(slog.New(slog.NewJSONHandler(&a, nil)), Options{})
	g.Error("one")
	g.SetLogger(slog.New(slog.NewJSONHandler(&b, nil)))
	g.Error("two")
	if !strings.Contains(a.String(), `"one"`) || strings.Contains(a.String(), "two") || !strings.Contains(b.String(), `"two"`) {
		t.Errorf("a %q, b %q", a.String(), b.String())
	}
}

// TestFatalExits: Fatal logs at error level whatever the severity option,
// and exits with status 1.
func TestFatalExits(t *testing.T) {
	var buf bytes.Buffer
	g := New(slog.New(slog.NewJSONHandler(&buf, nil)), Options{Severity: SeverityError + 1})
	var code = -1
	g.exit = func(c int) { code = c }
	g.Fatalf("boom %d", 1)
	lines := jsonLines(t, &buf)
	if code != 1 || len(lines) != 1 || lines[0]["level"] != "ERROR" || lines[0]["msg"] != "boom 1" || lines[0]["fatal"] != true {
		t.Errorf("exit %d, lines %v", code, lines)
	}
}

func TestOptionsFromEnv(t *testing.T) {
	for _, tt := range []struct {
		sev, verb string
		want      Options
	}{
		{"", "", Options{Severity: SeverityError}},
		{"INFO", "2", Options{Severity: SeverityInfo, Verbosity: 2}},
		{"warning", "x", Options{Severity: SeverityWarning}},
		{"nonsense", "", Options{Severity: SeverityError}},
	} {
		t.Setenv("GRPC_GO_LOG_SEVERITY_LEVEL", tt.sev)
		t.Setenv("GRPC_GO_LOG_VERBOSITY_LEVEL", tt.verb)
		if got := OptionsFromEnv(); got != tt.want {
			t.Errorf("%q %q: %+v, want %+v", tt.sev, tt.verb, got, tt.want)
		}
	}
}

// TestExpectedErrorsAtInfo: gRPC's error for a server without the health
// service, which tftpgw documents as healthy, is logged at info level
// (found in operator review: an ERROR at every start), and not at all
// above info; other errors stay errors.
func TestExpectedErrorsAtInfo(t *testing.T) {
	const health = "Subchannel health check is unimplemented at server side, thus health check is disabled for SubConn 0x1"
	for _, tt := range []struct {
		name  string
		level slog.Level
		msg   string
		want  []string
	}{
		{"health, info", slog.LevelInfo, health, []string{"INFO"}},
		{"health, warn", slog.LevelWarn, health, nil},
		{"other error, warn", slog.LevelWarn, "connection refused", []string{"ERROR"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			g := New(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: tt.level})), Options{Severity: SeverityError})
			g.Errorf("%s", tt.msg)
			var got []string
			for _, m := range jsonLines(t, &buf) {
				got = append(got, m["level"].(string))
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("levels %v, want %v", got, tt.want)
			}
		})
	}
}
