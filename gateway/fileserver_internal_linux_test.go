package gateway

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tftpgw/tftpgw/gateway/internal/fileinfo"
)

// TestStatTrustedOnLocalFilesystemsOnly: the cache revalidates a file with
// a stat only where that shows its current version. Network filesystems
// answer a stat from cached attributes (NFS until an open, up to a
// minute), so a file there, or on another filesystem mounted below the
// root, is opened instead. A real NFS mount cannot be made here: the
// decision is checked on the devices (the filesystem types in package
// fileinfo).
func TestStatTrustedOnLocalFilesystemsOnly(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	h := FileServer(root).(fileServer)
	if _, local := fileinfo.LocalDevice(root); h.statOK != local {
		t.Fatalf("statOK %v for a root on filesystem type %#x", h.statOK, fs.Type)
	}
	if !h.statOK {
		t.Skipf("the temporary directory is on filesystem type %#x, not a local one", fs.Type)
	}
	req := &Request{Path: "f"}
	if _, _, err := h.StatContent(context.Background(), req); err != nil {
		t.Fatalf("StatContent on the root's filesystem: %v", err)
	}
	other := h
	other.dev++ // as if f were on a filesystem mounted below the root
	if _, _, err := other.StatContent(context.Background(), req); !errors.Is(err, errStatUntrusted) {
		t.Errorf("a file on another filesystem: %v, want errStatUntrusted", err)
	}
	remote := h
	remote.statOK = false // a root on NFS
	if _, _, err := remote.StatContent(context.Background(), req); !errors.Is(err, errStatUntrusted) {
		t.Errorf("a root on a network filesystem: %v, want errStatUntrusted", err)
	}
}
