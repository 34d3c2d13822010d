package stats_test

import (
	"net/netip"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/stats"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

func TestSessionProto(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	s := gateway.SessionStats{
		SessionID:         "ab-1",
		RemoteAddr:        netip.MustParseAddrPort("[::ffff:192.0.2.7]:1234"),
		LocalAddr:         netip.MustParseAddrPort("[2001:db8::1]:69"),
		RawPath:           "\\boot\\x.efi\xff",
		Path:              "boot/x.efi",
		RewrittenPath:     "hosts/10.0.0.5/x.efi",
		Mode:              "octet",
		RequestedOptions:  []gateway.Option{{Name: "tsize", Value: "0"}, {Name: "blksize", Value: "1468"}},
		NegotiatedOptions: []gateway.Option{{Name: "tsize", Value: "1500"}},
		BlockSize:         512,
		WindowSize:        1,
		TransferSize:      1500,
		Outcome:           gateway.OutcomeAborted,
		ErrorReceived:     &gateway.Error{Code: 0, Message: "TFTP Aborted"},
		BytesSent:         1024,
		BytesAcked:        512,
		PacketsSent:       3,
		Retransmits:       1,
		DuplicateAcks:     2,
		Start:             start,
		Duration:          time.Second,
		TimeToFirstData:   time.Millisecond,
	}
	want := &tftpgwv1.SessionStats{
		SessionId:         "ab-1",
		EdgeId:            "edge1",
		ClientAddress:     &tftpgwv1.Address{Ip: "192.0.2.7", Port: 1234},
		LocalAddress:      &tftpgwv1.Address{Ip: "2001:db8::1", Port: 69},
		RawPath:           "\\boot\\x.efi\uFFFD",
		Path:              "boot/x.efi",
		RewrittenPath:     "hosts/10.0.0.5/x.efi",
		Mode:              "octet",
		RequestedOptions:  []*tftpgwv1.Option{{Name: "tsize", Value: "0"}, {Name: "blksize", Value: "1468"}},
		NegotiatedOptions: []*tftpgwv1.Option{{Name: "tsize", Value: "1500"}},
		BlockSize:         512,
		WindowSize:        1,
		TransferSize:      1500,
		Outcome:           tftpgwv1.Outcome_OUTCOME_ABORTED,
		ErrorReceived:     &tftpgwv1.TFTPError{Code: 0, Message: "TFTP Aborted"},
		BytesSent:         1024,
		BytesAcked:        512,
		PacketsSent:       3,
		Retransmits:       1,
		DuplicateAcks:     2,
		StartTime:         timestamppb.New(start),
		Duration:          durationpb.New(time.Second),
		TimeToFirstData:   durationpb.New(time.Millisecond),
		Direction:         tftpgwv1.Direction_DIRECTION_READ,
		Protocol:          tftpgwv1.Protocol_PROTOCOL_TFTP,
	}
	got := stats.SessionProto("edge1", s)
	if !proto.Equal(got, want) {
		t.Fatalf("SessionProto:\n got %v\nwant %v", got, want)
	}
	if _, err := proto.Marshal(got); err != nil {
		t.Fatalf("marshal: %v", err)
	}
}

func TestServerReportsDeltas(t *testing.T) {
	r := &stats.ServerReports{EdgeID: "e"}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	report := func(sec int, ok, bytes int64, errs map[gateway.ErrorCode]int64) gateway.ServerStats {
		return gateway.ServerStats{
			Time: t0.Add(time.Duration(sec) * time.Second), Interval: 10 * time.Second,
			Sessions: map[gateway.Outcome]int64{gateway.OutcomeOK: ok}, BytesSent: bytes, ErrorsSent: errs,
			BusyRefusals: ok * 10, IgnoredBroadcasts: ok * 100, IntegrityFailures: ok,
		}
	}
	// First report: delta is the total, interval the nominal one.
	p, commit := r.Next(report(10, 2, 100, map[gateway.ErrorCode]int64{1: 1}), stats.Extra{EventsDropped: 3}, false)
	commit(true)
	if p.Delta.SessionsOk != 2 || p.Delta.BytesSent != 100 || p.Delta.ErrorsSent[1] != 1 ||
		p.Delta.StatsEventsDropped != 3 || p.Interval.AsDuration() != 10*time.Second || p.EdgeId != "e" {
		t.Fatalf("first report: %v", p)
	}
	// A dropped report is not committed: the next delta covers it too.
	_, commit = r.Next(report(20, 3, 150, map[gateway.ErrorCode]int64{1: 1}), stats.Extra{}, false)
	commit(false)
	p, commit = r.Next(report(30, 5, 400, map[gateway.ErrorCode]int64{1: 2, 8: 1}),
		stats.Extra{BackendErrors: map[string]uint64{"Unavailable": 2}, EventsDropped: 4}, true)
	commit(true)
	want := &tftpgwv1.Counters{SessionsOk: 3, BytesSent: 300, ErrorsSent: map[uint32]uint64{1: 1, 8: 1},
		BackendErrors: map[string]uint64{"Unavailable": 2}, StatsEventsDropped: 1,
		BusyRefusals: 30, IgnoredBroadcasts: 300, IntegrityFailures: 3}
	if !proto.Equal(p.Delta, want) || p.Interval.AsDuration() != 20*time.Second || !p.Final {
		t.Fatalf("delta after a dropped report: %v, want %v", p, want)
	}
	if p.Total.SessionsOk != 5 || p.Total.BytesSent != 400 {
		t.Fatalf("total: %v", p.Total)
	}
}

// TestSessionProtoBackend: the backend facts of a session reach the sink.
func TestSessionProtoBackend(t *testing.T) {
	p := stats.SessionProto("edge1", gateway.SessionStats{Backend: &gateway.BackendStats{Target: "dns:///b:50051", Peer: "10.0.0.1:50051", HeaderLatency: 3 * time.Millisecond, Resumes: 2}})
	b := p.GetBackend()
	if b.GetTarget() != "dns:///b:50051" || b.GetPeer() != "10.0.0.1:50051" || b.GetHeaderLatency().AsDuration() != 3*time.Millisecond || b.GetResumes() != 2 {
		t.Errorf("backend %v", b)
	}
	// Refused before any header: the target, no peer, no latency.
	b = stats.SessionProto("edge1", gateway.SessionStats{Backend: &gateway.BackendStats{Target: "dns:///b:50051"}}).GetBackend()
	if b.GetTarget() != "dns:///b:50051" || b.GetPeer() != "" || b.HeaderLatency != nil {
		t.Errorf("backend of a refused request %v", b)
	}
	if stats.SessionProto("edge1", gateway.SessionStats{}).GetBackend() != nil {
		t.Error("backend set for an in-process session")
	}
}

// TestSessionProtoUpload: an upload's stats say so, with its bytes
// received.
func TestSessionProtoUpload(t *testing.T) {
	got := stats.SessionProto("e", gateway.SessionStats{Write: true, BytesReceived: 1234, Outcome: gateway.OutcomeOK})
	if got.GetDirection() != tftpgwv1.Direction_DIRECTION_WRITE || got.GetBytesReceived() != 1234 {
		t.Fatalf("direction %v, bytes_received %d", got.GetDirection(), got.GetBytesReceived())
	}
}
