package examples_test

// The Python stats sink (issue 18): examples/python-collector/collector.py
// receives the events of the real tftpgw binary (-stats-sink) and prints
// one line per session and per server report; called directly, it
// acknowledges every event of a batch and prints each event once, however
// often an edge sends it.

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tftpgw/tftpgw/internal/tftpclient"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// pythonCollector runs the Python stats sink; it serves no directory.
var pythonCollector = backend{
	name:    "python-collector",
	missing: pythonMissing,
	command: func(_, listen string, extra ...string) []string {
		return append([]string{python, "python-collector/collector.py", "--listen", listen}, extra...)
	},
	serving: exampleServing,
}

func TestPythonCollectorPrintsSessionsAndServerStats(t *testing.T) {
	need(t, pythonCollector)
	root := t.TempDir()
	file := []byte(strings.Repeat("0123456789", 500)) // 4 blocks of 1468 bytes
	mustWrite(t, filepath.Join(root, "pxelinux.0"), file)
	c := start(t, pythonCollector, "", "127.0.0.1:0")
	g := startTFTPGW(t, "-root", root, "-stats-sink", c.addr, "-stats-interval", "1s", "-edge-id", "edge-test",
		"-upload-allow", "uploads/*")

	get := func(ip, path string) error {
		ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
		defer cancel()
		var sink strings.Builder
		_, err := tftpclient.Get(ctx, g.addr, path, &sink, tftpclient.Options{BlockSize: blockSize, TSize: true, LocalAddr: netip.MustParseAddr(ip)})
		return err
	}
	if err := get("127.0.0.2", "pxelinux.0"); err != nil {
		t.Fatal(err)
	}
	if err := get("127.0.0.3", "missing.cfg"); err == nil {
		t.Fatal("missing.cfg was served")
	}
	upload := []byte(strings.Repeat("hostname switch1\n", 200))
	ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
	defer cancel()
	if _, err := tftpclient.Put(ctx, g.addr, "uploads/switch1.cfg", bytes.NewReader(upload), int64(len(upload)),
		tftpclient.Options{TSize: true, LocalAddr: netip.MustParseAddr("127.0.0.4")}); err != nil {
		t.Fatalf("upload: %v", err)
	}

	c.waitLog(t, regexp.MustCompile(fmt.Sprintf(
		`(?m)^\S+Z session read OK client=127\.0\.0\.2:\d+ path="pxelinux\.0" bytes=%d ms=\d+\.\d `+
			`edge="edge-test" id="[^"]+" tsize=%d blksize=%d windowsize=1 retransmits=\d+$`,
		len(file), len(file), blockSize)))
	c.waitLog(t, regexp.MustCompile(
		`(?m)^\S+Z session read ERROR client=127\.0\.0\.3:\d+ path="missing\.cfg" bytes=0 ms=\d+\.\d `+
			`edge="edge-test" id="[^"]+" tsize=-1 .* error_sent=1:"file not found"$`))
	c.waitLog(t, regexp.MustCompile(fmt.Sprintf(
		`(?m)^\S+Z session write OK client=127\.0\.0\.4:\d+ path="uploads/switch1\.cfg" bytes=%d ms=\d+\.\d `+
			`edge="edge-test" id="[^"]+" tsize=%d blksize=512 windowsize=1 retransmits=\d+$`, len(upload), len(upload))))
	// A report covering the three sessions (one interval, or more).
	c.waitLog(t, regexp.MustCompile(
		`(?m)^\S+Z server edge="edge-test" final=false .* total_sessions=3 total_bytes_sent=\d+$`))

	// The edge's last report, sent as it stops, says it dropped nothing.
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(stopTimeout):
		t.Fatal("tftpgw did not stop")
	}
	c.waitLog(t, regexp.MustCompile(`(?m)^\S+Z server edge="edge-test" final=true .* dropped=0 total_sessions=3 `))
	if n := strings.Count(c.logs.String(), ` session `); n != 3 {
		t.Errorf("%d session lines, want 3:\n%s", n, c.logs)
	}
}

// The edge sends a batch again when its acknowledgement was lost: the
// sink acknowledges every event it reads and prints each event once;
// a gap in the sequence is logged; a restarted edge (another instance)
// starts again at 1.
func TestPythonCollectorAcknowledgesBatchesAndDropsCopies(t *testing.T) {
	need(t, pythonCollector)
	c := start(t, pythonCollector, "", "127.0.0.1:0")
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := tftpgwv1.NewStatsSinkClient(conn)

	event := func(instance string, seq uint64, path string) *tftpgwv1.StatsEvent {
		return &tftpgwv1.StatsEvent{Instance: instance, Sequence: seq, Event: &tftpgwv1.StatsEvent_Session{Session: &tftpgwv1.SessionStats{
			EdgeId: "edge-a", SessionId: path, Path: path, Outcome: tftpgwv1.Outcome_OUTCOME_OK,
			ClientAddress: &tftpgwv1.Address{Ip: "127.0.0.9", Port: 2000}, BytesAcked: 10, Duration: durationpb.New(time.Millisecond),
		}}}
	}
	report := func(instance string, seq uint64) *tftpgwv1.StatsEvent {
		return &tftpgwv1.StatsEvent{Instance: instance, Sequence: seq, Event: &tftpgwv1.StatsEvent_Server{Server: &tftpgwv1.ServerStats{
			EdgeId: "edge-a", Delta: &tftpgwv1.Counters{SessionsOk: 3}, Total: &tftpgwv1.Counters{SessionsOk: 3}}}}
	}
	publish := func(events ...*tftpgwv1.StatsEvent) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
		defer cancel()
		stream, err := client.Publish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range events {
			if err := stream.Send(ev); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := stream.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.GetEventsReceived(); got != uint64(len(events)) {
			t.Errorf("events_received %d, want %d: every event read, copies included", got, len(events))
		}
	}

	publish(event("i1", 1, "a"), event("i1", 2, "b"))
	publish(event("i1", 1, "a"), event("i1", 2, "b"), report("i1", 3)) // the first ack was lost
	publish(event("i1", 6, "f"))                                       // 4 and 5 dropped by the edge
	publish(event("i1", 5, "e"), event("i2", 1, "restarted"))          // a late copy; a new edge process
	publish(event("", 0, "unnumbered"), event("", 0, "unnumbered"))    // an edge that does not number

	// The last lines: the collector wrote them before it answered, but
	// they may still be on their way through the pipe.
	c.waitLog(t, regexp.MustCompile(`(?s)path="restarted" .*path="unnumbered" .*path="unnumbered" `))
	c.waitLog(t, regexp.MustCompile(`stats events missing from edge="edge-a" instance=i1: 2 before sequence 6`))
	out := c.logs.String()
	for path, want := range map[string]int{"a": 1, "b": 1, "f": 1, "e": 0, "restarted": 1, "unnumbered": 2} {
		if got := strings.Count(out, fmt.Sprintf(` path=%q `, path)); got != want {
			t.Errorf("%d lines for path %q, want %d", got, path, want)
		}
	}
	if got := strings.Count(out, ` server edge="edge-a" final=false `); got != 1 {
		t.Errorf("%d server lines, want 1", got)
	}
	if t.Failed() {
		t.Logf("collector output:\n%s", out)
	}
}

// The Python stubs in python-collector/tftpgw/v1 are generated from
// proto/tftpgw/v1 and committed: they must describe the same protos as the
// Go code does.
func TestPythonCollectorStubsAreFresh(t *testing.T) {
	need(t, pythonCollector)
	for _, tt := range []struct {
		module string
		want   protoreflect.FileDescriptor
	}{
		{"stats_pb2", tftpgwv1.File_tftpgw_v1_stats_proto},
		{"content_pb2", tftpgwv1.File_tftpgw_v1_content_proto},
	} {
		t.Run(tt.module, func(t *testing.T) {
			checkStubs(t, "python-collector", tt.module, tt.want)
		})
	}
}

// checkStubs fails t if the Python module tftpgw.v1.<module> of dir, a
// protoc output, does not describe the proto want as the Go code does.
func checkStubs(t *testing.T, dir, module string, want protoreflect.FileDescriptor) {
	t.Helper()
	out, err := exec.Command(python, "-c", `import base64, sys
sys.path.insert(0, "`+dir+`")
from tftpgw.v1 import `+module+` as m
print(base64.b64encode(m.DESCRIPTOR.serialized_pb).decode())`).Output()
	if err != nil {
		t.Fatalf("load the Python stubs: %v\n%s", err, errOutput(err))
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	got := &descriptorpb.FileDescriptorProto{}
	if err := proto.Unmarshal(raw, got); err != nil {
		t.Fatal(err)
	}
	wantFD := protodesc.ToFileDescriptorProto(want)
	for _, fd := range []*descriptorpb.FileDescriptorProto{got, wantFD} {
		fd.SourceCodeInfo = nil
		clearJSONNames(fd.GetMessageType())
	}
	if !proto.Equal(got, wantFD) {
		t.Errorf("%s/tftpgw/v1/%s.py is stale: run make -C examples/%s generate\nPython stubs:\n%s\nGo code:\n%s",
			dir, module, dir, prototext.Format(got), prototext.Format(wantFD))
	}
}

// clearJSONNames clears the json_name of the fields of msgs and of their
// nested messages (the entries of map fields too): protoc's Python output
// leaves it out.
func clearJSONNames(msgs []*descriptorpb.DescriptorProto) {
	for _, m := range msgs {
		for _, f := range m.GetField() {
			f.JsonName = nil
		}
		clearJSONNames(m.GetNestedType())
	}
}
