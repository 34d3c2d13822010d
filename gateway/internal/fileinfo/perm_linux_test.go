package fileinfo

import "testing"

// TestOverridesReadPermissionCached: the kept answer is the process's,
// and is asked of the kernel again once it has expired.
func TestOverridesReadPermissionCached(t *testing.T) {
	want := overridesReadPermission()
	for range 3 {
		if got := OverridesReadPermission(); got != want {
			t.Fatalf("OverridesReadPermission() = %v, capget says %v", got, want)
		}
	}
	permUntil.Store(0) // expired
	permValue.Store(!want)
	if got := OverridesReadPermission(); got != want {
		t.Fatalf("after expiry: %v, want %v", got, want)
	}
}
