package stats_test

import (
	"fmt"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/stats"
	"github.com/tftpgw/tftpgw/gateway/stats/collector"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// counterFields are the fields of tftpgw.v1.Counters.
func counterFields() protoreflect.FieldDescriptors {
	return (&tftpgwv1.Counters{}).ProtoReflect().Descriptor().Fields()
}

// TestCountersTable: every field of tftpgw.v1.Counters has one row in the
// counters table, rows that share a metric agree, and the field's comment
// in stats.proto starts with the row's help.
func TestCountersTable(t *testing.T) {
	rows := stats.CounterRows()
	byField := make(map[string]stats.CounterRow)
	for _, r := range rows {
		if _, dup := byField[r.Field]; dup {
			t.Errorf("Counters.%s has two rows", r.Field)
		}
		byField[r.Field] = r
	}
	fields := counterFields()
	for i := range fields.Len() {
		if name := string(fields.Get(i).Name()); byField[name].Field == "" {
			t.Errorf("Counters.%s has no row in the counters table (gateway/stats/counters.go): "+
				"add one with its metric names, help and where the edge reads it", name)
		}
	}

	metrics := make(map[string]stats.CounterRow) // the first row of each metric
	collectorMetrics := make(map[string]string)  // collector metric -> edge metric
	for _, r := range rows {
		if !strings.HasPrefix(r.Edge, "tftpgw_") || strings.HasPrefix(r.Edge, "tftpgw_collector_") ||
			!strings.HasPrefix(r.Collector, "tftpgw_collector_edge_") ||
			!strings.HasSuffix(r.Edge, "_total") || !strings.HasSuffix(r.Collector, "_total") {
			t.Errorf("Counters.%s: metric names %s, %s: want tftpgw_*_total and tftpgw_collector_edge_*_total", r.Field, r.Edge, r.Collector)
		}
		if first, ok := metrics[r.Edge]; ok {
			if r.Collector != first.Collector || r.Label != first.Label || r.Help != first.Help || r.Label == "" || r.Value == "" {
				t.Errorf("Counters.%s and .%s share %s but not its collector name, label and help, or have no label value", first.Field, r.Field, r.Edge)
			}
			continue
		}
		metrics[r.Edge] = r
		if other, dup := collectorMetrics[r.Collector]; dup {
			t.Errorf("%s and %s have the same collector metric %s", other, r.Edge, r.Collector)
		}
		collectorMetrics[r.Collector] = r.Edge
	}

	comments := counterComments(t)
	for _, r := range rows {
		c, ok := comments[r.Field]
		help := strings.TrimSuffix(r.Help, ".")
		if !ok || !strings.HasPrefix(c, help) {
			t.Errorf("Counters.%s: its comment in stats.proto does not start with its help:\ncomment: %s\n   help: %s", r.Field, c, r.Help)
		}
	}
}

// counterComments returns the comments of Counters' fields in
// stats.proto, each joined into one line.
func counterComments(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../proto/tftpgw/v1/stats.proto")
	if err != nil {
		t.Fatal(err)
	}
	fieldLine := regexp.MustCompile(`^(?:map<\w+,\s*\w+>|\w+)\s+(\w+)\s*=\s*\d+;`)
	comments := make(map[string]string)
	var comment []string
	in := false
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		switch {
		case line == "message Counters {":
			in = true
		case !in:
		case line == "}":
			return comments
		case strings.HasPrefix(line, "//"):
			comment = append(comment, strings.TrimSpace(strings.TrimPrefix(line, "//")))
		case line == "":
			comment = nil
		default:
			if m := fieldLine.FindStringSubmatch(line); m != nil {
				comments[m[1]] = strings.Join(comment, " ")
			}
			comment = nil
		}
	}
	t.Fatal("stats.proto: no message Counters")
	return nil
}

// everyCounter returns gateway stats with every counter set, each to a
// value of its own (the sessions by outcome and the errors by code too),
// and the number of values used.
func everyCounter(t *testing.T) (gateway.ServerStats, int64) {
	t.Helper()
	var s gateway.ServerStats
	n := int64(0)
	next := func() int64 { n++; return n }
	v := reflect.ValueOf(&s).Elem()
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		switch {
		case notCounter[name]:
		case f.Kind() == reflect.Int64:
			f.SetInt(next())
		case name == "Sessions":
			s.Sessions = map[gateway.Outcome]int64{}
			for o := gateway.OutcomeOK; o <= gateway.OutcomeTimeout; o++ {
				s.Sessions[o] = next()
			}
		case name == "Uploads": // no upload is a probe
			s.Uploads = map[gateway.Outcome]int64{}
			for _, o := range []gateway.Outcome{gateway.OutcomeOK, gateway.OutcomeError, gateway.OutcomeAborted, gateway.OutcomeTimeout} {
				s.Uploads[o] = next()
			}
		case name == "HTTPRequests":
			// 299 is no status the metrics list: shown as "other".
			s.HTTPRequests = map[int]int64{200: next(), 404: next(), 299: next()}
		case name == "ErrorsSent":
			// 12 is no TFTP code: the metrics show it as "other".
			s.ErrorsSent = map[gateway.ErrorCode]int64{1: next(), 5: next(), 12: next()}
		default:
			t.Fatalf("ServerStats.%s (%s): teach everyCounter how to set it", name, f.Type())
		}
	}
	return s, n
}

// notCounter are the fields of gateway.ServerStats that are no counters.
var notCounter = map[string]bool{"Time": true, "Interval": true, "ActiveSessions": true, "HTTPActive": true, "Final": true}

// TestServerStatsReachCounters: each counter of gateway.ServerStats and
// Extra, set alone, reaches the Counters of a report.
func TestServerStatsReachCounters(t *testing.T) {
	one := func(name string, s gateway.ServerStats, x stats.Extra) {
		p, _ := (&stats.ServerReports{}).Next(s, x, false)
		if proto.Size(p.GetTotal()) == 0 {
			t.Errorf("%s reaches no field of Counters: give it a row in gateway/stats/counters.go", name)
		}
	}
	st := reflect.TypeFor[gateway.ServerStats]()
	for i := range st.NumField() {
		f := st.Field(i)
		if notCounter[f.Name] {
			continue
		}
		var s gateway.ServerStats
		v := reflect.ValueOf(&s).Elem().Field(i)
		switch v.Kind() {
		case reflect.Int64:
			v.SetInt(1)
		case reflect.Map:
			m := reflect.MakeMap(v.Type())
			m.SetMapIndex(reflect.New(v.Type().Key()).Elem().Convert(v.Type().Key()), reflect.ValueOf(int64(1)))
			if f.Name == "Sessions" || f.Name == "Uploads" { // the zero Outcome is no session's
				m = reflect.ValueOf(map[gateway.Outcome]int64{gateway.OutcomeOK: 1})
			}
			v.Set(m)
		default:
			t.Fatalf("ServerStats.%s (%s): teach the test how to set it", f.Name, f.Type)
		}
		one("ServerStats."+f.Name, s, stats.Extra{})
	}
	xt := reflect.TypeFor[stats.Extra]()
	for i := range xt.NumField() {
		var x stats.Extra
		v := reflect.ValueOf(&x).Elem().Field(i)
		switch v.Kind() {
		case reflect.Uint64:
			v.SetUint(1)
		case reflect.Map:
			v.Set(reflect.ValueOf(map[string]uint64{"Unavailable": 1}))
		default:
			t.Fatalf("Extra.%s: teach the test how to set it", xt.Field(i).Name)
		}
		one("Extra."+xt.Field(i).Name, gateway.ServerStats{}, x)
	}
}

// TestCountersEverywhere: with every counter set, each field of the
// report's Counters is set (to a value no other field has), and shows with
// that value in the edge's /metrics and in the collector's, under the
// names of its row.
func TestCountersEverywhere(t *testing.T) {
	s, n := everyCounter(t)
	m := stats.NewMetrics()
	m.ObserveServer(s)
	m.AddDropped(int(n + 1))
	m.BackendFailed(codes.Unavailable)
	m.BackendFailed(codes.Code(99)) // no gRPC code: shown as "other"
	for range 2 {
		m.BackendFailed(codes.DeadlineExceeded)
	}
	report, _ := (&stats.ServerReports{EdgeID: "e1"}).Next(s, m.Extra(), false)
	total := report.GetTotal()

	// Every field set, each scalar to a value of its own.
	msg := total.ProtoReflect()
	fields := counterFields()
	seen := make(map[uint64]string)
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !msg.Has(fd) {
			t.Errorf("Counters.%s is zero with every counter set: does its row read anything?", fd.Name())
			continue
		}
		if fd.IsMap() {
			continue
		}
		v := msg.Get(fd).Uint()
		if other, dup := seen[v]; dup {
			t.Errorf("Counters.%s and .%s are both %d: do their rows read the same counter?", other, fd.Name(), v)
		}
		seen[v] = string(fd.Name())
	}

	edge := scrapeRegistry(t, m)
	sink := collector.New(collector.Config{})
	if err := sink.Record(&tftpgwv1.StatsEvent{Event: &tftpgwv1.StatsEvent_Server{Server: report}}); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(sink.MetricsHandler())
	defer hs.Close()
	coll := scrape(t, hs.URL)

	for _, r := range stats.CounterRows() {
		fd := fields.ByName(protoreflect.Name(r.Field))
		if fd == nil {
			continue // TestCountersTable says so
		}
		want := make(map[string]uint64) // by label value; "" for none
		if fd.IsMap() {
			msg.Get(fd).Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				key := k.String()
				if !slices.Contains(r.Keys, key) {
					key = "other"
				}
				want[key] += v.Uint()
				return true
			})
		} else {
			want[r.Value] = msg.Get(fd).Uint()
		}
		for value, v := range want {
			labels := map[string]string{}
			if r.Label != "" {
				labels[r.Label] = value
			}
			if k := series(r.Edge, labels); edge[k] != float64(v) {
				t.Errorf("Counters.%s: edge /metrics has %s = %v, want %d", r.Field, k, edge[k], v)
			}
			labels["edge"] = "e1"
			if k := series(r.Collector, labels); coll[k] != float64(v) {
				t.Errorf("Counters.%s: collector /metrics has %s = %v, want %d", r.Field, k, coll[k], v)
			}
		}
	}
	for _, k := range []string{`tftpgw_errors_sent_total{code="12"}`, `tftpgw_backend_errors_total{code="Code(99)"}`} {
		if _, ok := edge[k]; ok {
			t.Errorf("edge /metrics has %s: codes outside the fixed sets are shown as other", k)
		}
	}
}

// series is the name of a series in the text exposition format, its
// labels sorted by name.
func series(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name
	}
	var l []string
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range labels {
			if !yield(k) {
				return
			}
		}
	}) {
		l = append(l, fmt.Sprintf("%s=%q", k, labels[k]))
	}
	return name + "{" + strings.Join(l, ",") + "}"
}
