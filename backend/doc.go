// Package backend is the Go SDK for tftpgw content services: it serves a
// [gateway.Handler] as a tftpgw.v1.ContentService over gRPC (and a
// [gateway.WriteHandler] as its Write, for uploads), so that one
// piece of logic runs either in-process in the edge (as the handler of a
// [gateway.Server]) or behind gRPC (with [NewServer] or [Service]).
//
// For every Read call, [Service] builds a [gateway.Request] from the
// ReadRequest (with the exact bytes the client sent: the bytes twins of the
// request's text fields, so a handler sees the same Request as it would
// in-process, a filename that is not UTF-8 included), calls the handler
// with the call's context, and streams the returned [gateway.Content]:
//
//  1. The handler's error, if any, becomes a gRPC status (see [Status]).
//  2. If the request has if_match, the content's ETag (from
//     [gateway.InfoContent]) must equal it, or the call fails with
//     FAILED_PRECONDITION.
//  3. If the request has an offset and the content is an [io.Seeker], it
//     is seeked to the offset.
//  4. The header is sent: the full size from [gateway.Content.Size] (absent
//     when -1), the ETag, max age and SHA-256 digest from
//     [gateway.InfoContent], and the offset the data starts at (the
//     request's: the edge resumes only from a header that confirms it).
//  5. If the request has an offset and the content is not an io.Seeker,
//     that many bytes are read and discarded.
//  6. The rest is sent in data chunks, one per Read of the content, of at
//     most [Service.ChunkSize] bytes: what a read returns is sent at once,
//     so a slow source never holds back bytes the edge could send. The
//     call ends with OK at end of file.
//
// The content is closed when the call ends, or as soon as the call's
// context is cancelled (the edge cancels when the TFTP session ends), so a
// Read blocked on a network source returns. Close may therefore be called
// while a Read is in progress; it is still called exactly once.
//
// Content that can start at an offset more cheaply than by reading, such as
// an HTTP download that re-issues a Range request, implements io.Seeker. A
// content that finds, while seeking or reading, that its source changed
// returns an error wrapping [ErrETagMismatch], which becomes
// FAILED_PRECONDITION.
//
// # Uploads
//
// With a [gateway.WriteHandler] ([Service.WriteHandler], [Config]'s
// WriteHandler), [Service] also serves Write, the uploads (TFTP write
// requests) an edge forwards; without one, Write fails with UNIMPLEMENTED.
// The handler receives the [gateway.Request] built from WriteStart, as for
// a read, and its error refuses the upload before the client sends data
// (see [Status]: ALREADY_EXISTS for fs.ErrExist, RESOURCE_EXHAUSTED for
// [gateway.ErrUploadTooLarge], PERMISSION_DENIED for
// [gateway.ErrUploadRefused]). The returned [gateway.Upload] is written the
// data in order; at end, the size and SHA-256 the edge sent are checked
// against the bytes received (DATA_LOSS if they differ), then Commit is
// called and stored sent. Whenever the call ends without a Commit that
// returned nil (an error, a failed check, the edge cancelling the call, a
// panic), Abort is called, once. The Upload's methods are called on the
// call's goroutine, never concurrently: a Write blocked when the edge
// cancels sees the context it got cancelled, and Abort follows its
// return.
package backend
