// Package beneath opens a file below a directory in one system call where
// the kernel can resolve the whole path while keeping it below that
// directory (Linux 5.6's openat2 with RESOLVE_BENEATH). os.Root opens
// every directory of a path in turn: three system calls for
// "pxelinux.cfg/01-52-54-00-00-00-01", most of what a PXELINUX client's
// config search asks for, and usually missing.
//
// Open answers only what the kernel decided for certain: the file, or
// that it does not exist. Anything else (a path leaving the directory, a
// symbolic link loop, an older kernel or a sandbox refusing openat2) is
// ErrUnsure, and the caller asks os.Root, whose answer is the reference.
package beneath

import "errors"

// ErrUnsure is Open's answer when the caller must open the file through
// os.Root instead.
var ErrUnsure = errors.New("beneath: not decided here")
