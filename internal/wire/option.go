package wire

import "strings"

// Option is one name/value pair of a request or an OACK (RFC 2347). The
// parsers lower-case the ASCII letters of Name, since option names are
// case-insensitive, and keep other bytes; Value is kept as sent. Options
// follow the mode of a request and the opcode of an OACK as NUL-terminated
// pairs:
//
//	+---~~---+---+---~~---+---+---~~---+---+---~~---+---+
//	|  opt1  | 0 | value1 | 0 |  optN  | 0 | valueN | 0 |
//	+---~~---+---+---~~---+---+---~~---+---+---~~---+---+
type Option struct {
	Name, Value string
}

// appendOptions appends opts as NUL-terminated name/value pairs.
func appendOptions(b []byte, opts []Option) []byte {
	for _, o := range opts {
		b = appendString(appendString(b, o.Name), o.Value)
	}
	return b
}

// countNUL returns the number of NUL bytes in b: twice the number of
// complete pairs, at most.
func countNUL(b []byte) int {
	n := 0
	for _, c := range b {
		if c == 0 {
			n++
		}
	}
	return n
}

// lowerName returns b as a string with ASCII letters lower-cased; other
// bytes are kept as they are, so names survive a round trip exactly. The
// well-known modes and option names come back as constants, without
// allocating.
func lowerName(b []byte) string {
	var buf [len("windowsize")]byte
	if len(b) <= len(buf) {
		l := buf[:len(b)]
		for i, c := range b {
			l[i] = toLower(c)
		}
		switch string(l) { // does not allocate
		case "octet":
			return "octet"
		case "netascii":
			return "netascii"
		case "mail":
			return "mail"
		case "blksize":
			return "blksize"
		case "tsize":
			return "tsize"
		case "timeout":
			return "timeout"
		case "windowsize":
			return "windowsize"
		}
	}
	var sb strings.Builder
	sb.Grow(len(b))
	for _, c := range b {
		sb.WriteByte(toLower(c))
	}
	return sb.String()
}

func toLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
