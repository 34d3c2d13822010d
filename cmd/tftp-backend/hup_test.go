package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// TestSIGHUPKeepsServing (found in review): SIGHUP killed tftp-backend
// (exit status 129, nothing logged), and systemd's Restart=on-failure
// then left it down. It is logged at INFO, and the backend goes on
// serving: a stream in flight across the signal ends complete, and new
// calls are served.
func TestSIGHUPKeepsServing(t *testing.T) {
	dir := t.TempDir()
	big := make([]byte, 4<<20) // more than the stream's flow-control window
	rand.Read(big)
	writeFile(t, filepath.Join(dir, "big"), string(big))
	writeFile(t, filepath.Join(dir, "small"), "small")
	p := startProc(t, "-listen", "127.0.0.1:0", "-root", dir, "-log-format", "json")
	conn := connect(t, p.Addr, nil)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	stream, err := tftpgwv1.NewContentServiceClient(conn).Read(ctx, &tftpgwv1.ReadRequest{Path: "big", RawPath: "big", Mode: "octet"})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	first, err := stream.Recv() // the header: the call runs
	if err != nil || first.GetHeader() == nil {
		t.Fatalf("first message %v, %v; want the header", first, err)
	}

	for range 2 { // twice: the handler stays
		if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	logs := p.WaitLog(t, `"msg":"SIGHUP: nothing to reload`)
	if !bytes.Contains([]byte(logs), []byte(`"level":"INFO","msg":"SIGHUP: nothing to reload`)) {
		t.Errorf("the SIGHUP line is not at INFO:\n%s", logs)
	}

	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the stream in flight broke after SIGHUP: %v (%d bytes)", err, got.Len())
		}
		got.Write(msg.GetData())
	}
	if !bytes.Equal(got.Bytes(), big) {
		t.Errorf("the stream in flight: %d bytes, not the file's %d", got.Len(), len(big))
	}
	if s, err := fetch(ctx, conn, "small"); err != nil || s != "small" {
		t.Errorf("a call after SIGHUP: %q, %v", s, err)
	}
	if exited, err := p.Exited(); exited {
		t.Fatalf("tftp-backend exited after SIGHUP: %v\n%s", err, p.LogText())
	}
}
