package stats

import (
	"net/netip"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tftpgw/tftpgw/gateway"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// SessionProto converts the stats of one finished session to its protobuf
// form, stamped with edgeID. Text that is not valid UTF-8 (a filename with
// the 0xFF bytes some PXE ROMs append, say) has its invalid bytes replaced
// by U+FFFD, since protobuf strings must be UTF-8.
func SessionProto(edgeID string, s gateway.SessionStats) *tftpgwv1.SessionStats {
	p := &tftpgwv1.SessionStats{
		SessionId:         text(s.SessionID),
		EdgeId:            text(edgeID),
		ClientAddress:     addressProto(s.RemoteAddr),
		LocalAddress:      addressProto(s.LocalAddr),
		RawPath:           text(s.RawPath),
		Path:              text(s.Path),
		RewrittenPath:     text(s.RewrittenPath),
		Mode:              text(s.Mode),
		RequestedOptions:  optionsProto(s.RequestedOptions),
		NegotiatedOptions: optionsProto(s.NegotiatedOptions),
		BlockSize:         uint32(max(s.BlockSize, 0)),
		WindowSize:        uint32(max(s.WindowSize, 0)),
		TransferSize:      s.TransferSize,
		Outcome:           OutcomeProto(s.Outcome),
		ErrorSent:         errorProto(s.ErrorSent),
		ErrorReceived:     errorProto(s.ErrorReceived),
		BytesSent:         count(s.BytesSent),
		BytesAcked:        count(s.BytesAcked),
		PacketsSent:       count(s.PacketsSent),
		Retransmits:       count(s.Retransmits),
		DuplicateAcks:     count(s.DuplicateAcks),
		Direction:         tftpgwv1.Direction_DIRECTION_READ,
		Duration:          durationpb.New(s.Duration),
	}
	if s.Protocol == gateway.ProtocolHTTP {
		p.Protocol = tftpgwv1.Protocol_PROTOCOL_HTTP
		p.HttpStatus = uint32(max(s.HTTPStatus, 0))
	} else {
		p.Protocol = tftpgwv1.Protocol_PROTOCOL_TFTP
	}
	if s.Write {
		p.Direction = tftpgwv1.Direction_DIRECTION_WRITE
		p.BytesReceived = count(s.BytesReceived)
	}
	if !s.Start.IsZero() {
		p.StartTime = timestamppb.New(s.Start)
	}
	if s.TimeToFirstData > 0 {
		p.TimeToFirstData = durationpb.New(s.TimeToFirstData)
	}
	if b := s.Backend; b != nil {
		p.Backend = &tftpgwv1.Backend{
			Target:  text(b.Target),
			Peer:    text(b.Peer),
			Resumes: uint32(max(b.Resumes, 0)),
		}
		if b.HeaderLatency > 0 { // absent when no header came
			p.Backend.HeaderLatency = durationpb.New(b.HeaderLatency)
		}
	}
	return p
}

// OutcomeProto maps a gateway outcome to its protobuf enum;
// OUTCOME_UNSPECIFIED for an unknown one.
func OutcomeProto(o gateway.Outcome) tftpgwv1.Outcome {
	switch o {
	case gateway.OutcomeOK:
		return tftpgwv1.Outcome_OUTCOME_OK
	case gateway.OutcomeError:
		return tftpgwv1.Outcome_OUTCOME_ERROR
	case gateway.OutcomeProbe:
		return tftpgwv1.Outcome_OUTCOME_PROBE
	case gateway.OutcomeAborted:
		return tftpgwv1.Outcome_OUTCOME_ABORTED
	case gateway.OutcomeTimeout:
		return tftpgwv1.Outcome_OUTCOME_TIMEOUT
	}
	return tftpgwv1.Outcome_OUTCOME_UNSPECIFIED
}

// Extra are the counters of a ServerStats report that this package keeps
// rather than [gateway.ServerStats] (see the counters table, counters.go).
type Extra struct {
	// BackendErrors counts the failed backend calls by gRPC code name.
	BackendErrors map[string]uint64
	// EventsDropped counts the stats events dropped on the way to the sink.
	EventsDropped uint64
}

// ServerReports converts successive [gateway.ServerStats] of one edge to
// protobuf ServerStats, computing each report's delta against the previous
// report that was committed. It is safe for concurrent use.
type ServerReports struct {
	// EdgeID stamps every report.
	EdgeID string

	mu       sync.Mutex
	prev     *tftpgwv1.Counters // totals of the last committed report
	prevTime time.Time
}

// Next converts s, with the extra counters, to a report whose delta is the
// difference to the last committed report (all of it for the first), and
// whose interval is the time since that report. The report is not
// committed: call commit with true once the sink acknowledged it, so that
// the next delta counts from it, or with false when it was dropped, so that
// the next delta covers this interval too (a [Publisher] does so). Reports
// must be committed or abandoned in the order Next returned them.
func (r *ServerReports) Next(s gateway.ServerStats, x Extra, final bool) (report *tftpgwv1.ServerStats, commit func(sent bool)) {
	total := countersProto(s, x)
	r.mu.Lock()
	defer r.mu.Unlock()
	interval := s.Interval
	if r.prev != nil && !s.Time.IsZero() && !r.prevTime.IsZero() && s.Time.After(r.prevTime) {
		interval = s.Time.Sub(r.prevTime)
	}
	p := &tftpgwv1.ServerStats{
		EdgeId:             text(r.EdgeID),
		Interval:           durationpb.New(interval),
		ActiveSessions:     count(s.ActiveSessions),
		ActiveHttpRequests: count(s.HTTPActive),
		Delta:              subCounters(total, r.prev),
		Total:              total,
		Final:              final,
	}
	if !s.Time.IsZero() {
		p.Time = timestamppb.New(s.Time)
	}
	return p, func(sent bool) {
		if !sent {
			return
		}
		r.mu.Lock()
		r.prev, r.prevTime = total, s.Time
		r.mu.Unlock()
	}
}

func count(n int64) uint64 { return uint64(max(n, 0)) }

func text(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

func addressProto(a netip.AddrPort) *tftpgwv1.Address {
	if !a.IsValid() {
		return nil
	}
	return &tftpgwv1.Address{Ip: a.Addr().Unmap().String(), Port: uint32(a.Port())}
}

func optionsProto(opts []gateway.Option) []*tftpgwv1.Option {
	if len(opts) == 0 {
		return nil
	}
	p := make([]*tftpgwv1.Option, len(opts))
	for i, o := range opts {
		p[i] = &tftpgwv1.Option{Name: text(o.Name), Value: text(o.Value)}
	}
	return p
}

func errorProto(e *gateway.Error) *tftpgwv1.TFTPError {
	if e == nil {
		return nil
	}
	return &tftpgwv1.TFTPError{Code: uint32(e.Code), Message: text(e.Message)}
}
