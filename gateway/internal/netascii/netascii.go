// Package netascii converts a file's bytes to netascii, the line format
// of TFTP's "netascii" mode (RFC 1350, which takes it from the Telnet
// specification, RFC 764): every LF becomes CR LF and every CR becomes
// CR NUL, so that the receiver can restore the original bytes exactly.
package netascii

import "io"

// bufSize is the size of the Reader's internal buffer of source bytes.
const bufSize = 512

// Reader converts the bytes of an underlying reader to netascii. Create
// one with [NewReader]; reuse it with [Reader.Reset]. After construction
// it allocates nothing.
type Reader struct {
	r     io.Reader
	err   error // from r, returned once buf and carry are drained
	pos   int   // buf[pos:end] is read from r but not yet converted
	end   int
	carry bool // the second byte of an expansion is still to be returned
	next  byte // that byte: LF after CR for a LF, NUL after CR for a CR
	buf   [bufSize]byte
}

// NewReader returns a reader that converts r's bytes to netascii
// (RFC 1350, RFC 764): LF -> CR LF, CR -> CR NUL, other bytes unchanged.
func NewReader(r io.Reader) *Reader {
	nr := new(Reader)
	nr.Reset(r)
	return nr
}

// Reset discards any buffered state and makes nr read from r.
func (nr *Reader) Reset(r io.Reader) {
	*nr = Reader{r: r}
}

// Read fills p with converted bytes. It reads from the underlying reader
// at most once per call, and only when it has no converted byte to
// return. When the two bytes of an expansion do not both fit in p, the
// second is returned first by the next Read. The underlying reader's
// error, io.EOF included, is returned once all bytes read before it have
// been returned.
func (nr *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n := 0
	if nr.carry {
		p[0] = nr.next
		nr.carry = false
		n = 1
	}
	if n == 0 && nr.pos == nr.end {
		if nr.err != nil {
			return 0, nr.err
		}
		m, err := nr.r.Read(nr.buf[:])
		nr.pos, nr.end, nr.err = 0, m, err
	}
	for n < len(p) && nr.pos < nr.end {
		c := nr.buf[nr.pos]
		nr.pos++
		switch c {
		case '\n':
			c, nr.next = '\r', '\n'
		case '\r':
			nr.next = 0
		default:
			p[n] = c
			n++
			continue
		}
		p[n] = c
		n++
		if n == len(p) {
			nr.carry = true
			break
		}
		p[n] = nr.next
		n++
	}
	if nr.pos == nr.end && !nr.carry {
		return n, nr.err
	}
	return n, nil
}

// Decoder converts netascii back to the local line format, as a receiver
// does (RFC 1350, RFC 764): CR LF becomes LF, CR NUL becomes CR. A CR
// followed by any other byte is kept with that byte (lenient: such input
// is not netascii). A CR at the end of one block is held until the next
// shows what follows it. The zero value is ready to use.
type Decoder struct {
	cr bool // a CR was the last byte seen, not yet written
}

// Append appends src, decoded, to dst and returns it. It appends at most
// len(src)+1 bytes.
func (d *Decoder) Append(dst, src []byte) []byte {
	for _, c := range src {
		if d.cr {
			d.cr = false
			switch c {
			case '\n':
				dst = append(dst, '\n')
				continue
			case 0:
				dst = append(dst, '\r')
				continue
			default:
				dst = append(dst, '\r')
			}
		}
		if c == '\r' {
			d.cr = true
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// Flush appends what is held at the end of the input (a final lone CR) to
// dst and returns it.
func (d *Decoder) Flush(dst []byte) []byte {
	if d.cr {
		d.cr = false
		dst = append(dst, '\r')
	}
	return dst
}
