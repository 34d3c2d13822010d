package udp

import (
	"net/netip"
	"testing"
	"time"
)

// TestRFC1123_4_2_3_5_BroadcastRequestsIgnored: the addresses a request
// must not be answered on.
func TestRFC1123_4_2_3_5_BroadcastRequestsIgnored(t *testing.T) {
	tests := []struct {
		prefix string
		want   string // "" for none
	}{
		{"192.0.2.17/24", "192.0.2.255"},
		{"198.51.100.1/16", "198.51.255.255"},
		{"203.0.113.9/30", "203.0.113.11"},
		{"203.0.113.9/31", ""},
		{"203.0.113.9/32", ""},
		{"127.0.0.1/8", "127.255.255.255"},
		{"2001:db8::1/64", ""},
	}
	for _, tt := range tests {
		got, ok := directedBroadcast(netip.MustParsePrefix(tt.prefix))
		if tt.want == "" {
			if ok {
				t.Errorf("%s: broadcast %v, want none", tt.prefix, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddr(tt.want) {
			t.Errorf("%s: broadcast %v %v, want %s", tt.prefix, got, ok, tt.want)
		}
	}

	var b Broadcasts
	now := time.Now()
	for _, a := range []string{"255.255.255.255", "224.0.0.1", "ff02::1", "127.255.255.255"} {
		if !b.Is(netip.MustParseAddr(a), now) {
			t.Errorf("%s not treated as broadcast", a)
		}
	}
	for _, a := range []string{"127.0.0.1", "127.0.0.2", "::1"} {
		if b.Is(netip.MustParseAddr(a), now) {
			t.Errorf("%s treated as broadcast", a)
		}
	}
}
