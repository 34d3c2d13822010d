package gateway

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// PortRange is a range of UDP ports, First to Last inclusive, for the
// sessions' own sockets (see [Server.PortRange]). The zero value is no
// range: the kernel picks any free port.
//
// Its text form, read by UnmarshalText (a command's flag, a configuration
// file), is "LO-HI", such as "20000-20999", or a single port "N"; the
// empty text is the zero value.
type PortRange struct {
	First, Last uint16
}

// IsZero reports whether r is the zero value: no range.
func (r PortRange) IsZero() bool { return r == PortRange{} }

// Len is the number of ports of r; 0 for the zero value.
func (r PortRange) Len() int {
	if r.IsZero() || r.First > r.Last {
		return 0
	}
	return int(r.Last) - int(r.First) + 1
}

// Contains reports whether port is in r.
func (r PortRange) Contains(port uint16) bool {
	return !r.IsZero() && port >= r.First && port <= r.Last
}

// String returns r's text form: "LO-HI", "N" for a range of one port, ""
// for the zero value.
func (r PortRange) String() string {
	switch {
	case r.IsZero():
		return ""
	case r.First == r.Last:
		return strconv.Itoa(int(r.First))
	}
	return strconv.Itoa(int(r.First)) + "-" + strconv.Itoa(int(r.Last))
}

// MarshalText returns r's text form (see [PortRange.String]).
func (r PortRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText sets r from "LO-HI" or "N" (ports 1 to 65535, LO at most
// HI), or to the zero value from the empty text. On an error r is left as
// it was.
func (r *PortRange) UnmarshalText(b []byte) error {
	s := string(b)
	if s == "" {
		*r = PortRange{}
		return nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	first, err := parsePort(lo)
	if err != nil {
		return fmt.Errorf("port range %q: %w; want LO-HI (such as 20000-20999) or one port", s, err)
	}
	last := first
	if isRange {
		if last, err = parsePort(hi); err != nil {
			return fmt.Errorf("port range %q: %w; want LO-HI (such as 20000-20999) or one port", s, err)
		}
	}
	v := PortRange{First: first, Last: last}
	if err := v.check(); err != nil {
		return fmt.Errorf("port range %q: %w", s, err)
	}
	*r = v
	return nil
}

// parsePort parses a port number, 1 to 65535, in decimal.
func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port (1 to 65535)", s)
	}
	return uint16(n), nil
}

// check reports what makes r, not the zero value, unusable: port 0 (the
// zero value alone means "any port") or a first port above the last.
func (r PortRange) check() error {
	switch {
	case r.First == 0 || r.Last == 0:
		return errors.New("port 0 is not a port to bind (leave the range empty for any port)")
	case r.First > r.Last:
		return fmt.Errorf("first port %d is above last port %d", r.First, r.Last)
	}
	return nil
}
