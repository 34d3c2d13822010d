package jsonlog

import (
	"io"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Escaping returns a writer for a [slog.JSONHandler]'s output that writes
// every character the text format escapes as a JSON \uXXXX escape, so that
// a JSON line holds printable characters only, as a text line does. The
// JSON handler escapes only the C0 controls, '"', '\\', U+2028 and U+2029,
// and writes the rest raw: a file name sent by a TFTP client could put C1
// controls (U+0085, U+009B, which some terminals act on), bidirectional
// overrides (U+202E, which reverse what follows on screen), DEL or other
// invisible characters into the log. Which characters are escaped is
// [strconv.IsPrint]'s answer, the rule of the text format's quoting.
//
// The escapes are JSON's own, so a decoder reads back the very characters
// that were logged. (Bytes that are not UTF-8 cannot be held by a JSON
// string: the handler writes them as U+FFFD.)
//
// The handler writes each record in one Write call; characters other than
// ASCII occur only inside its strings, where an escape means the same.
func Escaping(w io.Writer) io.Writer { return escapingWriter{w} }

type escapingWriter struct{ w io.Writer }

func (e escapingWriter) Write(p []byte) (int, error) {
	i := firstUnprintable(p)
	if i < 0 {
		return e.w.Write(p)
	}
	buf := make([]byte, 0, len(p)+32)
	buf = append(buf, p[:i]...)
	for i < len(p) {
		b := p[i]
		if b < utf8.RuneSelf {
			if b == 0x7f {
				buf = append(buf, `\u007f`...)
			} else {
				buf = append(buf, b)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(p[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			buf = append(buf, `\ufffd`...)
		case strconv.IsPrint(r):
			buf = append(buf, p[i:i+n]...)
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			buf = appendUEscape(appendUEscape(buf, r1), r2)
		default:
			buf = appendUEscape(buf, r)
		}
		i += n
	}
	if _, err := e.w.Write(buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// firstUnprintable returns the index of the first byte of p that starts a
// character to escape, or -1.
func firstUnprintable(p []byte) int {
	for i := 0; i < len(p); {
		b := p[i]
		if b < utf8.RuneSelf {
			if b == 0x7f {
				return i
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && n == 1 || !strconv.IsPrint(r) {
			return i
		}
		i += n
	}
	return -1
}

func appendUEscape(b []byte, r rune) []byte {
	const hex = "0123456789abcdef"
	return append(b, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
}
