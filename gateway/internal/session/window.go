// The window: a ring of slots holding the blocks sent and not yet
// acknowledged (RFC 7440), sized from the client's share of window memory,
// and the sends of its blocks (from the slots, or from a file's pages).

package session

import (
	"errors"
	"strconv"
	"time"

	"github.com/tftpgw/tftpgw/internal/wire"
)

// sizeWindow sets the window's size in blocks: the windowsize negotiated,
// no more than the content needs, and no more than fits in the client's
// share of the window memory and in the server's budget now (the OACK then
// says the smaller windowsize). It reports false when not even one block
// fits. See package winmem for the rules.
func (s *Session) sizeWindow() bool {
	s.slotSize = wire.HeaderSize + s.p.blksize
	s.nslots = s.p.windowsize
	size := s.st.TransferSize
	if size < 0 && s.raw != nil { // netascii: each byte becomes two at most (LF to CR LF)
		if d := s.content.Size(); d >= 0 {
			size = 2 * d
		}
	}
	if size >= 0 {
		s.nslots = int(min(int64(s.nslots), size/int64(s.p.blksize)+1))
	}
	if s.zc != nil {
		return true // the blocks stay in the file
	}
	n := s.Host.FitWindow(s.nslots, s.slotSize)
	if n == 0 {
		return false
	}
	if n < s.nslots {
		s.nslots, s.p.windowsize = n, n
		for i := range s.p.oack {
			if s.p.oack[i].Name == "windowsize" {
				s.p.oack[i].Value = strconv.Itoa(n)
			}
		}
	}
	return true
}

// allocWindow takes the window's buffer from the server's window memory.
// It reports false when the client's share or the budget has no room left
// (taken since sizeWindow by sessions that started meanwhile).
func (s *Session) allocWindow() bool {
	if s.zc == nil {
		s.buf = s.Host.GetWindow(s.nslots * s.slotSize)
		if s.buf == nil {
			return false
		}
		s.win = *s.buf
	}
	s.slotLen = make([]int, s.nslots)
	return true
}

// resolve maps a 16-bit block number of an ACK to the absolute block
// within (acked, sentTo], the only blocks it can newly acknowledge.
// Block numbers roll over from 65535 to 0.
func (s *Session) resolve(blk uint16) (uint64, bool) {
	abs := s.acked + uint64(blk-uint16(s.acked))
	if abs <= s.acked || abs > s.sentTo {
		return 0, false
	}
	return abs, true
}

// slotIndex is where block abs lives in the window ring. At most nslots
// blocks are in flight: the window, or all blocks of a smaller content.
func (s *Session) slotIndex(abs uint64) int { return int(abs % uint64(s.nslots)) }

func (s *Session) slot(abs uint64) []byte {
	i := s.slotIndex(abs) * s.slotSize
	return s.win[i : i+s.slotSize]
}

// resendWindow restarts the window right after the last acknowledged
// block and remembers how far the restart went. The session reads next.
func (s *Session) resendWindow() {
	s.sendFrom(s.acked+1, true)
	s.recover = s.sentTo
}

// sendFrom sends the blocks of the window from block from on.
//
// Blocks in consecutive slots leave in one send when the socket does UDP
// segmentation offload (GSO): the kernel cuts the run into datagrams of
// one slot each (the final block, shorter, can only end a run).
//
// With hold, the session's next step is a read of the socket: the
// window's last datagram may then be handed to it (udp.Conn.SendBeforeRead), which
// sends it and reads in one step.
func (s *Session) sendFrom(from uint64, hold bool) {
	if s.st.TimeToFirstData == 0 && s.acked < s.read {
		s.st.TimeToFirstData = max(time.Since(s.Start), 1)
	}
	if s.zc != nil {
		s.sendFromFile(from)
		return
	}
	for abs := max(from, s.acked+1); abs <= s.read; {
		i := s.slotIndex(abs)
		n := 1
		if s.gsoSegs > 1 {
			n = min(int(s.read-abs+1), s.nslots-i, s.gsoSegs)
		}
		last := abs + uint64(n) - 1
		start := i * s.slotSize
		run := s.win[start : start+(n-1)*s.slotSize+s.slotLen[s.slotIndex(last)]]
		if hold && n == 1 && last == s.read && s.gsoSegs <= 1 && s.Conn.SendBeforeRead(run) {
			// The window's last datagram: the read that waits for its
			// ACK sends it (a send error is logged there). Not with
			// segmentation on, whose refusals must be seen here (below).
		} else if _, err := s.Conn.WriteToUDPAddrPort(run, s.Client); err != nil {
			if s.gsoSegs > 1 {
				// The kernel refused the send with segmentation on: with
				// UDP_SEGMENT set it sends no datagram larger than the
				// path's MTU, single or segmented (a block larger than the
				// MTU). This run and the rest go one by one, without it.
				s.Config.Logger.Debug("segmented send failed; sending datagrams one by one", "session", s.ID, "err", err)
				s.gsoSegs = 0
				s.Conn.DisableGSO()
				continue
			}
			s.Config.Logger.Debug("send failed", "session", s.ID, "err", err)
		}
		s.st.PacketsSent += int64(n)
		s.st.BytesSent += int64(len(run) - n*wire.HeaderSize)
		for b := abs; b <= last; b++ {
			if b <= s.sentTo {
				s.st.Retransmits++
			} else {
				s.sentTo = b
			}
		}
		abs = last + 1
	}
}

// sendFromFile is sendFrom for blocks sent straight from the file (see
// fileSender).
func (s *Session) sendFromFile(from uint64) {
	for abs := max(from, s.acked+1); abs <= s.read; abs++ {
		n := s.slotLen[s.slotIndex(abs)] - wire.HeaderSize
		if err := s.zc.Send(uint16(abs), int64(abs-1)*int64(s.p.blksize), n); err != nil {
			if errors.Is(err, ErrFileChanged) {
				s.sendErr = err
				return
			}
			s.Config.Logger.Debug("send failed", "session", s.ID, "err", err)
		}
		s.st.PacketsSent++
		s.st.BytesSent += int64(n)
		if abs <= s.sentTo {
			s.st.Retransmits++
		} else {
			s.sentTo = abs
		}
	}
}
