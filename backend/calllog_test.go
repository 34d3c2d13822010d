package backend

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// callLines returns the "finished call" lines logged as JSON in out.
func callLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		if m["msg"] == "finished call" {
			lines = append(lines, m)
		}
	}
	return lines
}

// TestCallLogNamesThePath (found in review): a finished call's line said
// which method ended with which code, but not which file: a Read's line
// now has its path, and its offset when not zero, and a Write's its
// path. Config.CallLevel sets the line's level by code.
func TestCallLogNamesThePath(t *testing.T) {
	h := gateway.HandlerFunc(func(_ context.Context, r *gateway.Request) (gateway.Content, error) {
		if r.Path == "missing" {
			return nil, &gateway.Error{Code: gateway.ErrFileNotFound, Message: "file not found"}
		}
		return newMem(alphabet, gateway.ContentInfo{}), nil
	})
	quietOK := func(c codes.Code) slog.Level {
		if c == codes.OK {
			return slog.LevelDebug
		}
		return slog.LevelWarn
	}
	for _, tc := range []struct {
		name      string
		callLevel func(codes.Code) slog.Level
		call      func(*testing.T, *grpc.ClientConn)
		want      map[string]any // fields of the line; nil: absent
	}{
		{"read", nil, readPath("k", 0),
			map[string]any{"path": "k", "offset": nil, "grpc.code": "OK", "level": "INFO"}},
		{"read from an offset", nil, readPath("boot/k", 3),
			map[string]any{"path": "boot/k", "offset": 3.0, "grpc.code": "OK"}},
		{"read of a missing file", nil, readPath("missing", 0),
			map[string]any{"path": "missing", "grpc.code": "NotFound", "level": "INFO"}},
		{"write", nil, writePath("up/a"),
			map[string]any{"path": "up/a", "grpc.code": "OK", "grpc.method": "Write"}},
		{"CallLevel, success", quietOK, readPath("k", 0),
			map[string]any{"path": "k", "level": "DEBUG"}},
		{"CallLevel, failure", quietOK, readPath("missing", 0),
			map[string]any{"path": "missing", "level": "WARN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out syncbuf.Buffer
			logger := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
			conn := dial(t, h, Config{Logger: logger, CallLevel: tc.callLevel, WriteHandler: newStore()})
			tc.call(t, conn)
			// The line is written before the call's status reaches the
			// client.
			lines := callLines(t, out.String())
			if len(lines) != 1 {
				t.Fatalf("%d finished call lines, want 1:\n%s", len(lines), out.String())
			}
			for k, v := range tc.want {
				if got, ok := lines[0][k]; got != v || (v == nil) == ok {
					t.Errorf("%s: %v, want %v\n%s", k, got, v, out.String())
				}
			}
		})
	}
}

// readPath returns a call reading path from offset.
func readPath(path string, offset uint64) func(*testing.T, *grpc.ClientConn) {
	return func(t *testing.T, conn *grpc.ClientConn) {
		r := read(t.Context(), t, conn, &tftpgwv1.ReadRequest{Path: path, RawPath: path, Mode: "octet", Offset: offset})
		if r.err != nil && status.Code(r.err) != codes.NotFound {
			t.Fatalf("read %s: %v", path, r.err)
		}
	}
}

// writePath returns a call uploading "hi" to path.
func writePath(path string) func(*testing.T, *grpc.ClientConn) {
	return func(t *testing.T, conn *grpc.ClientConn) {
		s, err := openWrite(t.Context(), t, conn, startMsg(path))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(dataMsg([]byte("hi"))); err != nil {
			t.Fatal(err)
		}
		if _, err := finish(t, s, endMsg(2, sum256([]byte("hi")))); err != nil {
			t.Fatal(err)
		}
	}
}
