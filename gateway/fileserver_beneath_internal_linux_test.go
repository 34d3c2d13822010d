package gateway

// FileServer through beneath answers as it did
// through os.Root alone.

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestFileServerETagSameAsOSRoot: the ETag of StatContent (beneath's stat)
// and of ServeTFTP's content (the open file's stat) equal the one made
// from os.Root's Stat and Lstat, for a file at the top, in a directory,
// and a file reached through a relative link (as root: untrusted, opened).
func TestFileServerETagSameAsOSRoot(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "d"), 0o755)
	os.WriteFile(filepath.Join(dir, "f"), []byte("top"), 0o644)
	os.WriteFile(filepath.Join(dir, "d", "g"), []byte("below"), 0o644)
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	h := FileServer(root).(fileServer)
	if !h.statOK {
		t.Skip("not a local filesystem")
	}
	for _, name := range []string{"f", "d/g"} {
		for range 3 { // the first from the uncached walk, then the cached
			want, err := root.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			lwant, _ := root.Lstat(name)
			_, info, err := h.StatContent(context.Background(), &Request{Path: name})
			if err != nil {
				t.Fatalf("StatContent(%s): %v", name, err)
			}
			c, err := h.ServeTFTP(context.Background(), &Request{Path: name})
			if err != nil {
				t.Fatal(err)
			}
			got := c.(*fileContent).Info().ETag
			c.Close()
			if info.ETag != fileETag(want) || got != fileETag(want) || fileETag(lwant) != fileETag(want) {
				t.Errorf("%s: StatContent %s, ServeTFTP %s, os.Root %s", name, info.ETag, got, fileETag(want))
			}
		}
	}
}

// TestFileServerLongSymlinkChainAsOSRoot: os.Root refuses a path through
// more than 8 symbolic links (ELOOP: an access violation); the kernel
// allows 40. FileServer answers as os.Root does: beneath leaves every link
// to it.
func TestFileServerLongSymlinkChainAsOSRoot(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("file"), 0o644)
	prev := "f"
	for i := range 12 {
		name := "l" + strconv.Itoa(i)
		os.Symlink(prev, filepath.Join(dir, name))
		prev = name
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	_, rootErr := root.Open(prev)
	h := FileServer(root)
	c, err := h.ServeTFTP(context.Background(), &Request{Path: prev})
	if c != nil {
		c.Close()
	}
	if (rootErr == nil) != (err == nil) {
		t.Errorf("12-link chain: os.Root %v; FileServer %v", rootErr, err)
	}
}
