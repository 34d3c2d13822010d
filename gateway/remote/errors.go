package remote

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/gateway"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// The TFTP errors the handler sends besides those chosen by a backend.
var (
	errTimeout   = &gateway.Error{Code: gateway.ErrNotDefined, Message: "backend timeout"}
	errBackend   = &gateway.Error{Code: gateway.ErrNotDefined, Message: "backend error"}
	errChanged   = &gateway.Error{Code: gateway.ErrNotDefined, Message: "content changed"}
	errNotFound  = &gateway.Error{Code: gateway.ErrFileNotFound, Message: "file not found"}
	errForbidden = &gateway.Error{Code: gateway.ErrAccessViolation, Message: "access violation"}
)

// Causes of cancelled calls, told apart with context.Cause.
var (
	errHeaderBudget = errors.New("remote: no header within the header budget")
	errIdle         = errors.New("remote: stream idle for too long")
	errClosed       = errors.New("remote: content closed")
)

// Error is the error a [Handler] and its content return for a failed call.
// It carries the TFTP error the client receives (found by [gateway.ErrorFor]
// through errors.As) and the underlying cause, such as the gRPC status,
// which is for logs only.
type Error struct {
	TFTP *gateway.Error
	Err  error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return "remote: " + e.TFTP.Message
	}
	return fmt.Sprintf("remote: %s: %v", e.TFTP.Message, e.Err)
}

// Unwrap returns both the TFTP error and the cause.
func (e *Error) Unwrap() []error { return []error{e.TFTP, e.Err} }

func wrap(te *gateway.Error, err error) *Error { return &Error{TFTP: te, Err: err} }

// tftpError maps the status of a failed call to the TFTP error the client
// receives.
func tftpError(err error) *gateway.Error {
	st, ok := status.FromError(err)
	if !ok {
		return errBackend
	}
	for _, d := range st.Details() {
		if te, ok := d.(*tftpgwv1.TFTPError); ok {
			return fromTFTPError(te)
		}
	}
	switch st.Code() {
	case codes.NotFound:
		return errNotFound
	case codes.PermissionDenied, codes.Unauthenticated:
		return errForbidden
	case codes.DeadlineExceeded:
		return errTimeout
	default:
		return errBackend
	}
}

func fromTFTPError(te *tftpgwv1.TFTPError) *gateway.Error {
	code := gateway.ErrorCode(te.GetCode())
	if te.GetCode() > uint32(gateway.ErrOptionNegotiation) {
		code = gateway.ErrNotDefined
	}
	msg := te.GetMessage()
	if msg == "" {
		switch code {
		case gateway.ErrFileNotFound:
			msg = errNotFound.Message
		case gateway.ErrAccessViolation:
			msg = errForbidden.Message
		default:
			msg = errBackend.Message
		}
	}
	return &gateway.Error{Code: code, Message: msg}
}

// hasTFTPError reports whether the status of err carries a TFTPError.
func hasTFTPError(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	for _, d := range st.Details() {
		if _, ok := d.(*tftpgwv1.TFTPError); ok {
			return true
		}
	}
	return false
}

// resumable reports whether a stream that broke with err after its header
// may be resumed: the connection or the backend went away (UNAVAILABLE,
// INTERNAL as sent on a reset stream), the backend asked for a retry
// (ABORTED), or the stream went idle.
func resumable(err error) bool {
	if errors.Is(err, errIdle) {
		return true
	}
	if hasTFTPError(err) {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted, codes.Internal:
		return true
	}
	return false
}
