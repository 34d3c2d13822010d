package session

import (
	"strconv"
	"time"

	"github.com/tftpgw/tftpgw/internal/wire"
)

// params are the transfer parameters of one session after negotiation.
type params struct {
	blksize    int
	windowsize int
	timeout    time.Duration // retransmission timeout
	// clientTimeout is set when the client negotiated timeout: it is then
	// used exactly, never adapted.
	clientTimeout bool
	oack          []wire.Option // options to acknowledge, in request order; nil: no OACK
}

// negotiate applies RFC 2347 (only requested options are answered, unknown
// ones are omitted), RFC 2348 (blksize 8..65464, capped, never raised),
// RFC 2349 (timeout 1..255 echoed exactly; tsize from the content size,
// omitted when unknown or 0) and RFC 7440 (windowsize 1..65535, capped). An
// option with an invalid value is omitted, so the transfer falls back to
// the RFC 1350 default for it, and so is an option of c.Refuse.
func negotiate(opts []wire.Option, size int64, c *Config) params {
	p := params{blksize: wire.DefaultBlockSize, windowsize: 1, timeout: c.Timeout}
	for _, o := range opts {
		if c.Refuse != 0 && c.Refuse&OptionNamed(o.Name) != 0 {
			continue
		}
		switch o.Name {
		case "blksize":
			n, err := strconv.Atoi(o.Value)
			if err != nil || n < wire.MinBlockSize {
				continue
			}
			n = min(n, wire.MaxBlockSize, c.MaxBlockSize)
			p.blksize = n
			p.oack = append(p.oack, wire.Option{Name: o.Name, Value: strconv.Itoa(n)})
		case "timeout":
			n, err := strconv.Atoi(o.Value)
			if err != nil || n < 1 || n > wire.MaxTimeout {
				continue
			}
			p.timeout = time.Duration(n) * time.Second
			p.clientTimeout = true
			p.oack = append(p.oack, wire.Option{Name: o.Name, Value: o.Value})
		case "tsize":
			// An empty content's tsize is left out, as RFC 2347 lets a
			// server decline any option: curl takes "tsize 0" for an
			// invalid OACK and gives up without a word, so an empty file
			// could not be fetched with it. Without tsize it gets the
			// empty DATA 1 that says the same.
			if size <= 0 {
				continue
			}
			p.oack = append(p.oack, wire.Option{Name: o.Name, Value: strconv.FormatInt(size, 10)})
		case "windowsize":
			n, err := strconv.Atoi(o.Value)
			if err != nil || n < 1 || n > wire.MaxWindowSize {
				continue
			}
			n = min(n, c.MaxWindowSize)
			p.windowsize = n
			p.oack = append(p.oack, wire.Option{Name: o.Name, Value: strconv.Itoa(n)})
		}
	}
	return p
}
