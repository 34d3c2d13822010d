package rewrite

import (
	"testing"

	"github.com/tftpgw/tftpgw/gateway"
)

// FuzzIsClean checks the fast path that skips gateway.CleanPath: a path
// isClean accepts is one CleanPath returns unchanged.
func FuzzIsClean(f *testing.F) {
	for _, s := range []string{
		"", "a", "a/b", "/a", "a/", "a//b", "./a", "a/.", "a/..", "../a", "..", ".",
		"a\\b", "a\x00b", "a\x01", "a\x01/b", "a\xff", "a\x7f", "...", "a/.../b", ".a/b.",
		"hosts/2001:db8::1/pxelinux.cfg/default", "x../y", "Ä/b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !isClean(s) {
			return
		}
		if p, err := gateway.CleanPath(s); err != nil || p != s {
			t.Errorf("isClean(%q), but CleanPath gives %q, %v", s, p, err)
		}
	})
}

func TestIsClean(t *testing.T) {
	for s, want := range map[string]bool{
		"a": true, "a/b": true, "x../y": true, "...": true, "a\x01/b": true,
		"": false, "/a": false, "a/": false, "a//b": false, "./a": false, "a/./b": false,
		"a/../b": false, "..": false, "a\\b": false, "a\x00b": false, "a\x01": false, "a\xff": false,
	} {
		if got := isClean(s); got != want {
			t.Errorf("isClean(%q) = %v, want %v", s, got, want)
		}
	}
}
