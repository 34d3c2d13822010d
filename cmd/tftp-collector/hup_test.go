package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// publisher sends events to a collector, one stream each, as an edge
// would; every event is a distinct session.
type publisher struct {
	client tftpgwv1.StatsSinkClient
}

func newPublisher(t *testing.T, addr string) *publisher {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &publisher{client: tftpgwv1.NewStatsSinkClient(conn)}
}

// send publishes the event of session id and returns once the collector
// acknowledged it.
func (p *publisher) send(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	stream, err := p.client.Publish(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&tftpgwv1.StatsEvent{Sequence: 1, Instance: id,
		Event: &tftpgwv1.StatsEvent_Session{Session: &tftpgwv1.SessionStats{SessionId: id, EdgeId: "e", Path: strings.Repeat("x", 200)}}}); err != nil {
		return err
	}
	resp, err := stream.CloseAndRecv()
	if err == nil && resp.GetEventsReceived() != 1 {
		err = fmt.Errorf("events_received %d", resp.GetEventsReceived())
	}
	return err
}

// sessions returns the session IDs of the events in the JSON lines of
// file, failing the test on a line that is not a complete event.
func sessions(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev struct {
			Session struct {
				SessionID string `json:"session_id"`
			} `json:"session"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Session.SessionID == "" {
			t.Errorf("%s: not a complete event: %q (%v)", filepath.Base(file), sc.Text(), err)
			continue
		}
		ids = append(ids, ev.Session.SessionID)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestSIGHUPReopensOut (found in review): SIGHUP killed the collector
// (exit status 129, nothing logged), so logrotate's usual "postrotate
// kill -HUP" took it down, and systemd's Restart=on-failure did not start
// it again. SIGHUP now reopens -out: after the rotation's rename, events
// go to a new file at the path, and the old file holds complete lines.
// No event is lost or written twice though edges publish throughout.
func TestSIGHUPReopensOut(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "events.jsonl")
	p := startCollector(t, nil, "-listen", "127.0.0.1:0", "-out", out, "-log-format", "json")
	pub := newPublisher(t, p.Addr)
	if err := pub.send(t.Context(), "before"); err != nil {
		t.Fatal(err)
	}

	// Edges publishing throughout the rotation.
	ctx, cancel := context.WithCancel(t.Context())
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		sent = map[string]bool{"before": true}
	)
	for e := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("edge%d-%d", e, i)
				if err := pub.send(ctx, id); err != nil {
					if ctx.Err() == nil {
						t.Errorf("publish %s: %v", id, err)
					}
					return
				}
				mu.Lock()
				sent[id] = true
				mu.Unlock()
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	rotated := out + ".1"
	if err := os.Rename(out, rotated); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // events written after the rename go to the old file
	if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.WaitLog(t, `"level":"INFO","msg":"SIGHUP: reopened the output file`)
	time.Sleep(100 * time.Millisecond)
	cancel()
	wg.Wait()
	if err := pub.send(t.Context(), "after"); err != nil {
		t.Fatalf("publish after SIGHUP: %v", err)
	}
	sent["after"] = true
	if err := p.Stop(t); err != nil {
		t.Errorf("exit: %v\n%s", err, p.LogText())
	}

	old, cur := sessions(t, rotated), sessions(t, out)
	// (An event whose publisher gave up at cancel may still be written
	// after "after": the collector had received it.)
	if !slices.Contains(old, "before") || !slices.Contains(cur, "after") {
		t.Errorf("old file %d events, new file %d; want before in the old, after in the new", len(old), len(cur))
	}
	seen := map[string]bool{}
	for _, id := range append(old, cur...) {
		if seen[id] {
			t.Errorf("event %s written twice", id)
		}
		seen[id] = true
	}
	for id := range sent {
		if !seen[id] {
			t.Errorf("event %s acknowledged but in neither file", id)
		}
	}
	t.Logf("%d events: %d in the old file, %d in the new", len(sent), len(old), len(cur))
}

// TestSIGHUPWithoutReopen: when the path cannot be opened again, SIGHUP
// logs an ERROR and events go on to the old file; with -out - (stdout)
// there is nothing to reopen, which is logged. The collector serves on in
// both cases.
func TestSIGHUPWithoutReopen(t *testing.T) {
	for _, tt := range []struct {
		name string
		out  bool // -out FILE, renamed and replaced by a directory
		log  string
	}{
		{"path not openable", true, `"level":"ERROR","msg":"SIGHUP: cannot reopen the output file; still writing to the old one"`},
		{"stdout", false, `"level":"INFO","msg":"SIGHUP: nothing to reopen: the events go to stdout"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "events.jsonl")
			args := []string{"-listen", "127.0.0.1:0", "-log-format", "json", "-out", "-"}
			if tt.out {
				args[len(args)-1] = out
			}
			p := startCollector(t, nil, args...)
			pub := newPublisher(t, p.Addr)
			if err := pub.send(t.Context(), "before"); err != nil {
				t.Fatal(err)
			}
			if tt.out {
				if err := os.Rename(out, out+".1"); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(out, 0o755); err != nil { // no file opens there
					t.Fatal(err)
				}
			}
			if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			p.WaitLog(t, tt.log)
			if err := pub.send(t.Context(), "after"); err != nil {
				t.Fatalf("publish after SIGHUP: %v", err)
			}
			if tt.out {
				if got := sessions(t, out+".1"); strings.Join(got, ",") != "before,after" {
					t.Errorf("old file: %q, want before and after", got)
				}
			}
		})
	}
}
