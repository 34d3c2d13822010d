//go:build !linux

package beneath

import "os"

// Dir is a directory to open files below: on Linux only.
type Dir struct{}

// OpenDir returns nil: every Open is ErrUnsure.
func OpenDir(*os.Root) *Dir { return nil }

// Open is ErrUnsure: os.Root decides.
func (*Dir) Open(string, int) (*os.File, error) { return nil, ErrUnsure }

// Close does nothing.
func (*Dir) Close() error { return nil }

// Stat is ErrUnsure: os.Root decides.
func (*Dir) Stat(string, bool) (os.FileInfo, error) { return nil, ErrUnsure }
