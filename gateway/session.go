package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/tftpgw/tftpgw/gateway/internal/netascii"
	"github.com/tftpgw/tftpgw/gateway/internal/wire"
)

// sessionConn is the session's own UDP socket (its transfer ID).
// *net.UDPConn implements it; tests substitute fakes.
type sessionConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	SetReadDeadline(t time.Time) error
	Close() error
}

// deferredSender is a sessionConn that can hold a datagram for the client
// until the session's next read, which sends it and then waits for the
// answer: the read then does not first look at a queue that cannot hold
// the answer yet (one system call less per block in lock-step).
type deferredSender interface {
	// sendBeforeRead holds b, which must stay unchanged until the next
	// read or write, for that call to send first.
	sendBeforeRead(b []byte)
	// takeSendErr returns, and forgets, the error of the last held send.
	takeSendErr() error
}

// queuedReader is a sessionConn that can take a datagram already waiting
// for it without waiting, past its read deadline too (net's reads report
// the deadline first).
type queuedReader interface {
	readQueued(b []byte) (int, netip.AddrPort, bool)
}

const (
	recvBufSize    = wire.MaxRequestSize + wire.HeaderSize // ACKs and ERRORs; longer ones are cut
	scratchBufSize = 128                                   // outgoing ERRORs
)

// errShutdown ends sessions that are still running when a forced shutdown
// comes.
var errShutdown = &Error{Code: ErrNotDefined, Message: "server shutting down"}

// errFileChanged ends a session whose content turned out shorter or
// longer than the size it declared (and told the client in tsize), or
// whose file is no longer the one opened: a file truncated or rewritten
// under the transfer, or a backend's mistake.
var errFileChanged = &Error{Code: ErrNotDefined, Message: "file changed while being sent"}

// errStalled is the cause the read watchdog cancels a session with, and
// errStalledReply what the client is told.
var (
	errStalled      = errors.New("gateway: reading the content took longer than the client waits")
	errStalledReply = &Error{Code: ErrNotDefined, Message: "timeout"}
)

// session is one read transfer. All of its fields are owned by the
// goroutine running [session.run].
type session struct {
	srv    *Server
	c      *config
	conn   sessionConn
	ctx    context.Context
	key    sessionKey
	act    *activeSession // nil in tests without a server
	client netip.AddrPort
	req    Request
	st     SessionStats

	p       params
	rto     rtoEstimator
	content Content
	r       io.Reader
	raw     *countingReader // netascii mode: the content under the conversion

	small    *[smallBufSize]byte // pooled: recv | scratch
	buf      *[]byte             // the window's slots, from the server's window memory
	nslots   int                 // window slots in buf
	gsoSegs  int                 // most datagrams one send may carry (UDP GSO); <= 1: none
	zc       *fileSender         // sends blocks from the content's file; nil: from the window
	sendErr  error               // the content cannot be sent any more (see errFileChanged)
	rbuf     []byte
	scratch  []byte
	win      []byte
	slotSize int
	slotLen  []int

	acked  uint64 // last block acknowledged (absolute, 1-based)
	read   uint64 // last block read into the window
	sentTo uint64 // highest block sent so far
	last   uint64 // final block; 0 until the content's end is seen
	eof    bool   // the content returned io.EOF (with the bytes of a full block)
	got    int64  // bytes read from the content
	// recover is the highest block sent by the last window restart (on a
	// gap ACK or a timeout). An ACK below it acknowledges part of a window
	// that was already resent: the rest is in flight and is not resent, or
	// one duplicated or reordered packet would make every later window go
	// out twice.
	recover uint64

	err error // the internal cause of a failure, for the log only

	lastSend time.Time // when DATA last went out (see clientTimer)
	lastAck  time.Time // when the client's last ACK came (see clientTimer)

	// answered is set once the client has acknowledged anything (ACK 0 of
	// the OACK, or a DATA). Until then the first packet's retransmissions
	// back off without the timeout's cap: the request's source may be
	// spoofed, and an unanswered request must cost little (see recv).
	answered bool

	giveUpAt time.Time // the session times out if nothing comes by then

	cancel context.CancelCauseFunc // cancels ctx

	// armed is the read deadline last set on conn. Deadlines are moved
	// lazily (see recv): one that is earlier than needed stays, and is
	// pushed back when it expires, so that a session does not reset a
	// runtime timer for every packet.
	armed time.Time

	// The read watchdog cancels ctx with errStalled when a content read
	// takes longer than readLimit. Its timer is armed once and rearms
	// itself; a fill only marks its start and end, so that no timer is
	// reset per block (see beginRead).
	watchdog  *time.Timer
	wdBase    time.Time    // readStart is measured from here (monotonic)
	readStart atomic.Int64 // ns after wdBase (+1) when the fill in progress began; 0: none
	wdStopped atomic.Bool  // the session has ended: the timer must not rearm
}

// run performs the session and reports it. It never panics.
func (s *session) run() {
	defer s.finish()
	defer func() {
		if v := recover(); v != nil {
			s.c.logger.Error("session panic", "session", s.req.SessionID, "panic", v)
			s.fail(fmt.Errorf("gateway: panic: %v", v))
		}
	}()
	s.allocSmall()

	content, err := s.c.handler.ServeTFTP(s.ctx, &s.req)
	if content != nil {
		s.content = content // closed by finish, even with an error
	}
	if err != nil {
		var be interface{ BackendStats() BackendStats }
		if errors.As(err, &be) {
			b := be.BackendStats()
			s.st.Backend = &b
		}
		s.fail(err)
		return
	}
	if content == nil {
		s.fail(errors.New("gateway: handler returned no content and no error"))
		return
	}
	size := content.Size()
	s.r = content
	if s.req.Mode == "netascii" {
		s.raw = &countingReader{r: content}
		s.r = netascii.NewReader(s.raw)
		size = -1 // the converted length is not known before reading
	}
	s.st.TransferSize = size
	s.p = negotiate(s.req.Options, size, s.c)
	s.st.BlockSize, s.st.WindowSize = s.p.blksize, s.p.windowsize
	s.rto = newRTO(s.p.timeout, s.c.minTimeout, !s.p.clientTimeout)
	if s.req.Mode != "netascii" {
		s.zc = newFileSender(content, s.conn, s.p.blksize)
	}
	if !s.sizeWindow() {
		s.busy()
		return
	}
	for _, o := range s.p.oack {
		s.st.NegotiatedOptions = append(s.st.NegotiatedOptions, Option(o))
	}
	s.st.WindowSize = s.p.windowsize
	if len(s.p.oack) > 0 && !s.sendOACK() {
		return
	}
	// The client has answered (or asked for no options: a window of one
	// 516-byte block): the window's memory is taken now.
	if !s.allocWindow() {
		s.busy()
		return
	}
	if uc := udpConn(s.conn); uc != nil && s.p.windowsize > 1 && s.zc == nil {
		s.gsoSegs = enableGSO(uc, s.slotSize)
	}
	s.transfer()
}

// busy refuses the session for lack of window memory, like the listener's
// limits, and counts it with them.
func (s *session) busy() {
	s.srv.state.refusedBusy(s.c, s.client, time.Now())
	s.fail(errBusy)
}

// allocSmall takes the session's receive and scratch room. It is taken
// before anything else, outside the window budget: every session, answered
// or not, needs it.
func (s *session) allocSmall() {
	s.small = smallBufs.Get().(*[smallBufSize]byte)
	s.rbuf = s.small[:recvBufSize:recvBufSize]
	s.scratch = s.small[recvBufSize:recvBufSize:smallBufSize]
}

// sizeWindow sets the window's size in blocks: the windowsize negotiated,
// no more than the content needs, and no more than fits in the client's
// share of the window memory and in the server's budget now (the OACK then
// says the smaller windowsize). It reports false when not even one block
// fits. See winmem.go for the rules.
func (s *session) sizeWindow() bool {
	s.slotSize = wire.HeaderSize + s.p.blksize
	s.nslots = s.p.windowsize
	if size := s.st.TransferSize; size >= 0 {
		s.nslots = int(min(int64(s.nslots), size/int64(s.p.blksize)+1))
	}
	if s.zc != nil {
		return true // the blocks stay in the file
	}
	n := s.srv.state.windows.fit(clientPrefix(s.client.Addr()), s.nslots, s.slotSize)
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
func (s *session) allocWindow() bool {
	if s.zc == nil {
		s.buf = s.srv.state.windows.get(clientPrefix(s.client.Addr()), s.nslots*s.slotSize, time.Now())
		if s.buf == nil {
			return false
		}
		s.win = *s.buf
	}
	s.slotLen = make([]int, s.nslots)
	return true
}

// sendOACK sends the OACK and waits for ACK 0 (RFC 2347), resending the
// OACK on timeout. It reports whether the transfer goes on.
func (s *session) sendOACK() bool {
	pkt := wire.AppendOACK(nil, s.p.oack)
	s.sendThenRead(pkt)
	s.rto.sent(time.Now(), 0)
	s.giveUpAt = time.Now().Add(s.readLimit())
	retries := 0
	deadline := time.Now().Add(s.rto.current())
	for {
		n, ok := s.recv(&deadline, &retries, func() { s.sendThenRead(pkt); s.st.Retransmits++ })
		if !ok {
			return false
		}
		b := s.rbuf[:n]
		op, _ := wire.PacketOpcode(b)
		switch op {
		case wire.OpACK:
			blk, err := wire.ParseAck(b)
			if err == nil && blk == 0 {
				s.rto.acked(time.Now(), 0)
				s.progressed()
				return true
			}
			s.st.DuplicateAcks++
		case wire.OpERROR:
			s.clientError(b)
			return false
		}
	}
}

// transfer sends the content in windows (RFC 7440; windowsize 1 is the
// lock-step of RFC 1350). A window restarts right after the last
// acknowledged block, on a new ACK or on timeout; an ACK that acknowledges
// nothing new never causes a send in lock-step (RFC 1123 4.2.3.1), and in
// a window only when it is the client's own timer speaking (see
// clientTimer).
//
// Blocks leave as soon as the content has delivered them (see fill), so a
// slow content delays a window's blocks no more than a lock-step
// transfer's, and the timers start once the window is out.
func (s *session) transfer() {
	if err := s.fill(); err != nil {
		s.fail(err)
		return
	}
	s.sendFrom(s.sentTo+1, true)
	now := time.Now()
	s.lastSend = now
	s.rto.sent(now, s.read)
	s.giveUpAt = now.Add(s.readLimit())
	retries := 0
	deadline := now.Add(s.rto.current())
	for {
		n, ok := s.recv(&deadline, &retries, s.timeoutResend)
		if !ok {
			return
		}
		b := s.rbuf[:n]
		op, _ := wire.PacketOpcode(b)
		switch op {
		case wire.OpACK:
			blk, err := wire.ParseAck(b)
			if err != nil {
				continue
			}
			prevAck := s.lastAck
			s.lastAck = time.Now()
			abs, ok := s.resolve(blk)
			if !ok {
				s.st.DuplicateAcks++
				if s.clientTimer(blk, prevAck, &retries) {
					deadline = s.lastSend.Add(s.rto.current())
				}
				continue
			}
			for a := s.acked + 1; a <= abs; a++ {
				s.st.BytesAcked += int64(s.slotLen[s.slotIndex(a)] - wire.HeaderSize)
			}
			s.progressed()
			now := time.Now()
			s.rto.acked(now, abs)
			windowDone := abs == s.sentTo // else a gap
			s.acked = abs
			if s.zc != nil {
				s.zc.release(int64(abs) * int64(s.p.blksize))
			}
			if s.acked == s.last {
				s.st.Outcome = OutcomeOK
				return
			}
			retries = 0
			switch {
			case windowDone: // a fresh window, timed below
			case abs < s.recover:
				// Part of a window already resent: the rest of it is in
				// flight and is not resent; the window slides on.
				s.rto.cancelSample()
			default:
				// A gap: RFC 7440 section 4, restart right after the ACK.
				// The blocks already read go now, the new ones as fill
				// delivers them.
				s.sendFrom(s.acked+1, false)
				s.rto.cancelSample()
			}
			if err := s.fill(); err != nil {
				s.fail(err)
				return
			}
			s.sendFrom(s.sentTo+1, true)
			if !windowDone && abs >= s.recover {
				s.recover = s.sentTo
			}
			now = time.Now() // after the fill, which may have waited for the content
			s.lastSend = now
			if windowDone {
				s.rto.sent(now, s.read)
			}
			s.giveUpAt = now.Add(s.readLimit())
			deadline = now.Add(s.rto.current())
		case wire.OpERROR:
			s.clientError(b)
			return
		}
	}
}

// clientTimer handles a duplicate ACK of block blk in a window, whose
// previous ACK came at prevAck: when it acknowledges the last acknowledged
// block again a quiet spell after the last send (rtoEstimator.quiet: twice
// the round trip, at least 100 ms), and at least quietFloor after the
// client's previous ACK, it cannot be answering that send, nor be part of
// a burst; it is the client's retransmission timer saying that what
// followed the block was lost (RFC 7440 section 4, the receiver's side),
// and the window is resent at once rather than at the server's own
// timeout. A burst of duplicates (EDK2 acknowledges every block that
// arrives out of order, or again) is ignored: it starts within a round
// trip of the send that caused it, and each duplicate follows the one
// before by the time a packet takes, however long the burst lasts (a
// window of 64 blocks reaching a slow firmware, or crossing a slow link,
// can take longer than a quiet spell). Every duplicate within a quiet
// spell of the resend is ignored too, so a duplicate ACK never feeds a
// retransmission storm (Sorcerer's Apprentice, RFC 1123 4.2.3.1). Such a
// resend uses up a retry, as a timeout does. Lock-step sessions never
// resend on a duplicate ACK. It reports whether it resent.
func (s *session) clientTimer(blk uint16, prevAck time.Time, retries *int) bool {
	if s.p.windowsize <= 1 || blk != uint16(s.acked) || s.acked >= s.sentTo || *retries >= s.c.retries {
		return false
	}
	quiet := s.rto.quiet()
	if quiet <= 0 {
		return false
	}
	now := time.Now()
	if now.Sub(s.lastSend) < quiet || now.Sub(prevAck) < quietFloor {
		return false
	}
	*retries++
	s.resendWindow()
	s.rto.cancelSample()
	s.lastSend = now
	return true
}

// timeoutResend restarts the window after a timeout.
func (s *session) timeoutResend() {
	s.resendWindow()
	s.lastSend = time.Now()
}

// recv waits for the next packet from the client until deadline. On a
// timeout it calls resend, up to the retry budget; packets from other
// transfer IDs get ERROR 5 and do not move the deadline. It returns false
// when the session is over (the outcome is then set).
//
// The deadline is the caller's: a resend moves it for good, so packets
// that bring no progress (duplicate ACKs) never make the next read time out
// at once and resend again.
func (s *session) recv(deadline *time.Time, retries *int, resend func()) (int, bool) {
	for {
		if s.sendErr != nil {
			s.fail(s.sendErr)
			return 0, false
		}
		if s.armed.IsZero() || deadline.Before(s.armed) {
			s.conn.SetReadDeadline(*deadline)
			s.armed = *deadline
		}
		if s.ctx.Err() != nil {
			switch {
			case s.superseded():
			case s.stalled():
				s.fail(errStalled)
			default:
				s.sendError(errShutdown)
				s.st.Outcome = OutcomeError
			}
			return 0, false
		}
		n, from, err := s.conn.ReadFromUDPAddrPort(s.rbuf)
		if d, ok := s.conn.(deferredSender); ok {
			if err := d.takeSendErr(); err != nil {
				s.c.logger.Debug("send failed", "session", s.req.SessionID, "err", err)
			}
		}
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				if s.ctx.Err() != nil {
					continue // the context check above ends the session
				}
				s.fail(fmt.Errorf("gateway: read: %w", err))
				return 0, false
			}
			if s.ctx.Err() != nil {
				continue
			}
			if time.Now().Before(*deadline) {
				// An earlier deadline left in place (see armed), or the
				// clock of the socket's timer ran ahead: not a timeout yet.
				s.conn.SetReadDeadline(*deadline)
				s.armed = *deadline
				continue
			}
			if q, ok := s.conn.(queuedReader); ok {
				if n, from, ok := q.readQueued(s.rbuf); ok {
					// The answer came in time but was not read yet (this
					// goroutine ran late): take it rather than resend or,
					// at the last timeout, give up.
					if from.Addr().Unmap() != s.client.Addr() || from.Port() != s.client.Port() {
						s.unknownTID(s.rbuf[:n], from)
						continue
					}
					return n, true
				}
			}
			now := time.Now()
			if *retries >= s.c.retries || !now.Before(s.giveUpAt) {
				// The retransmissions are spent, but an adaptive timer spends
				// them faster than the configured timeout would: a client
				// with a slower timer still gets until the fixed-timer
				// deadline to answer. A first packet's backed-off timer
				// (below) reaches that deadline first.
				if now.Before(s.giveUpAt) {
					*deadline = s.giveUpAt
					continue
				}
				s.st.Outcome = OutcomeTimeout
				return 0, false
			}
			*retries++
			s.rto.expired(!s.answered && !s.p.clientTimeout)
			resend()
			*deadline = now.Add(s.rto.current())
			if deadline.After(s.giveUpAt) {
				*deadline = s.giveUpAt
			}
			continue
		}
		if from.Addr().Unmap() != s.client.Addr() || from.Port() != s.client.Port() {
			s.unknownTID(s.rbuf[:n], from)
			continue
		}
		return n, true
	}
}

// resolve maps a 16-bit block number of an ACK to the absolute block
// within (acked, sentTo], the only blocks it can newly acknowledge.
// Block numbers roll over from 65535 to 0.
func (s *session) resolve(blk uint16) (uint64, bool) {
	abs := s.acked + uint64(blk-uint16(s.acked))
	if abs <= s.acked || abs > s.sentTo {
		return 0, false
	}
	return abs, true
}

// slotIndex is where block abs lives in the window ring. At most nslots
// blocks are in flight: the window, or all blocks of a smaller content.
func (s *session) slotIndex(abs uint64) int { return int(abs % uint64(s.nslots)) }

func (s *session) slot(abs uint64) []byte {
	i := s.slotIndex(abs) * s.slotSize
	return s.win[i : i+s.slotSize]
}

// fill reads blocks from the content until the window after the last
// acknowledged block is full or the content has ended.
func (s *session) fill() error {
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
				return fmt.Errorf("%w: the content ended at byte %d of its size %d", errFileChanged, s.got, size)
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
func (s *session) planBlocks(limit uint64) error {
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
	return s.zc.prepare(from, min(int64(s.read)*bs, size))
}

// stalled reports whether the read watchdog ended the session.
func (s *session) stalled() bool { return errors.Is(context.Cause(s.ctx), errStalled) }

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
func (s *session) readBlock(p []byte) (int, error) {
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
func (s *session) expectEnd() error {
	if s.eof {
		return nil
	}
	var one [1]byte
	for range maxEmptyReads {
		m, err := s.r.Read(one[:])
		switch {
		case m > 0:
			return fmt.Errorf("%w: the content is longer than its size %d", errFileChanged, s.got)
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
func (s *session) checkEnded() error {
	if s.raw != nil {
		if d := s.content.Size(); d >= 0 && s.raw.n != d {
			return fmt.Errorf("%w: the content had %d bytes of its size %d", errFileChanged, s.raw.n, d)
		}
	}
	if fc, ok := s.content.(*fileContent); ok {
		return fc.unchanged()
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

// beginRead marks the start of a fill for the watchdog, which cancels the
// session's context (so that a content honouring it returns) when one
// block takes longer to read than the session would wait for a silent
// client: the same rule whatever the window size. The fill marks each
// further block (markRead) and clears the mark when it returns. It
// returns the time of the mark, as markRead does.
func (s *session) beginRead() time.Duration {
	if s.watchdog == nil {
		s.wdBase = time.Now()
		s.readStart.Store(1)
		// Armed only once s.watchdog is set, which checkStall uses.
		s.watchdog = time.AfterFunc(time.Duration(math.MaxInt64), s.checkStall)
		s.watchdog.Reset(s.readLimit())
		return 0
	}
	return s.markRead()
}

// markRead marks the start of a block's read for the watchdog and returns
// the time since wdBase.
func (s *session) markRead() time.Duration {
	t := time.Since(s.wdBase)
	s.readStart.Store(int64(t) + 1)
	return t
}

// checkStall runs when the watchdog's timer fires, on the timer's
// goroutine: it cancels the session when the fill in progress has taken
// readLimit, and otherwise rearms for when it would have. It touches only
// atomics and fields set before the timer was armed.
func (s *session) checkStall() {
	if s.wdStopped.Load() {
		return
	}
	limit := s.readLimit()
	if start := s.readStart.Load(); start != 0 {
		elapsed := time.Duration(int64(time.Since(s.wdBase)) + 1 - start)
		if elapsed >= limit {
			s.cancel(errStalled)
			return
		}
		limit -= elapsed
	}
	s.watchdog.Reset(limit)
}

// stopWatchdog ends the watchdog for good (the session is over).
func (s *session) stopWatchdog() {
	if s.watchdog != nil {
		s.wdStopped.Store(true)
		s.watchdog.Stop()
	}
}

// readLimit is how long reading one block may take: as long as the
// session would wait for a silent client.
func (s *session) readLimit() time.Duration {
	return time.Duration(s.c.retries+1) * s.p.timeout
}

// resendWindow restarts the window right after the last acknowledged
// block and remembers how far the restart went. The session reads next.
func (s *session) resendWindow() {
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
// window's last datagram may then be handed to it (deferredSender), which
// sends it and reads in one step.
func (s *session) sendFrom(from uint64, hold bool) {
	if s.st.TimeToFirstData == 0 && s.acked < s.read {
		s.st.TimeToFirstData = max(time.Since(s.st.Start), 1)
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
		if d, ok := s.conn.(deferredSender); ok && hold && n == 1 && last == s.read && s.gsoSegs <= 1 {
			// The window's last datagram: the read that waits for its
			// ACK sends it (a send error is logged there). Not with
			// segmentation on, whose refusals must be seen here (below).
			d.sendBeforeRead(run)
		} else if _, err := s.conn.WriteToUDPAddrPort(run, s.client); err != nil {
			if s.gsoSegs > 1 {
				// The kernel refused the send with segmentation on: with
				// UDP_SEGMENT set it sends no datagram larger than the
				// path's MTU, single or segmented (a block larger than the
				// MTU). This run and the rest go one by one, without it.
				s.c.logger.Debug("segmented send failed; sending datagrams one by one", "session", s.req.SessionID, "err", err)
				s.gsoSegs = 0
				if uc := udpConn(s.conn); uc != nil {
					disableGSO(uc)
				}
				continue
			}
			s.c.logger.Debug("send failed", "session", s.req.SessionID, "err", err)
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
func (s *session) sendFromFile(from uint64) {
	for abs := max(from, s.acked+1); abs <= s.read; abs++ {
		n := s.slotLen[s.slotIndex(abs)] - wire.HeaderSize
		if err := s.zc.send(uint16(abs), int64(abs-1)*int64(s.p.blksize), n); err != nil {
			if errors.Is(err, errFileChanged) {
				s.sendErr = err
				return
			}
			s.c.logger.Debug("send failed", "session", s.req.SessionID, "err", err)
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

func (s *session) send(pkt []byte) {
	s.st.PacketsSent++
	if _, err := s.conn.WriteToUDPAddrPort(pkt, s.client); err != nil {
		s.c.logger.Debug("send failed", "session", s.req.SessionID, "err", err)
	}
}

// sendThenRead sends pkt, which the session's next step reads the answer
// to: a deferredSender sends it from that read.
func (s *session) sendThenRead(pkt []byte) {
	if d, ok := s.conn.(deferredSender); ok {
		s.st.PacketsSent++
		d.sendBeforeRead(pkt)
		return
	}
	s.send(pkt)
}

// sendError sends e; its message is cut to what fits one small packet.
func (s *session) sendError(e *Error) {
	c := *e // the stats get a copy of their own
	s.st.ErrorSent = &c
	msg := e.Message
	if len(msg) > scratchBufSize-5 {
		msg = msg[:scratchBufSize-5]
	}
	s.send(wire.AppendError(s.scratchBuf(), uint16(e.Code), msg))
}

func (s *session) scratchBuf() []byte {
	if s.scratch == nil {
		s.scratch = make([]byte, 0, scratchBufSize)
	}
	return s.scratch[:0]
}

// superseded reports whether a new request from the client's port ended
// the session (see supersede), and if so sets its outcome: ok when the
// final block had been sent (the client asks anew only when it is done:
// its final ACK was lost, the port was reused), aborted otherwise (the
// client restarted the transfer), with the reason as the logged cause.
// Nothing is sent: the port is not the client's any more.
func (s *session) superseded() bool {
	if !errors.Is(context.Cause(s.ctx), errSuperseded) {
		return false
	}
	s.st.Outcome = OutcomeAborted
	s.err = errSuperseded
	if s.last != 0 && s.sentTo == s.last {
		s.st.Outcome = OutcomeOK
		s.err = nil
	}
	return true
}

// progressed records that the client acknowledged something.
func (s *session) progressed() {
	s.answered = true
	if s.act != nil && s.acked <= 1 {
		s.act.progressed.Store(true)
	}
}

// fail ends the session with the ERROR that err maps to.
func (s *session) fail(err error) {
	if s.superseded() {
		return
	}
	e := ErrorFor(err)
	if e == ErrIntegrity {
		s.srv.state.integrityFailures.Add(1)
	}
	switch {
	case s.stalled(): // whatever the content made of the cancellation
		e = errStalledReply
		if !errors.Is(err, errStalled) {
			err = fmt.Errorf("%w: %w", errStalled, err)
		}
	case s.srv.state.ctx != nil && s.srv.state.ctx.Err() != nil: // a forced shutdown interrupted the session
		e = errShutdown
	}
	if s.st.ErrorSent == nil {
		s.sendError(e)
	}
	s.st.Outcome = OutcomeError
	if te, ok := errors.AsType[*Error](err); !ok || error(te) != err { // a bare *Error says it all
		s.err = err
	}
}

// clientError ends the session silently: an ERROR is never answered with
// an ERROR (RFC 1350 section 7). One before any block beyond the first was
// acknowledged is a probe (the UEFI size query, the Raspberry Pi's early
// terminate).
//
// An ERROR 0 once the final block has been sent is PXELINUX closing the
// file after an ACK of the final block that was lost: a success.
func (s *session) clientError(b []byte) {
	code, msg, _ := wire.ParseError(b)
	s.st.ErrorReceived = &Error{Code: ErrorCode(code), Message: msg}
	if code == uint16(ErrNotDefined) && s.last != 0 && s.sentTo == s.last {
		s.st.Outcome = OutcomeOK
		return
	}
	if s.acked <= 1 {
		s.st.Outcome = OutcomeProbe
	} else {
		s.st.Outcome = OutcomeAborted
	}
}

// unknownTID deals with a packet, pkt, from another transfer ID than the
// client's, and goes on with the transfer. Every
// such packet is counted (ServerStats.UnknownTIDPackets). RFC 1350
// section 4 answers it with ERROR 5 at its source; tftpgw does so only
// where a real client can be confused: a DATA or an ACK from the client's
// own address but another port (a NAT that rebound the client's port, a
// client that reopened its socket), which learns that its transfer is
// gone. Anything else is dropped: an ERROR is never answered (section 7),
// junk and requests are no client's, and a packet from another address
// could carry a spoofed source, which an answer would turn into a 24-byte
// datagram sent to any address for a 4-byte one (in.tftpd ignores them
// all).
func (s *session) unknownTID(pkt []byte, from netip.AddrPort) {
	st := &s.srv.state
	st.unknownTID.Add(1)
	if from.Addr().Unmap() != s.client.Addr().Unmap() {
		return
	}
	if op, err := wire.PacketOpcode(pkt); err != nil || op != wire.OpDATA && op != wire.OpACK {
		return
	}
	st.errCounts[ErrUnknownTID].Add(1)
	s.conn.WriteToUDPAddrPort(wire.AppendError(s.scratchBuf(), uint16(ErrUnknownTID), "unknown transfer ID"), from)
}

// finish closes what the session holds, logs one line and reports stats.
func (s *session) finish() {
	s.stopWatchdog()
	if s.zc != nil {
		if err := s.zc.close(); err != nil {
			s.c.logger.Warn("unmapping a file", "session", s.req.SessionID, "err", err)
		}
	}
	if s.content != nil {
		s.closeContent()
	}
	s.conn.Close()
	if s.buf != nil {
		s.srv.state.windows.put(clientPrefix(s.client.Addr()), s.buf, time.Now())
		s.buf, s.win = nil, nil
	}
	if s.small != nil {
		smallBufs.Put(s.small)
		s.small, s.rbuf, s.scratch = nil, nil, nil
	}
	s.st.Duration = time.Since(s.st.Start)
	s.log()
	s.srv.state.sessionDone(s)
	if s.c.sessionStats != nil {
		s.reportStats()
	}
}

// closeContent takes the content's backend stats and closes it; a panic
// in either is logged, never fatal.
func (s *session) closeContent() {
	defer func() {
		if v := recover(); v != nil {
			s.c.logger.Error("content panic on close", "session", s.req.SessionID, "panic", v)
		}
	}()
	if bc, ok := s.content.(BackendContent); ok {
		b := bc.BackendStats()
		s.st.Backend = &b
	}
	if err := s.content.Close(); err != nil {
		s.c.logger.Debug("content close", "session", s.req.SessionID, "err", err)
	}
}

// reportStats hands the stats to the callback; a panic there is logged.
func (s *session) reportStats() {
	defer func() {
		if v := recover(); v != nil {
			s.c.logger.Error("SessionStatsFunc panic", "session", s.req.SessionID, "panic", v)
		}
	}()
	s.c.sessionStats(s.st)
}

func (s *session) log() {
	if !s.c.logger.Enabled(context.Background(), slog.LevelInfo) {
		return // the line is not built for nothing
	}
	attrs := []slog.Attr{
		slog.String("session", s.st.SessionID),
		slog.String("client", s.st.RemoteAddr.String()),
		slog.String("local", s.st.LocalAddr.String()),
		slog.String("path", s.st.Path),
		slog.String("mode", s.st.Mode),
		slog.String("outcome", s.st.Outcome.String()),
		slog.Int64("bytes", s.st.BytesAcked),
		slog.Int("blksize", s.st.BlockSize),
		slog.Int("windowsize", s.st.WindowSize),
		slog.Int64("retransmits", s.st.Retransmits),
		slog.Duration("duration", s.st.Duration),
	}
	if e := s.st.ErrorSent; e != nil {
		attrs = append(attrs, slog.Int("error_code", int(e.Code)), slog.String("error", e.Message))
	}
	if e := s.st.ErrorReceived; e != nil {
		attrs = append(attrs, slog.Int("client_error_code", int(e.Code)), slog.String("client_error", e.Message))
	}
	if s.err != nil {
		attrs = append(attrs, slog.String("cause", s.err.Error()))
	}
	s.c.logger.LogAttrs(context.Background(), slog.LevelInfo, "session end", attrs...)
}

// listenSession opens a session's socket on the address the request was
// sent to, so that replies come from it (RFC 1350 section 4).
func listenSession(local netip.Addr, client netip.AddrPort) (*net.UDPConn, netip.AddrPort, error) {
	network := "udp6"
	if client.Addr().Is4In6() || client.Addr().Is4() {
		network = "udp4"
		client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
		if local.Is4In6() {
			local = local.Unmap()
		}
		if !local.Is4() {
			local = netip.IPv4Unspecified()
		}
	} else if !local.Is6() || local.Is4In6() {
		local = netip.IPv6Unspecified()
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		return nil, client, fmt.Errorf("gateway: session socket on %s: %w", local, err)
	}
	return c, client, nil
}
