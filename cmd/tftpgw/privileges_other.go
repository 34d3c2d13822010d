//go:build !unix

package main

import (
	"errors"
	"log/slog"
	"os"
)

// dropPrivileges is implemented on Unix systems only.
func dropPrivileges(_ *slog.Logger, u *serviceUser, _ *os.Root, _, _ string) error {
	if u == nil {
		return nil
	}
	return errors.New("-user is not supported on this system")
}

// may reports true: -user is not supported here (checkUser refuses it
// anyway: os.Geteuid is -1, not root).
func (u *serviceUser) may(string, uint32, bool) bool { return true }
