package stats

import "google.golang.org/grpc/codes"

// CounterRow is a row of the counters table as the tests of package
// stats_test see it.
type CounterRow struct {
	Field, Edge, Collector, Label, Value, Help string
	Keys                                       []string // of a map row
}

// CounterRows returns the counters table.
func CounterRows() []CounterRow {
	r := make([]CounterRow, len(counters))
	for i, c := range counters {
		r[i] = CounterRow{
			Field: string(c.field), Edge: c.edge, Collector: c.collector,
			Label: c.label, Value: c.value, Help: c.help, Keys: c.keys,
		}
	}
	return r
}

// Extra returns the counters m keeps, as its scrapes see them.
func (m *Metrics) Extra() Extra { return m.extra() }

// BackendFailed counts a failed backend call, as the interceptors do.
func (m *Metrics) BackendFailed(c codes.Code) { m.backendFailed(c) }

// AddDropped counts dropped events, as a Publisher does.
func (m *Metrics) AddDropped(n int) { m.addDropped(n) }
