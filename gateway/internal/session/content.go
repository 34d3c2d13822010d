// Reading the content into the window, and the checks that a client is
// never given a file the edge knows to be wrong: a content shorter or
// longer than its size, a file rewritten under the transfer.

package session

import (
	"fmt"
	"io"
	"time"

	"github.com/tftpgw/tftpgw/internal/wire"
)

// fill reads blocks from the content until the window after the last
// acknowledged block is full or the content has ended.
func (s *Session) fill() error {
	limit := s.acked + uint64(s.nslots)
	if s.read >= limit || s.last != 0 && s.read >= s.last {
		return nil
	}
	if s.zc != nil {
		return s.planBlocks(limit)
	}
	t := s.beginRead() // each block's read is marked for the watchdog
	flushed := t
	defer s.readStart.Store(0)
	size := s.st.TransferSize // -1 when unknown (and in netascii mode)
	for first := true; s.read < limit && (s.last == 0 || s.read < s.last); first = false {
		abs := s.read + 1
		if !first {
			t = s.markRead()
		}
		if abs > s.sentTo+1 && t-flushed >= flushAfter {
			// Blocks are waiting, and the content has kept them waiting
			// for a while: they go now rather than when the window is
			// full (a content delivering a block every few seconds would
			// otherwise starve the client of the whole window).
			s.sendFrom(s.sentTo+1, false)
			s.lastSend = time.Now()
			flushed = t
		}
		pkt := s.slot(abs)
		wire.AppendDataHeader(pkt[:0], uint16(abs))
		p := pkt[wire.HeaderSize:]
		if size >= 0 {
			p = p[:min(int64(len(p)), size-s.got)] // no further than the size
		}
		n, err := s.readBlock(p)
		s.got += int64(n)
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			if size >= 0 && s.got < size {
				return fmt.Errorf("%w: the content ended at byte %d of its size %d", ErrFileChanged, s.got, size)
			}
			if err := s.checkEnded(); err != nil {
				return err
			}
			s.last = abs
		case err != nil:
			return fmt.Errorf("gateway: reading content: %w", err)
		case size >= 0 && n < s.p.blksize: // the size is reached: the final block
			if err := s.expectEnd(); err != nil {
				return err
			}
			if err := s.checkEnded(); err != nil {
				return err
			}
			s.last = abs
		case size >= 0 && s.got == size && !s.eof:
			// A full block ends the content: its end is checked before
			// this block goes out (the empty final block follows), so
			// that a content failing at its end (a digest that does not
			// match) never leaves the client with every byte.
			if err := s.expectEnd(); err != nil {
				return err
			}
			if err := s.checkEnded(); err != nil {
				return err
			}
		}
		s.slotLen[s.slotIndex(abs)] = wire.HeaderSize + n
		s.read = abs
	}
	if s.stalled() { // a read came back after the watchdog gave up on it
		return errStalled
	}
	return nil
}

// flushAfter is how long a fill may keep blocks it has read before it
// sends them: far below any client's timer, far above the time a window
// takes to read from a content that has its bytes at hand (a few
// milliseconds for 64 blocks of 64 KiB from a gRPC stream).
const flushAfter = 10 * time.Millisecond

// planBlocks takes the blocks up to limit into the window of a session
// whose blocks are sent from the file: their lengths follow from its size,
// and their pages are faulted in.
func (s *Session) planBlocks(limit uint64) error {
	bs, size := int64(s.p.blksize), s.st.TransferSize // the file's, in octet mode
	from := int64(s.read) * bs
	for s.read < limit && (s.last == 0 || s.read < s.last) {
		abs := s.read + 1
		n := min(bs, max(size-int64(abs-1)*bs, 0))
		if n < bs {
			s.last = abs
		}
		s.slotLen[s.slotIndex(abs)] = wire.HeaderSize + int(n)
		s.read = abs
	}
	return s.zc.Prepare(from, min(int64(s.read)*bs, size))
}

// maxEmptyReads is how many (0, nil) reads in a row a content may return
// before it is taken as broken (bufio's rule).
const maxEmptyReads = 100

// readBlock fills p from the content like io.ReadFull, but fails with
// io.ErrNoProgress on a content that keeps returning nothing (a stall is
// the watchdog's, see beginRead).
//
// A content may return its last bytes together with io.EOF (io.Reader
// allows it). When they complete the block, the block is not the final
// one: it is full, so the client expects more, and the next read returns
// io.EOF for the empty final block (RFC 1350 section 6).
func (s *Session) readBlock(p []byte) (int, error) {
	if s.eof {
		return 0, io.EOF
	}
	n, empty := 0, 0
	for n < len(p) {
		m, err := s.r.Read(p[n:])
		n += m
		switch {
		case err == io.EOF:
			switch {
			case n == 0:
				return 0, io.EOF
			case n == len(p):
				s.eof = true
				return n, nil
			}
			return n, io.ErrUnexpectedEOF
		case err != nil:
			return n, err
		case m == 0:
			if empty++; empty >= maxEmptyReads {
				return n, io.ErrNoProgress
			}
		default:
			empty = 0
		}
	}
	return n, nil
}

// expectEnd checks that a content whose declared size has been read
// ends there.
func (s *Session) expectEnd() error {
	if s.eof {
		return nil
	}
	var one [1]byte
	for range maxEmptyReads {
		m, err := s.r.Read(one[:])
		switch {
		case m > 0:
			return fmt.Errorf("%w: the content is longer than its size %d", ErrFileChanged, s.got)
		case err == io.EOF:
			s.eof = true
			return nil
		case err != nil:
			return fmt.Errorf("gateway: reading content: %w", err)
		}
	}
	return fmt.Errorf("gateway: reading content: %w", io.ErrNoProgress)
}

// checkEnded checks, once the content has ended and before its final
// block is sent, that it was the content that began: in netascii mode, as
// long as it declared (counted before the conversion), and a file of
// FileServer's still the file opened (a rewrite in place of the same
// length would otherwise go out as a mix of both).
func (s *Session) checkEnded() error {
	if s.raw != nil {
		if d := s.content.Size(); d >= 0 && s.raw.n != d {
			return fmt.Errorf("%w: the content had %d bytes of its size %d", ErrFileChanged, s.raw.n, d)
		}
	}
	if fc, ok := s.content.(FileContent); ok {
		return fc.Unchanged()
	}
	return nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
