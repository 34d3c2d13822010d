package gateway

import (
	"errors"
	"fmt"
	"strings"
)

var (
	errPathEscapes = errors.New("gateway: path escapes the root")
	errPathEmpty   = errors.New("gateway: empty path")
	errPathNUL     = errors.New("gateway: NUL byte in path")
)

// CleanPath normalises a requested filename the way the server does before
// a [Handler] sees it: trailing NUL, 0xFF and control bytes (garbage some
// PXE ROMs append) are dropped, backslashes become slashes, repeated and
// leading separators are removed and "." elements vanish. A ".." element
// is resolved against the elements before it; one that would climb above
// the root is an error, as are an empty result and an embedded NUL.
// Cleaning a clean path changes nothing.
func CleanPath(raw string) (string, error) {
	p, err := cleanOnce(raw)
	// Garbage before a trailing separator ("a\t/") ends the result once
	// the separator is gone: cleaning again would drop it (and maybe the
	// "." or ".." it leaves). Clean until nothing changes, so that a
	// path cleaned twice (by rewrite rules, or an upload's placement) is
	// the path cleaned once.
	for err == nil && isGarbage(p[len(p)-1]) {
		p, err = cleanOnce(p)
	}
	return p, err
}

// isGarbage reports a byte that CleanPath drops from the end of a name.
func isGarbage(c byte) bool { return c < 0x20 || c == 0x7f || c == 0xff }

func cleanOnce(raw string) (string, error) {
	end := len(raw)
	for end > 0 {
		if isGarbage(raw[end-1]) {
			end--
			continue
		}
		break
	}
	s := raw[:end]
	if strings.IndexByte(s, 0) >= 0 {
		return "", errPathNUL
	}
	s = strings.ReplaceAll(s, `\`, "/")
	elems := make([]string, 0, strings.Count(s, "/")+1)
	for e := range strings.SplitSeq(s, "/") {
		switch e {
		case "", ".":
		case "..":
			if len(elems) == 0 {
				return "", errPathEscapes
			}
			elems = elems[:len(elems)-1]
		default:
			elems = append(elems, e)
		}
	}
	if len(elems) == 0 {
		return "", errPathEmpty
	}
	return strings.Join(elems, "/"), nil
}

// refusePath is the error a client gets for a path CleanPath refused with
// err (an escape or a NUL byte is an access violation, the rest not
// found), and the cause to log, naming raw as it was asked for, quoted
// (%q escapes controls, bidi overrides and bytes that are not UTF-8).
func refusePath(err error, raw string) (*Error, error) {
	cause := fmt.Errorf("%w: %q", err, raw)
	if errors.Is(err, errPathEscapes) || errors.Is(err, errPathNUL) {
		return &Error{Code: ErrAccessViolation, Message: "access violation"}, cause
	}
	return &Error{Code: ErrFileNotFound, Message: "file not found"}, cause
}
