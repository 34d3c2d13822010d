//go:build unix

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// dropPrivileges makes the process u, for good, once every socket it
// serves on is bound (port 69 needs root): supplementary groups cleared,
// then the group, then the user (real, effective and saved IDs, on every
// thread: Go applies these calls to all of them on Linux, as glibc does
// with cgo), which also empties the capability sets. It then checks what
// it did: the IDs, no way back to uid 0, and on Linux every thread's IDs,
// groups and capabilities in /proc. It also checks that u can use what
// tftpgw keeps using: the -root directory (opened before, but each file
// is looked up in it as u) and the token files, the -backend-token-file
// and -stats-sink-token-file (re-read when they change). Nothing is served
// before it returns, and an error stops tftpgw.
func dropPrivileges(logger *slog.Logger, u *serviceUser, root *os.Root, backendToken, statsToken string) error {
	if u == nil {
		return nil
	}
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("-user %s: clearing supplementary groups: %w (tftpgw must start as root to change user)", u.name, err)
	}
	if err := syscall.Setgid(u.gid); err != nil {
		return fmt.Errorf("-user %s: setgid %d: %w", u.name, u.gid, err)
	}
	if err := syscall.Setuid(u.uid); err != nil {
		return fmt.Errorf("-user %s: setuid %d: %w", u.name, u.uid, err)
	}
	if err := checkDropped(u); err != nil {
		return fmt.Errorf("-user %s: %w", u.name, err)
	}
	if root != nil {
		if _, err := root.Stat("."); err != nil {
			return fmt.Errorf("-user %s cannot search -root %s (it needs x permission there, and files it may read): %w", u.name, root.Name(), err)
		}
	}
	for _, tf := range []struct{ flag, file string }{
		{"backend-token-file", backendToken},
		{"stats-sink-token-file", statsToken},
	} {
		if tf.file == "" {
			continue
		}
		f, err := os.Open(tf.file)
		if err != nil {
			return fmt.Errorf("-user %s cannot read -%s, which is read again when it changes: %w", u.name, tf.flag, err)
		}
		f.Close()
	}
	logger.Info("running as -user", "user", u.name, "uid", u.uid, "gid", u.gid)
	return nil
}

// checkDropped verifies that the process is u and cannot become root
// again.
func checkDropped(u *serviceUser) error {
	if os.Getuid() != u.uid || os.Geteuid() != u.uid || os.Getgid() != u.gid || os.Getegid() != u.gid {
		return fmt.Errorf("still uid %d/%d, gid %d/%d after the change", os.Getuid(), os.Geteuid(), os.Getgid(), os.Getegid())
	}
	if groups, err := os.Getgroups(); err != nil || len(groups) != 0 {
		return fmt.Errorf("supplementary groups %v (%v) after clearing them", groups, err)
	}
	if err := syscall.Setuid(0); err == nil {
		return errors.New("setuid(0) succeeded after dropping root")
	}
	return checkThreads(u)
}

// checkThreads reads every thread's status in /proc (Linux): each must
// have u's IDs in all four places, no supplementary group and no
// capability. Where there is no /proc it checks nothing.
func checkThreads(u *serviceUser) error {
	paths, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil || len(paths) == 0 {
		return nil
	}
	uid, gid := fmt.Sprint(u.uid), fmt.Sprint(u.gid)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // the thread exited
			}
			return err
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			key, val, _ := strings.Cut(line, ":")
			f := strings.Fields(val)
			var ok bool
			switch key {
			case "Uid":
				ok = len(f) == 4 && f[0] == uid && f[1] == uid && f[2] == uid && f[3] == uid
			case "Gid":
				ok = len(f) == 4 && f[0] == gid && f[1] == gid && f[2] == gid && f[3] == gid
			case "Groups":
				ok = len(f) == 0
			case "CapPrm", "CapEff", "CapAmb":
				ok = len(f) == 1 && strings.Trim(f[0], "0") == ""
			default:
				continue
			}
			if !ok {
				return fmt.Errorf("thread %s still has %s", filepath.Base(filepath.Dir(p)), strings.TrimSpace(line))
			}
		}
	}
	return nil
}

// may reports whether u, with its primary group only (dropPrivileges
// clears the others), has the permission bits perm (permRead,
// permSearch) on path by its mode, after symbolic links; with parents,
// also search permission on every directory above it. ACLs are not read.
// A path that cannot be examined is left to the checks that open it: may
// then reports true.
func (u *serviceUser) may(path string, perm uint32, parents bool) bool {
	p, err := filepath.Abs(path)
	if err == nil {
		p, err = filepath.EvalSymlinks(p)
	}
	if err != nil {
		return true
	}
	allows := func(p string, perm uint32) bool {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			return true
		}
		shift := 0 // others
		switch {
		case int(st.Uid) == u.uid:
			shift = 6
		case int(st.Gid) == u.gid:
			shift = 3
		}
		return uint32(st.Mode)>>shift&perm == perm // Mode is uint16 on some systems (darwin)
	}
	if parents {
		for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
			if !allows(dir, permSearch) {
				return false
			}
			if dir == filepath.Dir(dir) {
				break
			}
		}
	}
	return allows(p, perm)
}
