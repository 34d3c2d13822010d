//go:build !linux

package fileinfo

import "os"

// ChangeID is implemented for Linux only; elsewhere the ETag is size and
// modification time.
func ChangeID(os.FileInfo) (int64, uint64, bool) { return 0, 0, false }

// Dev and LocalDevice are implemented for Linux only; elsewhere a file
// is always opened to learn its version.
func Dev(os.FileInfo) (uint64, bool) { return 0, false }

func LocalDevice(*os.Root) (uint64, bool) { return 0, false }

// RealPath is implemented for Linux only.
func RealPath(*os.File) (string, bool) { return "", false }
