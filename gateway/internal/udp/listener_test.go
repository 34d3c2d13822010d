package udp

import (
	"net"
	"testing"
	"time"
)

// TestZoneCache: an interface is named by index (its number when no
// interface has it), and a name is looked up again only after a minute,
// not for every datagram of a link-local client.
func TestZoneCache(t *testing.T) {
	const missing = 4000000 // no such interface
	z := zoneCache{missing: {name: "cached", at: time.Now()}}
	if got := z.name(missing); got != "cached" {
		t.Errorf("fresh entry: %q, want the cached name", got)
	}
	z[missing] = zoneEntry{name: "cached", at: time.Now().Add(-2 * time.Minute)}
	if got := z.name(missing); got != "4000000" {
		t.Errorf("stale entry: %q, want it looked up again (4000000)", got)
	}
	var empty zoneCache
	if lo, err := net.InterfaceByIndex(1); err == nil {
		if got := empty.name(1); got != lo.Name {
			t.Errorf("index 1: %q, want %q", got, lo.Name)
		}
	}
}
