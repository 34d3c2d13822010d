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

// A parser copies the text of a packet into one string, in one
// allocation however many fields it holds, and returns substrings of it:
// it writes each field it keeps to a [strings.Builder] grown once, with
// writeField or writeName, then takes the fields back from the builder's
// string with cutField.

// writeField writes b and its NUL terminator.
func writeField(sb *strings.Builder, b []byte) {
	sb.Write(b)
	sb.WriteByte(0)
}

// writeName writes b with its ASCII letters lower-cased and other bytes as
// they are, so that names survive a round trip exactly, and its NUL
// terminator.
func writeName(sb *strings.Builder, b []byte) {
	start := 0 // of the bytes not written yet
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			sb.Write(b[start:i])
			sb.WriteByte(c + 'a' - 'A')
			start = i + 1
		}
	}
	sb.Write(b[start:])
	sb.WriteByte(0)
}

// cutField splits s, a sequence of NUL-terminated fields, after its first
// field: the field without its NUL, and the rest. s must hold a NUL.
func cutField(s string) (field, rest string) {
	i := strings.IndexByte(s, 0)
	return s[:i], s[i+1:]
}
