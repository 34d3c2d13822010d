package tftpclient

import (
	"errors"
	"fmt"
)

// Error is an ERROR packet received from the server. Its codes are
// internal/wire's constants, wire.CodeNotDefined to
// wire.CodeOptionNegotiation.
type Error struct {
	Code    uint16
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("tftp: server error %d: %s", e.Code, e.Message)
}

// Is reports whether target is an *Error with the same code and either an
// empty message or the same message, so that
// errors.Is(err, &tftpclient.Error{Code: wire.CodeFileNotFound})
// matches any "file not found" reply.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || t == nil {
		return false
	}
	return t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// Sentinel errors. Returned errors wrap them with details; test with
// errors.Is.
var (
	// ErrTimeout means the server stopped answering and the retransmissions
	// (Options.Retries) ran out.
	ErrTimeout = errors.New("tftpclient: timed out")
	// ErrBadOACK means the server's OACK broke RFC 2347/2348/2349/7440 or
	// answered something that was not requested. The client has sent
	// ERROR 8 to the server.
	ErrBadOACK = errors.New("tftpclient: invalid OACK")
	// ErrProtocol means the server sent a malformed or unexpected packet.
	// The client has sent ERROR 4 to the server.
	ErrProtocol = errors.New("tftpclient: protocol violation")
	// ErrNoTSize is returned by Probe when the server answered without a
	// tsize option.
	ErrNoTSize = errors.New("tftpclient: server did not return tsize")
)
