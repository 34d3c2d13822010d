package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRootFollowsItsPath: a boot tree published at -root's path by the
// usual swaps (a symbolic link flipped, directories renamed, the old one
// deleted) is served without a restart: from the first request a second
// after the swap, or at once after SIGHUP. While the path names nothing,
// the directory opened before is still served (renamed: as root, its
// files' real paths are checked against where it is now), with one
// warning.
func TestRootFollowsItsPath(t *testing.T) {
	// Each case starts with base/current naming a directory whose ver.txt
	// is "v1", and has base/next ready with "v2".
	cases := []struct {
		name    string
		symlink bool                            // base/current is a symbolic link to base/r1
		swap    func(t *testing.T, base string) // publish base/next at base/current
		hup     bool                            // SIGHUP after the swap, and no wait
		log     string                          // a log line the swap makes
	}{
		{"symbolic link flipped", true, func(t *testing.T, base string) {
			mustDo(t, os.Symlink("next", filepath.Join(base, "current.new")))
			mustDo(t, os.Rename(filepath.Join(base, "current.new"), filepath.Join(base, "current")))
		}, false, "-root names another directory: serving it"},
		{"directories renamed, the old one deleted", false, func(t *testing.T, base string) {
			mustDo(t, os.Rename(filepath.Join(base, "current"), filepath.Join(base, "old")))
			mustDo(t, os.Rename(filepath.Join(base, "next"), filepath.Join(base, "current")))
			mustDo(t, os.RemoveAll(filepath.Join(base, "old")))
		}, false, "-root names another directory: serving it"},
		{"symbolic link flipped, then SIGHUP", true, func(t *testing.T, base string) {
			mustDo(t, os.Symlink("next", filepath.Join(base, "current.new")))
			mustDo(t, os.Rename(filepath.Join(base, "current.new"), filepath.Join(base, "current")))
		}, true, "-root names another directory: serving it"},
		{"path gone for a while", false, func(t *testing.T, base string) {
			mustDo(t, os.Rename(filepath.Join(base, "current"), filepath.Join(base, "old")))
		}, false, "-root: the path does not open; still serving the directory opened before"},
	}
	for _, tc := range cases {
		for _, cached := range []bool{true, false} {
			// With the edge cache, what it holds is revalidated; without,
			// each request opens its file.
			cache := map[bool]string{true: "512MiB", false: "0"}[cached]
			t.Run(tc.name+map[bool]string{true: "/cached", false: "/uncached"}[cached], func(t *testing.T) {
				t.Parallel()
				base := t.TempDir()
				first := filepath.Join(base, "current")
				if tc.symlink {
					first = filepath.Join(base, "r1")
					mustDo(t, os.Symlink("r1", filepath.Join(base, "current")))
				}
				for dir, ver := range map[string]string{first: "v1", filepath.Join(base, "next"): "v2"} {
					mustDo(t, os.Mkdir(dir, 0o755))
					mustDo(t, os.WriteFile(filepath.Join(dir, "ver.txt"), []byte(ver), 0o644))
				}
				g := startGateway(t, "-root", filepath.Join(base, "current"), "-cache-size", cache)
				srv := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(g.port))
				if b, err := fetch(t, "127.0.0.1", srv, "ver.txt"); err != nil || string(b) != "v1" {
					t.Fatalf("before the swap: %q, %v", b, err)
				}
				tc.swap(t, base)
				want := "v2"
				switch {
				case strings.HasPrefix(tc.name, "path gone"):
					want = "v1" // the directory opened before
					time.Sleep(rootCheckInterval + 100*time.Millisecond)
				case tc.hup:
					g.cmd.Process.Signal(syscall.SIGHUP)
					g.waitLog(t, tc.log)
				default:
					time.Sleep(rootCheckInterval + 100*time.Millisecond)
				}
				if b, err := fetch(t, "127.0.0.1", srv, "ver.txt"); err != nil || string(b) != want {
					t.Fatalf("after the swap: %q, %v; want %q\n%s", b, err, want, g.logText())
				}
				g.waitLog(t, tc.log)
				if !strings.HasPrefix(tc.name, "path gone") {
					return
				}
				// Still gone a second later: no second warning. Then a new
				// directory at the path is served, and said so.
				time.Sleep(rootCheckInterval + 100*time.Millisecond)
				if b, err := fetch(t, "127.0.0.1", srv, "ver.txt"); err != nil || string(b) != "v1" {
					t.Fatalf("still gone: %q, %v", b, err)
				}
				if n := strings.Count(g.logText(), tc.log); n != 1 {
					t.Errorf("%d warnings, want 1\n%s", n, g.logText())
				}
				mustDo(t, os.Rename(filepath.Join(base, "next"), filepath.Join(base, "current")))
				time.Sleep(rootCheckInterval + 100*time.Millisecond)
				if b, err := fetch(t, "127.0.0.1", srv, "ver.txt"); err != nil || string(b) != "v2" {
					t.Fatalf("a new directory at the path: %q, %v\n%s", b, err, g.logText())
				}
				g.waitLog(t, "-root names another directory: serving it")
			})
		}
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
