package collector

import (
	"fmt"
	"testing"
	"time"

	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// TestExpiredEdgesForgottenWithoutScrapes is a regression test (found in
// review): expired edges were only dropped during a /metrics scrape, so a
// collector run without -metrics remembered every edge ID it ever saw.
func TestExpiredEdgesForgottenWithoutScrapes(t *testing.T) {
	a := newAggregate(time.Minute, DefaultMaxEdges)
	start := time.Now()
	for i := range 100 {
		a.record(&tftpgwv1.StatsEvent{Event: &tftpgwv1.StatsEvent_Session{Session: &tftpgwv1.SessionStats{EdgeId: fmt.Sprintf("pod-%d", i)}}}, start)
	}
	if n := a.edgeCount(); n != 100 {
		t.Fatalf("%d edges, want 100", n)
	}
	a.record(&tftpgwv1.StatsEvent{Event: &tftpgwv1.StatsEvent_Session{Session: &tftpgwv1.SessionStats{EdgeId: "pod-new"}}}, start.Add(2*time.Minute))
	if n := a.edgeCount(); n != 1 {
		t.Errorf("%d edges after the others expired, want 1", n)
	}
}

// record checks and adds ev, as Sink.Record does.
func (a *aggregate) record(ev *tftpgwv1.StatsEvent, now time.Time) {
	if v := a.check(ev, now); !v.duplicate {
		a.add(ev, now, v)
	}
}
