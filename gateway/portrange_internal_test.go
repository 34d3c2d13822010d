package gateway

import "testing"

// TestResolvePortRange: Serve uses the range as given, swaps inverted
// ends, reads port 0 as 1, and ignores the range in single-port mode,
// where every reply comes from the listening port.
func TestResolvePortRange(t *testing.T) {
	for _, tc := range []struct {
		in     PortRange
		single bool
		want   PortRange
	}{
		{PortRange{}, false, PortRange{}},
		{PortRange{5, 9}, false, PortRange{5, 9}},
		{PortRange{7, 7}, false, PortRange{7, 7}},
		{PortRange{9, 5}, false, PortRange{5, 9}},
		{PortRange{0, 5}, false, PortRange{1, 5}},
		{PortRange{5, 0}, false, PortRange{1, 5}},
		{PortRange{5, 9}, true, PortRange{}},
	} {
		if got := (&Server{PortRange: tc.in, SinglePort: tc.single}).resolve().portRange; got != tc.want {
			t.Errorf("PortRange %d-%d (single port %v) resolves to %d-%d, want %d-%d", tc.in.First, tc.in.Last, tc.single, got.First, got.Last, tc.want.First, tc.want.Last)
		}
	}
}
