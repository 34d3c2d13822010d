package fileinfo

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestLocalFilesystems: a stat is trusted to show a file's current version
// only on local filesystems: network ones answer it from cached attributes
// (NFS until an open, up to a minute).
func TestLocalFilesystems(t *testing.T) {
	for _, tt := range []struct {
		name  string
		magic uint32
		want  bool
	}{
		{"ext4", unix.EXT4_SUPER_MAGIC, true},
		{"xfs", unix.XFS_SUPER_MAGIC, true},
		{"btrfs", unix.BTRFS_SUPER_MAGIC, true},
		{"tmpfs", unix.TMPFS_MAGIC, true},
		{"overlay", unix.OVERLAYFS_SUPER_MAGIC, true},
		{"zfs", 0x2fc12fc1, true},
		{"nfs", unix.NFS_SUPER_MAGIC, false},
		{"cifs", unix.CIFS_SUPER_MAGIC, false},
		{"smb2", unix.SMB2_SUPER_MAGIC, false},
		{"fuse", unix.FUSE_SUPER_MAGIC, false},
		{"unknown", 0x12345678, false},
	} {
		if got := localFS(tt.magic); got != tt.want {
			t.Errorf("localFS(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}

}
