package cache

import (
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestCollector: every field of Stats, and the memory bound, shows in the
// collector's metrics with its value.
func TestCollector(t *testing.T) {
	f := newFake()
	data := pattern(10_000, 3)
	f.set("k", file{data: data, etag: "v1", maxAge: time.Minute})
	h := newCache(t, f, 1<<20)
	mustGet(t, h, "k", data)
	// Settled before the second request, which would otherwise join the
	// fetch rather than hit the entry.
	waitFor(t, "the fetch to end", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		e := h.entries["k"]
		return e != nil && e.state.Load() == stateDone
	})
	mustGet(t, h, "k", data)

	reg := prometheus.NewRegistry()
	reg.MustRegister(h.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]float64) // by name, and result if any
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			k := mf.GetName()
			for _, l := range m.GetLabel() {
				k += " " + l.GetName() + "=" + l.GetValue()
			}
			got[k] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	if got["tftpgw_cache_requests_total result=hit"] != 1 || got["tftpgw_cache_requests_total result=miss"] != 1 {
		t.Errorf("requests %v, want 1 hit and 1 miss", got)
	}

	st := h.Stats()
	want := map[string]int64{"MaxBytes": 1 << 20}
	sv := reflect.ValueOf(st)
	for i := range sv.NumField() {
		want[sv.Type().Field(i).Name] = sv.Field(i).Int()
	}
	for field, v := range want {
		found := false
		for _, m := range cacheMetrics {
			if m.field != field {
				continue
			}
			found = true
			k := m.name
			if m.result != "" {
				k += " result=" + m.result
			}
			if g, ok := got[k]; !ok || g != float64(v) {
				t.Errorf("%s: %s = %v (present %v), want %d", field, k, g, ok, v)
			}
		}
		if !found {
			t.Errorf("Stats.%s shows in no metric: add it to cacheMetrics", field)
		}
	}
}
