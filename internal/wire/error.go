package wire

import "strings"

// ParseError returns the code and message of an ERROR packet (RFC 1350
// section 5):
//
//	 2 bytes     2 bytes      string    1 byte
//	-----------------------------------------
//	| Opcode |  ErrorCode |   ErrMsg   |   0  |
//	-----------------------------------------
//
// Codes 0 to 7 are RFC 1350's, 8 is RFC 2347's option negotiation failure.
// It returns
// [ErrShort] for fewer than [HeaderSize] bytes and [ErrOpcode] for any
// opcode but ERROR. The message ends at the first NUL; an unterminated
// message is taken to the end of the packet, and it may be empty.
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
