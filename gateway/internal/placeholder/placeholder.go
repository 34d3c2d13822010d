// Package placeholder is the {name} syntax that rewrite rules'
// replacements (package rewrite) and upload paths (package upload) share,
// and the forms of the client's address they write: {client_ip} and
// {client_ip_hex}, tftp-hpa's \i and \x.
package placeholder

import (
	"fmt"
	"net/netip"
	"strings"
)

// Scan reads the brace construct that starts at s[i], a '{' or a '}':
// a doubled brace is a literal one (lit is set), "{name}" a placeholder
// (name is set). It returns how many bytes it read. A brace that opens or
// closes nothing is an error worded for the operator; so is a name that
// known does not list (known(name) reports whether it is one, and names
// lists them for the message).
func Scan(s string, i int, known func(string) bool, names string) (lit byte, name string, n int, err error) {
	c := s[i]
	if i+1 < len(s) && s[i+1] == c {
		return c, "", 2, nil
	}
	if c == '}' {
		return 0, "", 0, fmt.Errorf("the } at byte %d closes nothing (write }} for a literal brace)", i)
	}
	end := strings.IndexByte(s[i:], '}')
	if end < 0 {
		return 0, "", 0, fmt.Errorf("the { at byte %d is not closed (write {{ for a literal brace)", i)
	}
	name = s[i+1 : i+end]
	if !known(name) {
		return 0, "", 0, fmt.Errorf("unknown placeholder {%s} (known: %s; write {{ for a literal brace)", name, names)
	}
	return 0, name, end + 1, nil
}

// AppendClientIP appends the client's address a as {client_ip} writes it:
// an IPv4 address (also one mapped into IPv6) dotted, an IPv6 address in
// RFC 5952 form, without a zone.
func AppendClientIP(b []byte, a netip.Addr) []byte {
	return a.Unmap().WithZone("").AppendTo(b)
}

// AppendClientIPHex appends the client's address a as {client_ip_hex}
// writes it, as tftp-hpa's \x: upper-case hex digits, 8 for IPv4 (also
// mapped into IPv6), 32 for IPv6.
func AppendClientIPHex(b []byte, a netip.Addr) []byte {
	const hexDigits = "0123456789ABCDEF"
	a = a.Unmap()
	if a.Is4() {
		for _, x := range a.As4() {
			b = append(b, hexDigits[x>>4], hexDigits[x&0xf])
		}
		return b
	}
	for _, x := range a.As16() {
		b = append(b, hexDigits[x>>4], hexDigits[x&0xf])
	}
	return b
}
