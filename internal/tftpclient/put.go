package tftpclient

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tftpgw/tftpgw/internal/wire"
)

// Put uploads the content of r to server ("host:port") as file: a TFTP
// write request (WRQ). size is the content's length in bytes, or -1 if
// unknown; it is only used as the value of the tsize option when o.TSize
// is set (no tsize is sent for an unknown size). In netascii mode the
// size is sent as given, before translation.
//
// It sends the WRQ with the options of o from a fresh UDP socket of the
// server's address family, locks onto the source of the first reply (the
// server's TID), validates an OACK as [Get] does, or takes an ACK 0 as
// the RFC 1350 defaults (512-byte blocks, lock-step). It then sends DATA
// in windows of the negotiated windowsize (RFC 7440): an ACK of block n
// acknowledges every block up to n and the next window starts after n,
// so an ACK inside the window (a gap) resends from n+1. An ACK that
// acknowledges nothing new is ignored: only the timer retransmits, never a
// duplicate ACK (the Sorcerer's Apprentice bug, RFC 1123 4.2.3.1). On
// timeout the window is sent again, up to o.Retries times without
// progress. Block numbers roll over from 65535 to 0. The last block is
// shorter than the block size, an empty DATA when the content is a
// multiple of it (and DATA 1 is empty for empty content); Put returns
// when that block is acknowledged.
//
// In netascii mode the content is translated on the way out: LF becomes
// CR LF and CR becomes CR NUL (RFC 1350, RFC 764).
//
// An ERROR from the server is returned as *Error. When ctx is cancelled
// the server is sent ERROR 0 "cancelled" and ctx.Err() is returned. If r
// fails, the server is sent ERROR 0 and the read error is returned.
func Put(ctx context.Context, server, file string, r io.Reader, size int64, o Options) (res Result, err error) {
	res.TSize = -1
	if size < -1 {
		return res, fmt.Errorf("tftpclient: size %d: want -1 (unknown) or more", size)
	}
	t, err := newTransfer(ctx, server, file, o, wire.OpWRQ, size)
	if err != nil {
		return res, err
	}
	defer t.conn.Close()
	defer t.startCancel(ctx)()
	if strings.EqualFold(o.Mode, "netascii") { // the mode was validated
		r = &netasciiEncoder{r: r}
	}
	s := &sender{t: t, r: r, res: &res}
	t.sent = time.Now()
	defer func() {
		res.Duration = time.Since(t.sent)
		res.ServerAddr = t.peer
		res.Retransmits = t.retransmits
		if s.started {
			res.BlockSize, res.WindowSize = s.blksize, s.window
		}
	}()
	if err := t.send(t.rrq); err != nil {
		return res, err
	}
	return res, s.run(ctx)
}

// sender is the state of a Put once the WRQ is sent.
//
// Blocks are numbered by index from 1 (not rolled over); the wire block
// number is the index modulo 65536. The blocks of the current window,
// base..base+window-1, are kept in a ring of window packets, block i in
// slot i % window, so a window can be sent again.
type sender struct {
	t   *transfer
	r   io.Reader
	res *Result

	started bool // the server answered the WRQ: blksize and window are set
	blksize int
	window  int

	ring  [][]byte // packets (header and payload) by slot
	base  int64    // first unacknowledged block
	sent  int64    // highest block sent so far
	read  int64    // highest block read from r into the ring
	final int64    // index of the last block, 0 while unknown
}

// run drives the transfer until the final block is acknowledged.
func (s *sender) run(ctx context.Context) error {
	t := s.t
	for {
		p, err := t.next(ctx)
		if err != nil {
			return err
		}
		switch opcode(p) {
		case wire.OpERROR:
			return serverError(p)

		case wire.OpOACK:
			if s.started {
				// A retransmitted OACK: the server has not seen DATA 1 yet.
				// Like a duplicate ACK 0, it triggers nothing; the timer
				// resends the window.
				s.res.Duplicates++
				continue
			}
			m, err := t.negotiate(p)
			if err != nil {
				return t.fail(wire.CodeOptionNegotiation, "invalid OACK", fmt.Errorf("%w: %v", ErrBadOACK, err))
			}
			s.res.Negotiated = m
			blksize, window := wire.DefaultBlockSize, 1
			if v, ok := m["blksize"]; ok {
				blksize, _ = strconv.Atoi(v) // validated by negotiate
			}
			if v, ok := m["windowsize"]; ok {
				window, _ = strconv.Atoi(v)
			}
			if v, ok := m["tsize"]; ok {
				s.res.TSize, _ = strconv.ParseInt(v, 10, 64)
			}
			if err := s.start(blksize, window); err != nil {
				return err
			}

		case wire.OpACK:
			block, _ := wire.ParseAck(p) // next returns at least a header
			if !s.started {
				// ACK 0 (answers checked it): the server ignored the options.
				if err := s.start(wire.DefaultBlockSize, 1); err != nil {
					return err
				}
				continue
			}
			done, err := s.ack(block)
			if done || err != nil {
				return err
			}

		default:
			return t.fail(wire.CodeIllegalOperation, "illegal TFTP operation",
				fmt.Errorf("%w: opcode %d in answer to a WRQ", ErrProtocol, opcode(p)))
		}
	}
}

// start begins the DATA phase with the block and window sizes in use.
func (s *sender) start(blksize, window int) error {
	s.started = true
	s.blksize, s.window = blksize, window
	s.res.TimeToFirst = time.Since(s.t.sent)
	// The ring holds one window; a window larger than the whole content
	// would allocate for blocks that never exist, so slots are made on
	// first use.
	s.ring = make([][]byte, window)
	s.base = 1
	s.t.resend = s.sendWindow // transfer.next counts what it resends
	s.t.progress()
	_, err := s.sendWindow() // nothing was sent before: no resends
	return err
}

// ack handles an ACK of block (wire number) once the DATA phase has
// started. It reports whether the final block is acknowledged.
func (s *sender) ack(block uint16) (done bool, err error) {
	// The index of block among base-1 .. base-1+65535.
	idx := s.base - 1 + int64(block-uint16(s.base-1))
	if idx == s.base-1 || idx > s.sent {
		// Nothing new: a duplicate (or a late ACK of an earlier window, or
		// a bogus one). Never answered: only the timer resends.
		s.res.Duplicates++
		return false, nil
	}
	s.t.progress()
	if idx == s.final {
		return true, nil
	}
	s.base = idx + 1
	n, err := s.sendWindow()
	s.t.retransmits += int64(n) // a gap: blocks after idx were sent before
	return false, err
}

// sendWindow sends the window that starts at base: blocks already sent
// are sent again (counted as retransmissions), the others are read from r
// first. It returns how many packets it sent again.
func (s *sender) sendWindow() (resent int, err error) {
	end := s.base + int64(s.window) - 1
	for i := s.base; i <= end && (s.final == 0 || i <= s.final); i++ {
		if i > s.read {
			if err := s.readBlock(i); err != nil {
				return resent, err
			}
		}
		if i <= s.sent {
			resent++
		}
		if err := s.sendBlock(i); err != nil {
			return resent, err
		}
	}
	return resent, nil
}

// readBlock reads block i (the block after s.read) from r into its slot.
func (s *sender) readBlock(i int64) error {
	slot := int(i % int64(s.window))
	if s.ring[slot] == nil {
		s.ring[slot] = make([]byte, wire.HeaderSize+s.blksize)
	}
	pkt := s.ring[slot][:wire.HeaderSize+s.blksize]
	n, err := io.ReadFull(s.r, pkt[wire.HeaderSize:])
	switch {
	case err == nil:
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		s.final = i // short (maybe empty): the last block
	default:
		return s.t.fail(wire.CodeNotDefined, "read failed", fmt.Errorf("tftpclient: read: %w", err))
	}
	binary.BigEndian.PutUint16(pkt, uint16(wire.OpDATA))
	binary.BigEndian.PutUint16(pkt[2:], uint16(i))
	s.ring[slot] = pkt[:wire.HeaderSize+n]
	s.read = i
	s.res.Size += int64(n)
	return nil
}

// sendBlock sends block i, which is in the ring.
func (s *sender) sendBlock(i int64) error {
	if err := s.t.send(s.ring[int(i%int64(s.window))]); err != nil {
		return err
	}
	s.res.Packets++
	s.sent = max(s.sent, i)
	return nil
}

// netasciiEncoder translates to netascii (RFC 764, as RFC 1350 asks):
// LF becomes CR LF and CR becomes CR NUL.
type netasciiEncoder struct {
	r          io.Reader
	buf        [4096]byte
	in         []byte // unread input in buf
	err        error  // r's error, returned once in is drained
	pending    byte   // second byte of a pair not yet returned
	hasPending bool
}

func (e *netasciiEncoder) Read(p []byte) (int, error) {
	n := 0
	if e.hasPending && len(p) > 0 {
		p[0], e.hasPending = e.pending, false
		n = 1
	}
	for n < len(p) {
		if len(e.in) == 0 {
			if e.err != nil || n > 0 {
				break // return what there is rather than block
			}
			m, err := e.r.Read(e.buf[:])
			e.in, e.err = e.buf[:m], err
			if m == 0 && err == nil {
				return 0, nil
			}
			continue
		}
		c := e.in[0]
		e.in = e.in[1:]
		var second byte
		switch c {
		case '\n':
			second = '\n'
		case '\r':
			second = 0
		default:
			p[n] = c
			n++
			continue
		}
		p[n] = '\r'
		n++
		if n < len(p) {
			p[n] = second
			n++
		} else {
			e.pending, e.hasPending = second, true
		}
	}
	if n == 0 && len(p) > 0 && e.err != nil {
		return 0, e.err // in is drained: the loop ran dry
	}
	return n, nil
}
