package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/tftpgw/tftpgw/internal/syncbuf"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// TestJSONLogEscapesClientText: with -log-format json, a requested path
// holding a bidi override (U+202E) or a C1 control (U+009B) reaches the
// call log as JSON escapes, never raw (the gRPC error of a missing file
// names the path).
func TestJSONLogEscapesClientText(t *testing.T) {
	const name = "x\u202ey\u009bz"
	var out syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-root", t.TempDir(), "-log-format", "json"}, &out,
			func(a net.Addr) { addrc <- a.String() }, nil)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		done <- err
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("backend did not start")
	}
	fctx, fcancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer fcancel()
	if _, err := fetch(fctx, connect(t, addr, nil), name); err == nil {
		t.Fatal("a missing file was served")
	}
	for range 500 {
		if strings.Contains(out.String(), "finished call") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	logs := out.String()
	if !strings.Contains(logs, `x\u202ey\u009bz`) {
		t.Errorf("the path is not in the log, escaped:\n%s", logs)
	}
	for _, r := range []string{"\u202e", "\u009b"} {
		if strings.Contains(logs, r) {
			t.Errorf("%q written raw:\n%q", r, logs)
		}
	}
}

// startLogged runs the command with args (plus -listen 127.0.0.1:0) until
// the test ends, logging to the returned buffer, and returns its address.
func startLogged(t *testing.T, args ...string) (string, *syncbuf.Buffer) {
	t.Helper()
	out := new(syncbuf.Buffer)
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"-listen", "127.0.0.1:0"}, args...), out, func(a net.Addr) { addrc <- a.String() }, nil)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case a := <-addrc:
		return a, out
	case err := <-done:
		done <- err
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("backend did not start")
	}
	return "", nil
}

// readAt makes one Read call of path from offset and returns its error.
func readAt(t *testing.T, conn *grpc.ClientConn, path string, offset uint64) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	stream, err := tftpgwv1.NewContentServiceClient(conn).Read(ctx, &tftpgwv1.ReadRequest{
		Path: path, RawPath: path, Mode: "octet", Offset: offset,
		Client: &tftpgwv1.Address{Ip: "10.1.2.3", Port: 2000}, LocalAddress: &tftpgwv1.Address{Ip: "10.1.2.1", Port: 69},
	})
	if err != nil {
		return err
	}
	for {
		if _, err := stream.Recv(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// TestCallLogLevelAndPath (found in review): tftp-backend had no
// -log-level, and logged every call at INFO without the file it was for,
// which floods the log in a boot storm and cannot answer "which file?".
// Each call's line now names the path, the offset when not zero, and the
// code; a call that succeeded is logged at DEBUG, a failed one at INFO
// or above; -log-level chooses what is written.
func TestCallLogLevelAndPath(t *testing.T) {
	type call struct {
		path   string
		offset uint64
		want   map[string]any // the finished call line's fields; nil: no line
	}
	for _, tt := range []struct {
		name  string
		args  []string
		calls []call
	}{
		{"default level: failures only", nil, []call{
			{"k", 0, nil},
			{"k", 2, nil},
			{"missing", 0, map[string]any{"level": "INFO", "path": "missing", "grpc.code": "NotFound"}},
			{"missing", 7, map[string]any{"level": "INFO", "path": "missing", "offset": 7.0, "grpc.code": "NotFound"}},
		}},
		{"debug: successes too", []string{"-log-level", "debug"}, []call{
			{"k", 0, map[string]any{"level": "DEBUG", "path": "k", "offset": nil, "grpc.code": "OK"}},
			{"k", 2, map[string]any{"level": "DEBUG", "path": "k", "offset": 2.0, "grpc.code": "OK"}},
			{"missing", 0, map[string]any{"level": "INFO", "path": "missing", "grpc.code": "NotFound"}},
		}},
		{"warn: no routine failure", []string{"-log-level", "WARN"}, []call{
			{"k", 0, nil},
			{"missing", 0, nil},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "k"), "kernel")
			addr, out := startLogged(t, append([]string{"-root", dir, "-log-format", "json"}, tt.args...)...)
			conn := connect(t, addr, nil)
			for _, c := range tt.calls {
				before := len(out.String())
				readAt(t, conn, c.path, c.offset)
				// The line is written before the call's status reaches
				// the client.
				var lines []map[string]any
				for line := range strings.SplitSeq(strings.TrimSpace(out.String()[before:]), "\n") {
					var m map[string]any
					if err := json.Unmarshal([]byte(line), &m); err == nil && m["msg"] == "finished call" {
						lines = append(lines, m)
					}
				}
				switch {
				case c.want == nil && len(lines) != 0:
					t.Errorf("%s@%d: logged %v, want nothing", c.path, c.offset, lines)
				case c.want != nil && len(lines) != 1:
					t.Errorf("%s@%d: %d lines, want 1:\n%s", c.path, c.offset, len(lines), out.String()[before:])
				case c.want != nil:
					for k, v := range c.want {
						if got, ok := lines[0][k]; got != v || (v == nil) == ok {
							t.Errorf("%s@%d: %s %v, want %v", c.path, c.offset, k, got, v)
						}
					}
				}
			}
		})
	}
}

// TestCallLogText: in the text format the call's line names the path
// too, and -log-level takes the names tftpgw's does, with its message for
// a bad one.
func TestCallLogText(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "k"), "kernel")
	addr, out := startLogged(t, "-root", dir, "-log-level", "debug")
	readAt(t, connect(t, addr, nil), "k", 3)
	if logs := out.String(); !regexp.MustCompile(`level=DEBUG msg="finished call" .* path=k offset=3 grpc.code=OK`).MatchString(logs) {
		t.Errorf("no finished call line with the path:\n%s", logs)
	}

	code, msg := runMain(t, "-root", dir, "-log-level", "loud")
	if want := `tftp-backend: -log-level: slog: level string "loud": unknown name`; code != 2 || strings.TrimSpace(msg) != want {
		t.Errorf("-log-level loud: exit %d, %q; want 2 and %q", code, msg, want)
	}
}
