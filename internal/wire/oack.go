package wire

import (
	"encoding/binary"
	"strings"
)

// ParseOACK returns the options of an OACK packet (RFC 2347):
//
//	+-------+---~~---+---+---~~---+---+---~~---+---+---~~---+---+
//	|  opc  |  opt1  | 0 | value1 | 0 |  optN  | 0 | valueN | 0 |
//	+-------+---~~---+---+---~~---+---+---~~---+---+---~~---+---+
//
// opc is 6; the server lists only the options it acknowledges. They are
// returned in the order sent, names lower-cased and values as sent.
//
// Unlike [ParseRequest] it is strict: a trailing incomplete pair is
// [ErrUnterminated]. It does not judge the options (empty names and
// duplicates are returned as sent): that is for the client comparing them
// with its request.
//
// It returns [ErrShort] for fewer than 2 bytes and [ErrOpcode] for any
// opcode but OACK. Like [ParseRequest] it copies the options' text once
// into one string and cuts them from it: two allocations per OACK with
// options, whatever their names.
func ParseOACK(b []byte) ([]Option, error) {
	if len(b) < 2 {
		return nil, ErrShort
	}
	if Opcode(binary.BigEndian.Uint16(b)) != OpOACK {
		return nil, errNotOACK
	}
	rest := b[2:]
	if len(rest) == 0 {
		return nil, nil
	}
	n := countNUL(rest)
	if n%2 != 0 || rest[len(rest)-1] != 0 {
		return nil, errOptionUnterminated
	}
	// One string for the text of every option, as in [ParseRequest].
	var sb strings.Builder
	sb.Grow(len(rest))
	for len(rest) > 0 {
		name, r, _ := cutString(rest)
		value, r, _ := cutString(r)
		writeName(&sb, name)
		writeField(&sb, value)
		rest = r
	}
	opts := make([]Option, n/2)
	s := sb.String()
	for i := range opts {
		opts[i].Name, s = cutField(s)
		opts[i].Value, s = cutField(s)
	}
	return opts, nil
}

// AppendOACK appends an OACK packet (layout at [ParseOACK]). Names and
// values are written as given and must not contain NUL.
func AppendOACK(b []byte, opts []Option) []byte {
	return appendOptions(binary.BigEndian.AppendUint16(b, uint16(OpOACK)), opts)
}
