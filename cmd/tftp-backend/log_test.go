package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/internal/syncbuf"
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
			func(a net.Addr) { addrc <- a.String() })
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
