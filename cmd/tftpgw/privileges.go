package main

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
)

// serviceUser is -user resolved: whom tftpgw becomes once its sockets are
// bound.
type serviceUser struct {
	name     string
	uid, gid int
}

// lookupServiceUser resolves -user, by name or else by number. It refuses
// uid 0 and gid 0: they would keep root's privileges.
func lookupServiceUser(name string) (*serviceUser, error) {
	if name == "" {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if _, isNum := strconv.Atoi(name); err != nil && isNum == nil {
		u, err = user.LookupId(name)
	}
	if err != nil {
		return nil, fmt.Errorf("-user %s: %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("-user %s: uid %q, gid %q: %w", name, u.Uid, u.Gid, err)
	}
	if uid == 0 || gid == 0 {
		return nil, fmt.Errorf("-user %s: uid %d, gid %d: it would keep root's privileges; give an unprivileged user", name, uid, gid)
	}
	return &serviceUser{name: name, uid: uid, gid: gid}, nil
}

// Permission bits of a file's mode, for serviceUser.may.
const (
	permRead   = 4
	permSearch = 1
)

// checkUser is what -check can know of -user without changing user, for
// a process whose effective uid is euid: the user exists and is not root
// (lookupServiceUser); tftpgw runs as root, without which it cannot
// change user; and, by the files' modes, the user may search -root and
// read the token files, which tftpgw uses after the change.
func (o *options) checkUser(euid int) error {
	u, err := lookupServiceUser(o.User)
	if err != nil || u == nil {
		return err
	}
	var errs []error
	if euid != 0 {
		errs = append(errs, fmt.Errorf("-user %s: tftpgw runs as uid %d, not root, and could not change user: start it as root, or leave -user out", u.name, euid))
	}
	if r := o.Serving.Root; r != "" && !u.may(r, permSearch, false) { // the root is opened before the change
		errs = append(errs, fmt.Errorf("-user %s cannot search -root %s (it needs x permission there)", u.name, r))
	}
	for _, tf := range []struct{ flag, file string }{
		{"backend-token-file", o.Backend.TokenFile},
		{"stats-sink-token-file", o.Stats.Sink.TokenFile},
	} {
		if tf.file != "" && !u.may(tf.file, permRead, true) {
			errs = append(errs, fmt.Errorf("-user %s cannot read -%s %s, which is read again when it changes", u.name, tf.flag, tf.file))
		}
	}
	return errors.Join(errs...)
}
