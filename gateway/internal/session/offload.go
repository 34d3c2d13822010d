// Lock-step blocks answered by the transport: a single-port session whose
// content has its bytes at hand lets the listener's read loop answer
// each ACK with the next block, without waking the session's goroutine
// (udp.Conn.Offload).

package session

import (
	"fmt"
	"time"

	"github.com/tftpgw/tftpgw/internal/wire"
)

// atHandReader is a content that can give its next bytes without waiting
// (gateway.AtHandContent).
type atHandReader interface {
	// ReadAtHand fills all of p and reports true, or reads nothing and
	// reports false.
	ReadAtHand(p []byte) bool
}

// offloadable reports whether the transfer is where Respond can take
// over: lock-step, the client has answered, the block sent is the last
// one read and the one awaited, and the content's end is not seen yet
// (the end, with its checks, is the session's own).
func (s *Session) offloadable() bool {
	return s.atHand != nil && s.answered && s.sendErr == nil && s.panicked == nil && s.last == 0 &&
		s.read == s.sentTo && s.acked+1 == s.sentTo
}

// Respond implements udp.Responder: it answers the ACK of the block sent
// with the next block, when that block is at hand and not the final one,
// as the transfer loop would (the stats, the round-trip sample, the
// timers and the retry count move the same way), and returns it with the
// read deadline it sets. Anything else (a duplicate ACK, an ERROR, a
// block not at hand, the content's last bytes) is left to the session:
// nothing is changed, and its read returns the packet.
//
// It runs on the transport's goroutine, which has nothing to catch a
// panic: a panic of the content's ReadAtHand is recovered here and left
// for the session, which ends with ERROR 0 as for a panic of Read.
func (s *Session) Respond(pkt []byte) (reply []byte, deadline time.Time, ok bool) {
	defer func() {
		if v := recover(); v != nil {
			s.panicked = fmt.Errorf("gateway: panic: %v", v)
			reply, deadline, ok = nil, time.Time{}, false
		}
	}()
	blk, err := wire.ParseAck(pkt)
	if err != nil || blk != uint16(s.sentTo) || s.acked+1 != s.sentTo || s.Ctx.Err() != nil {
		return nil, time.Time{}, false
	}
	bs := s.p.blksize
	if s.got+int64(bs) >= s.st.TransferSize {
		return nil, time.Time{}, false // the final block, or a full one that ends the content
	}
	abs := s.sentTo
	ackedLen := s.slotLen[s.slotIndex(abs)]
	pkt = s.slot(abs + 1)[:wire.HeaderSize+bs] // may be abs's slot: abs is acknowledged
	if !s.atHand.ReadAtHand(pkt[wire.HeaderSize:]) {
		return nil, time.Time{}, false
	}
	now := time.Now()
	s.st.BytesAcked += int64(ackedLen - wire.HeaderSize)
	s.lastAck = now
	s.rto.acked(now, abs)
	s.acked = abs
	s.retries = 0

	wire.AppendDataHeader(pkt[:0], uint16(abs+1))
	s.got += int64(bs)
	s.slotLen[s.slotIndex(abs+1)] = len(pkt)
	s.read, s.sentTo = abs+1, abs+1
	s.st.PacketsSent++
	s.st.BytesSent += int64(bs)
	s.lastSend = now
	s.rto.sent(now, s.read)
	s.giveUpAt = now.Add(s.readLimit())
	s.deadline = now.Add(s.rto.current())
	s.armed = s.deadline
	return pkt, s.deadline, true
}
