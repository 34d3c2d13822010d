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
