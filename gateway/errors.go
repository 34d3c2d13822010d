package gateway

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
)

// ErrorCode is a TFTP error code (RFC 1350 section 5, RFC 2347).
type ErrorCode uint16

// The TFTP error codes (the values of internal/wire's table; a test keeps
// them equal).
const (
	ErrNotDefined        ErrorCode = 0 // not defined, see the message
	ErrFileNotFound      ErrorCode = 1 // file not found
	ErrAccessViolation   ErrorCode = 2 // access violation
	ErrDiskFull          ErrorCode = 3 // disk full or allocation exceeded
	ErrIllegalOperation  ErrorCode = 4 // illegal TFTP operation
	ErrUnknownTID        ErrorCode = 5 // unknown transfer ID
	ErrFileExists        ErrorCode = 6 // file already exists
	ErrNoSuchUser        ErrorCode = 7 // no such user
	ErrOptionNegotiation ErrorCode = 8 // the options were refused (RFC 2347)
)

// Error is a TFTP error as sent on the wire. A [Handler] returns one to
// choose the exact code and message the client receives.
type Error struct {
	Code    ErrorCode
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("tftp error %d: %s", e.Code, e.Message)
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, &gateway.Error{Code: gateway.ErrFileNotFound}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// ErrIntegrity ends a session whose content's bytes do not match the
// SHA-256 digest the content declared ([ContentInfo.SHA256]); a content
// fails with an error wrapping it at its end, before the final block is
// sent. The client gets ERROR 0 "integrity check failed", and the session
// is counted in [ServerStats.IntegrityFailures].
var ErrIntegrity = &Error{Code: ErrNotDefined, Message: "integrity check failed"}

// ErrorFor maps a handler's error to the TFTP error the client receives:
// an [*Error] anywhere in the chain as it is; fs.ErrNotExist as 1 "file not
// found"; fs.ErrExist as 6 "file already exists"; fs.ErrPermission as 2
// "access violation"; [ErrNotRegular] as 2
// "not a regular file"; context.DeadlineExceeded as 0 "timeout"; anything
// else as 0 "internal error". Except for an *Error, the text of err is
// never sent, so server paths do not leak.
func ErrorFor(err error) *Error {
	var te *Error
	switch {
	case errors.As(err, &te):
		return te
	case errors.Is(err, fs.ErrNotExist):
		return &Error{Code: ErrFileNotFound, Message: "file not found"}
	case errors.Is(err, fs.ErrExist):
		return &Error{Code: ErrFileExists, Message: "file already exists"}
	case errors.Is(err, fs.ErrPermission):
		return &Error{Code: ErrAccessViolation, Message: "access violation"}
	case errors.Is(err, ErrNotRegular):
		return &Error{Code: ErrAccessViolation, Message: "not a regular file"}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: ErrNotDefined, Message: "timeout"}
	default:
		return &Error{Code: ErrNotDefined, Message: "internal error"}
	}
}
