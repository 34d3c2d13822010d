// Package beneath opens a file below a directory in one system call where
// the kernel can resolve the whole path while keeping it below that
// directory (Linux 5.6's openat2 with RESOLVE_BENEATH). os.Root opens
// every directory of a path in turn: three system calls for
// "pxelinux.cfg/01-52-54-00-00-00-01", most of what a PXELINUX client's
// config search asks for, and usually missing.
//
// Open and Stat answer only what the kernel decided for certain, for a
// clean path through no symbolic link: the file, or that it does not
// exist. Anything else (a symbolic link, whose rules differ between
// os.Root and the kernel; a path leaving the directory; an older kernel or
// a sandbox refusing openat2) is ErrUnsure, and the caller asks os.Root,
// whose answer is the reference.
//
// Only calls that cannot wait are raw system calls (a lookup the kernel's
// caches answer, with O_PATH, for which no filesystem open, security hook
// or fanotify permission event runs; a close of an O_PATH descriptor):
// a raw call that waited would hold its P, and with it the scheduler and
// every stop-the-world.
package beneath

import "errors"

// ErrUnsure is Open's answer when the caller must open the file through
// os.Root instead.
var ErrUnsure = errors.New("beneath: not decided here")
