package main

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// A boot script (-boot FILE) is one machine's boot sequence, one step a
// line, played in order by every machine:
//
//	probe NAME [OPTION...]          RRQ with tsize; expects an OACK with tsize, answers ERROR 8
//	get   NAME [OPTION...]          expects the whole file
//	miss  NAME [NAME...] [OPTION...] one RRQ per name; each expects ERROR 1 (file not found)
//
// OPTION is blksize=N, windowsize=N, timeout=N (requested as TFTP
// options), tsize (request tsize; probe always does) or size=N (the
// expected size: of the file for get, of the announced tsize for probe).
// A get that negotiated tsize must also receive exactly that many bytes.
// Text from # to the end of a line is a comment. Names may hold
// placeholders, expanded per machine (machine index n, from 0):
//
//	{n}      the machine index in decimal
//	{mac}    a MAC address derived from n, 52-54-00-xx-xx-xx (lower case, dashes)
//	{ip}     the machine's IPv4 address: its -src address, else 10.0.0.0 + n + 1
//	{hex}    {ip} in 8 upper-case hex digits (PXELINUX's C0A80A05)
//	{hex:K}  the first K (1..8) digits of {hex}
const scriptSyntax = `Boot script (-boot FILE): one step a line, # starts a comment.
  probe NAME [OPTION...]           RRQ with tsize: expects an OACK with tsize, answers ERROR 8
  get   NAME [OPTION...]           expects the whole file (exactly tsize bytes when tsize was negotiated)
  miss  NAME [NAME...] [OPTION...] one RRQ per name, each expecting ERROR 1 (file not found)
OPTION: blksize=N windowsize=N timeout=N tsize size=N (expected file size, or tsize for probe).
Placeholders in names, per machine n (0-based): {n} {mac} (52-54-00-xx-xx-xx) {ip} (the -src
address, else 10.0.0.0+n+1) {hex} ({ip} as 8 upper-case hex digits) {hex:K} (its first K digits).
`

// stepOp is what a step does.
type stepOp string

const (
	opProbe stepOp = "probe"
	opGet   stepOp = "get"
	opMiss  stepOp = "miss"
)

// step is one line of a boot script.
type step struct {
	line  int      // line number in the script, from 1
	op    stepOp   // probe, get or miss
	names []string // templates; one for probe and get
	opts  tftpclient.Options
	size  int64 // expected size (size=N), -1 if not given
}

// String is the step as the report shows it: op, names and options.
func (s step) String() string {
	var b strings.Builder
	b.WriteString(string(s.op))
	for _, n := range s.names {
		b.WriteString(" " + n)
	}
	if s.opts.BlockSize > 0 {
		fmt.Fprintf(&b, " blksize=%d", s.opts.BlockSize)
	}
	if s.opts.WindowSize > 0 {
		fmt.Fprintf(&b, " windowsize=%d", s.opts.WindowSize)
	}
	if s.opts.Timeout > 0 {
		fmt.Fprintf(&b, " timeout=%d", s.opts.Timeout)
	}
	if s.opts.TSize && s.op != opProbe {
		b.WriteString(" tsize")
	}
	if s.size >= 0 {
		fmt.Fprintf(&b, " size=%d", s.size)
	}
	return b.String()
}

// parseScript reads a boot script. Errors name the line.
func parseScript(r io.Reader) ([]step, error) {
	var steps []step
	sc := bufio.NewScanner(r)
	for ln := 1; sc.Scan(); ln++ {
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		s, err := parseStep(fields)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", ln, err)
		}
		s.line = ln
		steps = append(steps, s)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("no steps")
	}
	return steps, nil
}

func parseStep(fields []string) (step, error) {
	s := step{op: stepOp(strings.ToLower(fields[0])), size: -1}
	switch s.op {
	case opProbe, opGet, opMiss:
	default:
		return s, fmt.Errorf("unknown step %q (want probe, get or miss)", fields[0])
	}
	for _, f := range fields[1:] {
		key, val, isOpt := strings.Cut(f, "=")
		if !isOpt && strings.EqualFold(f, "tsize") {
			s.opts.TSize = true
			continue
		}
		if !isOpt {
			if err := checkTemplate(f); err != nil {
				return s, err
			}
			s.names = append(s.names, f)
			continue
		}
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return s, fmt.Errorf("%s: %q is not a number", key, val)
		}
		switch strings.ToLower(key) {
		case "blksize":
			if n < tftpclient.MinBlockSize || n > tftpclient.MaxBlockSize {
				return s, fmt.Errorf("blksize must be %d..%d", tftpclient.MinBlockSize, tftpclient.MaxBlockSize)
			}
			s.opts.BlockSize = int(n)
		case "windowsize":
			if n < 1 || n > tftpclient.MaxWindowSize {
				return s, fmt.Errorf("windowsize must be 1..%d", tftpclient.MaxWindowSize)
			}
			s.opts.WindowSize = int(n)
		case "timeout":
			if n < 1 || n > tftpclient.MaxTimeout {
				return s, fmt.Errorf("timeout must be 1..%d", tftpclient.MaxTimeout)
			}
			s.opts.Timeout = int(n)
		case "size":
			if s.op == opMiss {
				return s, fmt.Errorf("size= does not apply to miss")
			}
			if n < 0 {
				return s, fmt.Errorf("size must be >= 0")
			}
			s.size = n
		default:
			return s, fmt.Errorf("unknown option %q (want blksize=, windowsize=, timeout=, tsize or size=)", key)
		}
	}
	switch {
	case len(s.names) == 0:
		return s, fmt.Errorf("%s needs a file name", s.op)
	case s.op != opMiss && len(s.names) > 1:
		return s, fmt.Errorf("%s takes one file name, not %d (miss takes several)", s.op, len(s.names))
	}
	if s.op == opProbe {
		s.opts.TSize = true
	}
	return s, nil
}

// checkTemplate refuses an unknown or unterminated placeholder.
func checkTemplate(name string) error {
	_, err := expand(name, machine{})
	return err
}

// machine is what the placeholders of one machine expand to.
type machine struct {
	n  int
	ip netip.Addr // IPv4; the zero value for 10.0.0.0 + n + 1
}

// addr4 is the machine's {ip} as 4 bytes.
func (m machine) addr4() [4]byte {
	if m.ip.Is4() {
		return m.ip.As4()
	}
	v := uint32(10<<24) + uint32(m.n) + 1
	return [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

// expand replaces the placeholders of name for m.
func expand(name string, m machine) (string, error) {
	if !strings.Contains(name, "{") {
		return name, nil
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(name, '{')
		if i < 0 {
			b.WriteString(name)
			return b.String(), nil
		}
		b.WriteString(name[:i])
		j := strings.IndexByte(name[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("unterminated placeholder in %q", name)
		}
		ph := name[i+1 : i+j]
		name = name[i+j+1:]
		a := m.addr4()
		hex := fmt.Sprintf("%02X%02X%02X%02X", a[0], a[1], a[2], a[3])
		switch {
		case ph == "n":
			b.WriteString(strconv.Itoa(m.n))
		case ph == "mac":
			fmt.Fprintf(&b, "52-54-00-%02x-%02x-%02x", byte(m.n>>16), byte(m.n>>8), byte(m.n))
		case ph == "ip":
			fmt.Fprintf(&b, "%d.%d.%d.%d", a[0], a[1], a[2], a[3])
		case ph == "hex":
			b.WriteString(hex)
		case strings.HasPrefix(ph, "hex:"):
			k, err := strconv.Atoi(ph[4:])
			if err != nil || k < 1 || k > 8 {
				return "", fmt.Errorf("placeholder {%s}: want {hex:K} with K 1..8", ph)
			}
			b.WriteString(hex[:k])
		default:
			return "", fmt.Errorf("unknown placeholder {%s} (want {n}, {mac}, {ip}, {hex} or {hex:K})", ph)
		}
	}
}
