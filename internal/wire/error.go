package wire

import "strings"

// The error codes of an ERROR packet, RFC 1350's 0 to 7 and RFC 2347's 8,
// each with its meaning as the RFC gives it. Like net/http's status codes
// they are untyped, so that they serve the gateway's ErrorCode and a
// plain uint16 alike.
const (
	CodeNotDefined        = 0 // Not defined, see error message (if any).
	CodeFileNotFound      = 1 // File not found.
	CodeAccessViolation   = 2 // Access violation.
	CodeDiskFull          = 3 // Disk full or allocation exceeded.
	CodeIllegalOperation  = 4 // Illegal TFTP operation.
	CodeUnknownTID        = 5 // Unknown transfer ID.
	CodeFileExists        = 6 // File already exists.
	CodeNoSuchUser        = 7 // No such user.
	CodeOptionNegotiation = 8 // Transfer terminated due to option negotiation (RFC 2347).
)

// ParseError returns the code and message of an ERROR packet (RFC 1350
// section 5):
//
//	 2 bytes     2 bytes      string    1 byte
//	-----------------------------------------
//	| Opcode |  ErrorCode |   ErrMsg   |   0  |
//	-----------------------------------------
//
// The codes are [CodeNotDefined] to [CodeOptionNegotiation]; others are
// returned as sent. It returns [ErrShort] for fewer than [HeaderSize]
// bytes and [ErrOpcode] for any opcode but ERROR. The message ends at the
// first NUL; an unterminated message is taken to the end of the packet,
// and it may be empty.
func ParseError(b []byte) (code uint16, msg string, err error) {
	code, err = header(b, OpERROR, errNotError)
	if err != nil {
		return 0, "", err
	}
	m := b[HeaderSize:]
	if s, _, ok := cutString(m); ok {
		m = s
	}
	return code, string(m), nil
}

// AppendError appends an ERROR packet (layout at [ParseError]). The
// message is cut at its first NUL, if any, since the receiver would stop
// reading there.
func AppendError(b []byte, code uint16, msg string) []byte {
	if i := strings.IndexByte(msg, 0); i >= 0 {
		msg = msg[:i]
	}
	return appendString(appendHeader(b, OpERROR, code), msg)
}
