package wire

import (
	"encoding/binary"
	"strings"
)

// Request is a parsed RRQ or WRQ. Its strings share one copy of the
// packet's text, at most [MaxRequestSize] bytes, which stays in memory
// while any of them does: a caller that keeps one long after the request,
// as a map key for example, may prefer a [strings.Clone] of it.
type Request struct {
	Op Opcode // OpRRQ or OpWRQ
	// Filename is the raw bytes as sent: it may hold backslashes or
	// trailing 0xFF garbage from firmware. Cleaning it is the caller's job.
	Filename string
	// Mode is lower-cased (ASCII letters only) but not validated:
	// "octet", "netascii", "mail" or anything else the client sent.
	Mode string
	// Options in the order sent, names lower-cased, without duplicates.
	Options []Option
}

// ParseRequest parses an RRQ or WRQ (RFC 1350 figure 5-1):
//
//	 2 bytes     string    1 byte     string   1 byte
//	------------------------------------------------
//	| 01/02 |  Filename  |   0  |    Mode    |   0  |
//	------------------------------------------------
//
// followed by zero or more options (RFC 2347):
//
//	+-------+---~~---+---+---~~---+---+---~~---+---+---~~---+---+-->
//	|  opc  |filename| 0 |  mode  | 0 |  opt1  | 0 | value1 | 0 | <
//	+-------+---~~---+---+---~~---+---+---~~---+---+---~~---+---+-->
//
//	 >-------+---+---~~---+---+
//	<  optN  | 0 | valueN | 0 |
//	 >-------+---+---~~---+---+
//
// It returns [ErrShort] for fewer than 2 bytes, [ErrOpcode] for any other
// opcode, [ErrTooLong] for more than [MaxRequestSize] bytes,
// [ErrUnterminated] when the filename or mode has no NUL, and
// [ErrEmptyFilename] or [ErrEmptyMode] when one is empty.
//
// Options are parsed leniently, as real firmware sends them: a trailing
// incomplete pair is ignored, a pair with an empty name is skipped, and a
// name that repeats an earlier one (case-insensitively) is dropped, so the
// first wins.
//
// A valid request costs two allocations, one without options: its text,
// copied once into one string that the fields are cut from, and the slice
// of options. An invalid one costs none.
func ParseRequest(b []byte) (Request, error) {
	if len(b) < 2 {
		return Request{}, ErrShort
	}
	op := Opcode(binary.BigEndian.Uint16(b))
	if op != OpRRQ && op != OpWRQ {
		return Request{}, errNotRequest
	}
	if len(b) > MaxRequestSize {
		return Request{}, ErrTooLong
	}
	filename, rest, ok := cutString(b[2:])
	if !ok {
		return Request{}, errFilenameUnterminated
	}
	if len(filename) == 0 {
		return Request{}, ErrEmptyFilename
	}
	mode, rest, ok := cutString(rest)
	if !ok {
		return Request{}, errModeUnterminated
	}
	if len(mode) == 0 {
		return Request{}, ErrEmptyMode
	}

	// The fields kept, names lower-cased, copied into one string.
	var sb strings.Builder
	sb.Grow(len(b) - 2)
	writeField(&sb, filename)
	writeName(&sb, mode)
	n := 0 // options written
	for {
		name, r, ok := cutString(rest)
		if !ok {
			break
		}
		value, r, ok := cutString(r)
		if !ok {
			break
		}
		rest = r
		if len(name) == 0 {
			continue
		}
		writeName(&sb, name)
		writeField(&sb, value)
		n++
	}
	req := Request{Op: op}
	s := sb.String()
	req.Filename, s = cutField(s)
	req.Mode, s = cutField(s)
	if n > 0 {
		req.Options = make([]Option, 0, n)
	}
	for s != "" {
		var o Option
		o.Name, s = cutField(s)
		o.Value, s = cutField(s)
		if !hasOption(req.Options, o.Name) {
			req.Options = append(req.Options, o)
		}
	}
	return req, nil
}

func hasOption(opts []Option, name string) bool {
	for _, o := range opts {
		if o.Name == name {
			return true
		}
	}
	return false
}

// AppendRequest appends an RRQ or WRQ (layout at [ParseRequest]). Strings
// are written as given and must not contain NUL; the result may exceed
// [MaxRequestSize], which is the caller's to check.
func AppendRequest(b []byte, op Opcode, filename, mode string, opts []Option) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(op))
	b = appendString(appendString(b, filename), mode)
	return appendOptions(b, opts)
}
