package gateway

import (
	"context"
	"errors"
)

// A WriteHandler accepts the files that clients upload (write requests,
// WRQ), as a [Handler] answers read requests. A [Server] without one
// refuses every write request with ERROR 2.
//
// ReceiveTFTP is called once per upload, on the session's goroutine, after
// the request's path has been normalised and before the client is
// acknowledged: an error refuses the upload with the ERROR that [ErrorFor]
// chooses (an [*Error] as it is: ErrFileExists, ErrDiskFull, ...), before
// the client has sent any data. The declared size, when the client sent
// one, is the request's tsize option. The context is cancelled when the
// session ends for any reason.
//
// The server writes the file's bytes to the returned Upload in order, then
// calls Commit; the client's last block is acknowledged only once Commit
// has returned nil. A panic in ReceiveTFTP or the Upload ends that session
// with ERROR 0 and is logged.
type WriteHandler interface {
	ReceiveTFTP(ctx context.Context, req *Request) (Upload, error)
}

// WriteHandlerFunc adapts an ordinary function to a [WriteHandler].
type WriteHandlerFunc func(ctx context.Context, req *Request) (Upload, error)

// ReceiveTFTP calls f(ctx, req).
func (f WriteHandlerFunc) ReceiveTFTP(ctx context.Context, req *Request) (Upload, error) {
	return f(ctx, req)
}

// An Upload receives the bytes of one file a client uploads. Its methods
// are called from the session's goroutine, one at a time.
type Upload interface {
	// Write is given the next bytes of the file, in order; a netascii
	// upload is already converted to local line ends. An error ends the
	// upload: the client gets the ERROR ErrorFor(err) chooses (for
	// example ErrDiskFull when a size limit is passed).
	Write(p []byte) (int, error)

	// Commit is called once, after the last byte: it stores the file (or
	// hands it on) and returns nil only when the bytes are safe. The
	// client then gets its final ACK; on an error, the ERROR ErrorFor
	// chooses.
	Commit() error

	// Abort discards what was written, leaving nothing under the file's
	// name. The server calls it, once, whenever the upload ends without a
	// Commit that returned nil: the client went away, sent an ERROR or
	// stopped sending, Write or Commit failed, or the server is shutting
	// down.
	Abort()
}

// ErrUploadTooLarge is the error of an upload refused, or cut, because it
// is larger than a limit: the client gets it as ERROR 3.
var ErrUploadTooLarge = &Error{Code: ErrDiskFull, Message: "file too large"}

// errUploadsOff is what a write request gets from a server that takes no
// uploads, or from a write handler that refuses its path.
var errUploadsOff = &Error{Code: ErrAccessViolation, Message: "read-only server"}

// ErrUploadRefused is the error a write handler returns for a path or
// client that may not upload: ERROR 2 "upload not allowed". The server
// counts it in [ServerStats.WriteRequests] with the write requests of a
// server without uploads.
var ErrUploadRefused error = &Error{Code: ErrAccessViolation, Message: "upload not allowed"}

// errNoUpload ends an upload whose handler returned neither an Upload nor
// an error.
var errNoUpload = errors.New("gateway: write handler returned no upload and no error")
