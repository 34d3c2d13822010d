// Package wire encodes and decodes TFTP packets (RFC 1350) with the option
// extension (RFC 2347) used by blksize, tsize, timeout and windowsize
// (RFC 2348, 2349, 7440).
//
// Parsers never panic, whatever the input. [ParseData] returns a view into
// its input, and [PacketOpcode], [ParseData] and [ParseAck] allocate
// nothing, even on error: every error returned by the parsers is one of the
// package's sentinels or a package-level value wrapping one, so junk can be
// counted with [errors.Is] at no cost. [ParseRequest] and [ParseOACK]
// copy what they return, since callers reuse their read buffers, in at
// most two allocations per packet whatever its options: one string holding
// all its text and the slice of options. Encoders append to the caller's buffer
// and allocate nothing when its capacity suffices.
//
// Every packet starts with a 2-byte big-endian opcode; all numbers on the
// wire are big-endian. Each parser's doc shows its packet's RFC diagram.
package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// Opcode is the first field of every TFTP packet.
type Opcode uint16

// The TFTP opcodes (RFC 1350 section 5; OACK from RFC 2347).
const (
	OpRRQ   Opcode = 1 // read request
	OpWRQ   Opcode = 2 // write request
	OpDATA  Opcode = 3 // data
	OpACK   Opcode = 4 // acknowledgment
	OpERROR Opcode = 5 // error
	OpOACK  Opcode = 6 // option acknowledgment (RFC 2347)
)

var opcodeNames = [...]string{
	OpRRQ:   "RRQ",
	OpWRQ:   "WRQ",
	OpDATA:  "DATA",
	OpACK:   "ACK",
	OpERROR: "ERROR",
	OpOACK:  "OACK",
}

// String returns the opcode's RFC name ("RRQ", "DATA", ...), or
// "Opcode(N)" for a value outside 1..6.
func (o Opcode) String() string {
	if o.valid() {
		return opcodeNames[o]
	}
	return "Opcode(" + strconv.Itoa(int(o)) + ")"
}

func (o Opcode) valid() bool { return o >= OpRRQ && o <= OpOACK }

// MaxRequestSize is the largest RRQ or WRQ accepted, in bytes, opcode
// included (RFC 2347: "the request packet ... must not exceed 512 octets").
const MaxRequestSize = 512

// Block sizes (RFC 2348). DefaultBlockSize is RFC 1350's fixed size, used
// when no blksize option is negotiated.
const (
	MinBlockSize     = 8
	MaxBlockSize     = 65464
	DefaultBlockSize = 512
)

// The largest windowsize (RFC 7440) and timeout in seconds (RFC 2349); both
// options range from 1.
const (
	MaxWindowSize = 65535
	MaxTimeout    = 255
)

// HeaderSize is the size of the DATA and ACK headers: opcode and block number.
const HeaderSize = 4

// Sentinel errors. Parsers return these or errors wrapping them; test with
// [errors.Is].
var (
	ErrShort         = errors.New("wire: packet too short")
	ErrOpcode        = errors.New("wire: unknown or unexpected opcode")
	ErrTooLong       = errors.New("wire: request longer than 512 bytes")
	ErrUnterminated  = errors.New("wire: string not terminated by NUL")
	ErrEmptyFilename = errors.New("wire: empty filename")
	ErrEmptyMode     = errors.New("wire: empty mode")
)

// Errors with context, built once so that returning them allocates nothing.
var (
	errNotRequest = fmt.Errorf("%w: want RRQ or WRQ", ErrOpcode)
	errNotData    = fmt.Errorf("%w: want DATA", ErrOpcode)
	errNotAck     = fmt.Errorf("%w: want ACK", ErrOpcode)
	errNotError   = fmt.Errorf("%w: want ERROR", ErrOpcode)
	errNotOACK    = fmt.Errorf("%w: want OACK", ErrOpcode)

	errFilenameUnterminated = fmt.Errorf("%w: filename", ErrUnterminated)
	errModeUnterminated     = fmt.Errorf("%w: mode", ErrUnterminated)
	errOptionUnterminated   = fmt.Errorf("%w: option name or value", ErrUnterminated)
)

// PacketOpcode returns the opcode of packet b. It returns [ErrShort] if b
// is shorter than 2 bytes and [ErrOpcode] if the opcode is not 1 to 6.
func PacketOpcode(b []byte) (Opcode, error) {
	if len(b) < 2 {
		return 0, ErrShort
	}
	op := Opcode(binary.BigEndian.Uint16(b))
	if !op.valid() {
		return 0, ErrOpcode
	}
	return op, nil
}

// header checks that b is at least HeaderSize bytes long and carries
// opcode want, and returns the 16-bit field after the opcode.
func header(b []byte, want Opcode, wrong error) (uint16, error) {
	if len(b) < HeaderSize {
		return 0, ErrShort
	}
	if Opcode(binary.BigEndian.Uint16(b)) != want {
		return 0, wrong
	}
	return binary.BigEndian.Uint16(b[2:]), nil
}

func appendHeader(b []byte, op Opcode, n uint16) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, uint16(op)), n)
}

// appendString appends s and its NUL terminator.
func appendString(b []byte, s string) []byte {
	return append(append(b, s...), 0)
}

// cutString splits b at its first NUL: the string before it, and the rest
// after it. ok is false if b holds no NUL.
func cutString(b []byte) (s, rest []byte, ok bool) {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i], b[i+1:], true
	}
	return nil, nil, false
}
