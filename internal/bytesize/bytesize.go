// Package bytesize is a flag.Value for a number of bytes written with an
// optional binary suffix, shared by the commands' size flags (tftpgw's
// -cache-size, tftp-backend's -digest-sync-max).
package bytesize

import (
	"fmt"
	"strconv"
	"strings"
)

// Size is a number of bytes that reads and prints with an optional binary
// suffix: K, KiB, M, MiB, G, GiB (case-insensitive) or B.
type Size int64

// String prints the size with the largest suffix that divides it.
func (b *Size) String() string {
	n := int64(*b)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// Set parses s: a whole number of bytes, with an optional suffix.
func (b *Size) Set(s string) error {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("want a number of bytes such as 67108864 or 64MiB, not %q", s)
	}
	*b = Size(n * mult)
	return nil
}
