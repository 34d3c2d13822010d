package tftpclient

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// Opcodes (RFC 1350, RFC 2347).
const (
	opRRQ   uint16 = 1
	opDATA  uint16 = 3
	opACK   uint16 = 4
	opERROR uint16 = 5
	opOACK  uint16 = 6
)

// appendRRQ appends a read request:
//
//	 2 bytes  string   1 byte  string  1 byte  string  1 byte  string  1 byte
//	+-------+--------+------+-------+------+-------+------+-------+------+
//	|  01   |filename|  0   | mode  |  0   | opt1  |  0   | value1|  0   | ...
//	+-------+--------+------+-------+------+-------+------+-------+------+
func appendRRQ(b []byte, file, mode string, opts [][2]string) []byte {
	b = binary.BigEndian.AppendUint16(b, opRRQ)
	b = append(b, file...)
	b = append(b, 0)
	b = append(b, mode...)
	b = append(b, 0)
	for _, o := range opts {
		b = append(b, o[0]...)
		b = append(b, 0)
		b = append(b, o[1]...)
		b = append(b, 0)
	}
	return b
}

// appendACK appends an acknowledgment:
//
//	 2 bytes  2 bytes
//	+-------+--------+
//	|  04   | Block #|
//	+-------+--------+
func appendACK(b []byte, block uint16) []byte {
	b = binary.BigEndian.AppendUint16(b, opACK)
	return binary.BigEndian.AppendUint16(b, block)
}

// appendError appends an error packet:
//
//	 2 bytes  2 bytes      string    1 byte
//	+-------+-----------+----------+------+
//	|  05   | ErrorCode |  ErrMsg  |  0   |
//	+-------+-----------+----------+------+
func appendError(b []byte, code uint16, msg string) []byte {
	b = binary.BigEndian.AppendUint16(b, opERROR)
	b = binary.BigEndian.AppendUint16(b, code)
	b = append(b, msg...)
	return append(b, 0)
}

// parseError decodes an ERROR packet (p includes the opcode). A missing
// terminating NUL is tolerated.
func parseError(p []byte) *Error {
	e := &Error{}
	if len(p) >= 4 {
		e.Code = binary.BigEndian.Uint16(p[2:4])
		msg := p[4:]
		if i := bytes.IndexByte(msg, 0); i >= 0 {
			msg = msg[:i]
		}
		e.Message = string(msg)
	}
	return e
}

// parseOACK decodes an option acknowledgment (p includes the opcode):
//
//	 2 bytes  string  1 byte  string  1 byte
//	+-------+-------+------+-------+------+---
//	|  06   | opt1  |  0   | value1|  0   | ...
//	+-------+-------+------+-------+------+---
//
// Names are lower-cased. Every name and value must be NUL-terminated.
func parseOACK(p []byte) ([][2]string, error) {
	var opts [][2]string
	rest := p[2:]
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return nil, fmt.Errorf("option name not NUL-terminated")
		}
		name := string(rest[:i])
		rest = rest[i+1:]
		j := bytes.IndexByte(rest, 0)
		if j < 0 {
			return nil, fmt.Errorf("value of option %q not NUL-terminated", name)
		}
		value := string(rest[:j])
		rest = rest[j+1:]
		if name == "" {
			return nil, fmt.Errorf("empty option name")
		}
		opts = append(opts, [2]string{strings.ToLower(name), value})
	}
	return opts, nil
}
