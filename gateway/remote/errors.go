package remote

import (
	"context"
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

	// Only for uploads (Write calls).
	errExists    = &gateway.Error{Code: gateway.ErrFileExists, Message: "file already exists"}
	errDiskFull  = &gateway.Error{Code: gateway.ErrDiskFull, Message: "disk full or allocation exceeded"}
	errNoUploads = &gateway.Error{Code: gateway.ErrAccessViolation, Message: "uploads not supported"}
)

// Causes of cancelled calls, told apart with context.Cause.
var (
	errHeaderBudget = errors.New("remote: no header within the header budget")
	errIdle         = errors.New("remote: stream idle for too long")

	// The causes a call is cancelled with when its backend misses the
	// header or idle budget: they wrap context.DeadlineExceeded too, so
	// that the metrics' interceptors (package stats) count the call as the
	// backend's DeadlineExceeded, not as one the caller cancelled.
	errHeaderBudgetCause = fmt.Errorf("%w: %w", errHeaderBudget, context.DeadlineExceeded)
	errIdleCause         = fmt.Errorf("%w: %w", errIdle, context.DeadlineExceeded)
	errClosed            = errors.New("remote: content closed")

	// The budgets of an upload wrap context.DeadlineExceeded, so that
	// errors.Is tells a timeout.
	errAcceptBudget = fmt.Errorf("remote: upload not accepted within the header budget: %w", context.DeadlineExceeded)
	errCommitBudget = fmt.Errorf("remote: upload not stored within the commit budget: %w", context.DeadlineExceeded)
	errAborted      = errors.New("remote: upload aborted")
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

// tftpWriteError maps the status of a failed Write call to the TFTP error
// the client receives: tftpError's mapping, with the codes that only an
// upload has (content.proto): ALREADY_EXISTS as 6, RESOURCE_EXHAUSTED as
// 3, and UNIMPLEMENTED (a backend without Write) as 2 "uploads not
// supported". A TFTPError detail wins, as for reads.
func tftpWriteError(err error) *gateway.Error {
	if hasTFTPError(err) {
		return tftpError(err)
	}
	switch status.Code(err) {
	case codes.AlreadyExists:
		return errExists
	case codes.ResourceExhausted:
		return errDiskFull
	case codes.Unimplemented:
		return errNoUploads
	}
	return tftpError(err)
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
		case gateway.ErrDiskFull:
			msg = errDiskFull.Message
		case gateway.ErrFileExists:
			msg = errExists.Message
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
