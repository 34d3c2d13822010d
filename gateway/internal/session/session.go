// Package session is tftpgw's transfer engine: one transfer (RFC 1350,
// 2347, 2348, 2349, 7440) over a connection of package udp, a read from
// its OACK to its final ACK, reading a Content, or an upload from its
// first ACK to its last, writing a Sink. The server (package gateway)
// admits the request, opens the connection and calls the handler; a
// Session then negotiates the options, sends the content in windows (or
// receives the upload's), retransmits and ends with an Outcome and its
// Stats. What it needs from
// the server (window memory, counting, the shutdown state, the TFTP error
// for a content's error) comes through Host.
//
// Concerns by file: session.go the sending side's state machine (the
// OACK, the transfer loop, the read of the client's packets, the end of a
// session), window.go the window ring and the sends of its blocks,
// content.go the reading of the content into it with the integrity
// checks, watchdog.go the content-read watchdog, negotiate.go the
// options, rto.go the retransmission timer, receive.go the receiving side
// (uploads: WRQ), a state machine of its own over the same Conn, Host,
// window memory, negotiation and timer.
package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tftpgw/tftpgw/gateway/internal/netascii"
	"github.com/tftpgw/tftpgw/gateway/internal/udp"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// Content is what a session reads: the bytes of one file (the method set
// of gateway.Content). Read is called from the session's goroutine only.
type Content interface {
	io.ReadCloser
	// Size is the content's length, or -1 when it is not known.
	Size() int64
}

// FileContent is a Content read from a regular file, whose blocks a
// session may send straight from the file's pages, and whose file it
// checks, before the final block, to be the one opened.
type FileContent interface {
	Content
	// File is the file, positioned at its start.
	File() *os.File
	// Unchanged reports, with an error wrapping ErrFileChanged, a file
	// that is no longer the one opened (rewritten in place, even to the
	// same length).
	Unchanged() error
}

// Host is what a session needs from its server. A Host belongs to one
// session (it knows the client), and its methods are called from the
// session's goroutine.
type Host interface {
	// FitWindow returns how many slots of slotSize bytes, up to want, the
	// session's window may have now; 0 when not one fits.
	FitWindow(want, slotSize int) int
	// GetWindow returns a buffer of n bytes for the window, or nil when
	// there is no room left; PutWindow gives it back.
	GetWindow(n int) *[]byte
	PutWindow(b *[]byte)
	// Busy counts a session refused for lack of window memory.
	Busy()
	// Answered records that the client first acknowledged something (or,
	// for an upload, sent its first block); unanswered is what the session
	// held against the budget of unanswered uploads (see Unanswered), now
	// released, or 0.
	Answered(unanswered int)
	// Unanswered holds n bytes against the server's budget of window
	// memory for uploads whose client has not answered yet, and reports
	// whether they fit. Answered releases them (or the session's end, with
	// Answered(n), if the client never answered).
	Unanswered(n int) bool
	// StrayPacket counts a packet from another transfer ID than the
	// client's; answered says whether it got ERROR 5.
	StrayPacket(answered bool)
	// Stopping reports whether the server is ending its sessions (a
	// forced shutdown).
	Stopping() bool
	// Draining reports whether the server has stopped taking requests (a
	// shutdown, graceful or not): a session with nothing left to do but
	// wait ends now.
	Draining() bool
	// ErrorFor is the ERROR the client gets for err, an error of the
	// content (or the handler); its text is not sent unless it chooses.
	ErrorFor(err error) Error
}

// Config is what a session takes from the server's settings, resolved
// (defaults applied).
type Config struct {
	Timeout       time.Duration // retransmission timeout, when the client negotiates none
	MinTimeout    time.Duration // floor of the adaptive timer (>= Timeout: fixed)
	Retries       int           // retransmissions of an unacknowledged packet
	MaxBlockSize  int           // largest blksize granted
	MaxWindowSize int           // largest windowsize granted
	Refuse        Options       // options never granted (left out of the OACK)
	Logger        *slog.Logger
}

// Options is a set of the options the engine negotiates.
type Options uint8

// The options the engine negotiates, as members of an Options set.
const (
	OptBlksize Options = 1 << iota
	OptTimeout
	OptTsize
	OptWindowsize
)

// OptionNamed returns the member of Options with the given lower-case
// name, or 0 if the engine does not negotiate it.
func OptionNamed(name string) Options {
	switch name {
	case "blksize":
		return OptBlksize
	case "timeout":
		return OptTimeout
	case "tsize":
		return OptTsize
	case "windowsize":
		return OptWindowsize
	}
	return 0
}

// Error is a TFTP ERROR: code (RFC 1350 section 5) and message.
type Error struct {
	Code    uint16
	Message string
}

// Outcome is how a session ended; its values are gateway.Outcome's.
type Outcome int

// The outcomes (see gateway.Outcome).
const (
	OutcomeUnknown Outcome = iota
	OutcomeOK
	OutcomeError
	OutcomeProbe
	OutcomeAborted
	OutcomeTimeout
)

// Stats are a session's facts, read once Run (or Refuse) has returned.
type Stats struct {
	Outcome           Outcome
	BlockSize         int
	WindowSize        int
	TransferSize      int64         // -1 if unknown
	NegotiatedOptions []wire.Option // acknowledged in the OACK
	ErrorSent         *Error        // the ERROR sent to the client, if any
	ErrorReceived     *Error        // the ERROR the client sent, if any
	Cause             error         // the internal cause of a failure, for logs

	BytesSent, BytesAcked, PacketsSent, Retransmits, DuplicateAcks int64
	BytesReceived                                                  int64         // an upload's payload bytes received in order
	TimeToFirstData                                                time.Duration // 0: no DATA sent
}

const (
	recvBufSize    = udp.MaxPacket + 1 // ACKs, ERRORs and 512-byte DATA; longer ones are cut, and one byte more shows it
	scratchBufSize = 128               // outgoing ERRORs
	smallBufSize   = recvBufSize + scratchBufSize
)

// smallBufs holds a session's receive and scratch room, taken before the
// client has answered: bounded by the number of sessions, outside the
// window budget.
var smallBufs = sync.Pool{New: func() any { return new([smallBufSize]byte) }}

// Errors the session sends on its own.
var (
	// ErrShutdown ends sessions that are still running when a forced
	// shutdown comes.
	ErrShutdown = &Error{Code: 0, Message: "server shutting down"}

	// ErrFileChanged ends a session whose content turned out shorter or
	// longer than the size it declared (and told the client in tsize), or
	// whose file is no longer the one opened: a file truncated or
	// rewritten under the transfer, or a backend's mistake.
	ErrFileChanged = &Error{Code: 0, Message: "file changed while being sent"}

	// ErrBusy refuses a session for lack of window memory.
	ErrBusy = &Error{Code: 0, Message: "server busy"}

	// ErrSuperseded is the cause a server cancels a session with when a
	// new request from the client's port replaced it (see Session.Ctx).
	ErrSuperseded = errors.New("gateway: superseded by a new request from the client's port")
)

// Error implements error.
func (e *Error) Error() string { return fmt.Sprintf("tftp error %d: %s", e.Code, e.Message) }

// errStalled is the cause the read watchdog cancels a session with, and
// errStalledReply what the client is told.
var (
	errStalled      = errors.New("gateway: reading the content took longer than the client waits")
	errStalledReply = &Error{Code: 0, Message: "timeout"}
)

// Session is one transfer: a read (Run) or an upload (Receive). The
// server sets the exported fields, then calls Run, Receive or Refuse; all
// fields are then owned by that goroutine.
type Session struct {
	ID      string          // names the session in logs
	Conn    udp.Conn        // the client's transfer ID
	Client  netip.AddrPort  // the client's address, in Conn's family
	Ctx     context.Context // cancelled when the session must end
	Cancel  context.CancelCauseFunc
	Host    Host
	Config  *Config
	Mode    string        // "octet" or "netascii"
	Options []wire.Option // the request's options, names lower-cased
	Start   time.Time     // when the request arrived

	st Stats

	p       params
	rto     rtoEstimator
	content Content
	r       io.Reader
	raw     *countingReader // netascii mode: the content under the conversion

	small    *[smallBufSize]byte // pooled: recv | scratch
	buf      *[]byte             // the window's slots, from the server's window memory
	nslots   int                 // window slots in buf
	gsoSegs  int                 // most datagrams one send may carry (UDP GSO); <= 1: none
	zc       udp.FileSender      // sends blocks from the content's file; nil: from the window
	sendErr  error               // the content cannot be sent any more (see ErrFileChanged)
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

	done       bool    // an upload was stored and its final ACK sent
	rbufWin    *[]byte // an upload's receive buffer, from window memory; nil: rbuf is the small one
	unanswered int     // bytes an upload holds against the unanswered budget (see Host.Unanswered)

	lastSend time.Time // when DATA last went out (see clientTimer)
	lastAck  time.Time // when the client's last ACK came (see clientTimer)

	// answered is set once the client has acknowledged anything (ACK 0 of
	// the OACK, or a DATA). Until then the first packet's retransmissions
	// back off without the timeout's cap: the request's source may be
	// spoofed, and an unanswered request must cost little (see recv).
	answered bool

	giveUpAt time.Time // the session times out if nothing comes by then

	// The transfer's read deadline and retransmissions of the packet
	// outstanding (see recv): fields, not the transfer loop's locals, so
	// that Respond moves them too.
	deadline time.Time
	retries  int

	// atHand is the content, when it can give blocks without waiting and
	// the transfer is in lock-step: the transport may then answer the
	// client's ACKs itself (see Respond).
	atHand atHandReader
	// panicked is a panic of the content that Respond recovered: the
	// session ends with it once it has its state back.
	panicked error

	// armed is the read deadline last set on Conn. Deadlines are moved
	// lazily (see recv): one that is earlier than needed stays, and is
	// pushed back when it expires, so that a session does not reset a
	// runtime timer for every packet.
	armed time.Time

	// The read watchdog cancels Ctx with errStalled when a content read
	// takes longer than readLimit. Its timer is armed once and rearms
	// itself; a fill only marks its start and end, so that no timer is
	// reset per block (see beginRead).
	watchdog  *time.Timer
	wdBase    time.Time    // readStart is measured from here (monotonic)
	readStart atomic.Int64 // ns after wdBase (+1) when the fill in progress began; 0: none
	wdStopped atomic.Bool  // the session has ended: the timer must not rearm
}

// Stats returns the session's facts; call it once Run or Refuse has
// returned.
func (s *Session) Stats() Stats { return s.st }

// Refuse ends a session that never started its transfer: it sends e to
// the client (cause is for the log), as for a path that is refused or a
// handler's error.
func (s *Session) Refuse(e *Error, cause error) {
	s.allocSmall()
	defer s.release()
	s.st.TransferSize = -1
	s.fail(e)
	if cause != nil {
		s.st.Cause = cause
	}
}

// Run sends content to the client: it negotiates the options, sends the
// OACK, takes the window's memory once the client has answered, and
// transfers. It returns when the session is over (see Stats) and never
// panics: a panic of the content ends the session with ERROR 0. The
// caller closes content.
func (s *Session) Run(content Content) {
	s.allocSmall()
	defer s.release()
	defer func() {
		if v := recover(); v != nil {
			s.Config.Logger.Error("session panic", "session", s.ID, "panic", v)
			s.fail(fmt.Errorf("gateway: panic: %v", v))
		}
	}()
	s.content = content
	size := content.Size()
	s.r = content
	if s.Mode == "netascii" {
		s.raw = &countingReader{r: content}
		s.r = netascii.NewReader(s.raw)
		size = -1 // the converted length is not known before reading
	}
	s.st.TransferSize = size
	s.p = negotiate(s.Options, size, s.Config)
	s.st.BlockSize, s.st.WindowSize = s.p.blksize, s.p.windowsize
	s.rto = newRTO(s.p.timeout, s.Config.MinTimeout, !s.p.clientTimeout)
	if fc, ok := content.(FileContent); ok && s.Mode != "netascii" {
		if zc := s.Conn.FileSender(fc.File(), size, s.p.blksize, fc.Unchanged, ErrFileChanged); zc != nil {
			s.zc = zc
		}
	}
	if !s.sizeWindow() {
		s.busy()
		return
	}
	if ah, ok := content.(atHandReader); ok && s.raw == nil && s.zc == nil && size >= 0 && s.p.windowsize == 1 {
		s.atHand = ah
	}
	s.st.NegotiatedOptions = s.p.oack
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
	if s.p.windowsize > 1 && s.zc == nil {
		s.gsoSegs = s.Conn.EnableGSO(s.slotSize)
	}
	s.transfer()
}

// busy refuses the session for lack of window memory, like the server's
// admission limits, and counts it with them.
func (s *Session) busy() {
	s.Host.Busy()
	s.fail(ErrBusy)
}

// allocSmall takes the session's receive and scratch room. It is taken
// before anything else, outside the window budget: every session, answered
// or not, needs it.
func (s *Session) allocSmall() {
	s.small = smallBufs.Get().(*[smallBufSize]byte)
	s.rbuf = s.small[:recvBufSize:recvBufSize]
	s.scratch = s.small[recvBufSize:recvBufSize:smallBufSize]
	s.st.BlockSize, s.st.WindowSize = wire.DefaultBlockSize, 1
}

// release gives back what the session holds: its buffers, its file
// mapping and the watchdog. The connection and the content are the
// caller's.
func (s *Session) release() {
	s.stopWatchdog()
	if s.zc != nil {
		if err := s.zc.Close(); err != nil {
			s.Config.Logger.Warn("unmapping a file", "session", s.ID, "err", err)
		}
		s.zc = nil
	}
	if s.buf != nil {
		s.Host.PutWindow(s.buf)
		s.buf, s.win = nil, nil
	}
	if s.unanswered > 0 {
		s.Host.Answered(s.unanswered)
		s.unanswered = 0
	}
	if s.rbufWin != nil {
		s.Host.PutWindow(s.rbufWin)
		s.rbufWin = nil
	}
	if s.small != nil {
		smallBufs.Put(s.small)
		s.small, s.rbuf, s.scratch = nil, nil, nil
	}
}

// sendOACK sends the OACK and waits for ACK 0 (RFC 2347), resending the
// OACK on timeout. It reports whether the transfer goes on.
func (s *Session) sendOACK() bool {
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
func (s *Session) transfer() {
	if err := s.fill(); err != nil {
		s.fail(err)
		return
	}
	s.sendFrom(s.sentTo+1, true)
	now := time.Now()
	s.lastSend = now
	s.rto.sent(now, s.read)
	s.giveUpAt = now.Add(s.readLimit())
	s.retries = 0
	s.deadline = now.Add(s.rto.current())
	for {
		n, ok := s.recv(&s.deadline, &s.retries, s.timeoutResend)
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
			ackAt := time.Now()
			s.lastAck = ackAt
			abs, ok := s.resolve(blk)
			if !ok {
				s.st.DuplicateAcks++
				if s.clientTimer(blk, prevAck, &s.retries) {
					s.deadline = s.lastSend.Add(s.rto.current())
				}
				continue
			}
			for a := s.acked + 1; a <= abs; a++ {
				s.st.BytesAcked += int64(s.slotLen[s.slotIndex(a)] - wire.HeaderSize)
			}
			s.progressed()
			s.rto.acked(ackAt, abs)
			windowDone := abs == s.sentTo // else a gap
			s.acked = abs
			if s.zc != nil {
				s.zc.Release(int64(abs) * int64(s.p.blksize))
			}
			if s.acked == s.last {
				s.st.Outcome = OutcomeOK
				return
			}
			s.retries = 0
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
			now := time.Now() // after the fill, which may have waited for the content
			s.lastSend = now
			if windowDone {
				s.rto.sent(now, s.read)
			}
			s.giveUpAt = now.Add(s.readLimit())
			s.deadline = now.Add(s.rto.current())
		case wire.OpERROR:
			s.clientError(b)
			return
		}
	}
}

// clientTimer handles a duplicate ACK of block blk in a window, whose
// previous ACK came at prevAck: when it acknowledges the last acknowledged
// block again a quiet spell after the last send (rtoEstimator.quiet: twice
// the smallest round trip seen, at least 100 ms), and at least quietFloor
// after the client's previous ACK, it cannot be answering that send, nor
// be part of a burst; it is the client's retransmission timer saying that
// what followed the block was lost (RFC 7440 section 4, the receiver's
// side), and the window is resent at once rather than at the server's own
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
func (s *Session) clientTimer(blk uint16, prevAck time.Time, retries *int) bool {
	if s.p.windowsize <= 1 || blk != uint16(s.acked) || s.acked >= s.sentTo || *retries >= s.Config.Retries {
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
func (s *Session) timeoutResend() {
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
func (s *Session) recv(deadline *time.Time, retries *int, resend func()) (int, bool) {
	for {
		if s.sendErr != nil {
			s.fail(s.sendErr)
			return 0, false
		}
		if s.armed.IsZero() || deadline.Before(s.armed) {
			s.Conn.SetReadDeadline(*deadline)
			s.armed = *deadline
		}
		if s.Ctx.Err() != nil {
			switch {
			case s.superseded():
			case s.stalled():
				s.fail(errStalled)
			default:
				s.sendError(ErrShutdown)
				s.st.Outcome = OutcomeError
			}
			return 0, false
		}
		if s.offloadable() {
			s.Conn.Offload(s)
		}
		n, from, err := s.Conn.ReadFromUDPAddrPort(s.rbuf)
		if err := s.Conn.TakeSendErr(); err != nil {
			s.Config.Logger.Debug("send failed", "session", s.ID, "err", err)
		}
		if s.panicked != nil {
			s.Config.Logger.Error("session panic", "session", s.ID, "panic", s.panicked)
			s.fail(s.panicked)
			return 0, false
		}
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				if s.Ctx.Err() != nil {
					continue // the context check above ends the session
				}
				s.fail(fmt.Errorf("gateway: read: %w", err))
				return 0, false
			}
			if s.Ctx.Err() != nil {
				continue
			}
			if time.Now().Before(*deadline) {
				// An earlier deadline left in place (see armed), or the
				// clock of the socket's timer ran ahead: not a timeout yet.
				s.Conn.SetReadDeadline(*deadline)
				s.armed = *deadline
				continue
			}
			if n, from, ok := s.Conn.ReadQueued(s.rbuf); ok {
				// The answer came in time but was not read yet (this
				// goroutine ran late): take it rather than resend or, at
				// the last timeout, give up.
				if from.Addr().Unmap() != s.Client.Addr() || from.Port() != s.Client.Port() {
					s.unknownTID(s.rbuf[:n], from)
					continue
				}
				return n, true
			}
			now := time.Now()
			if *retries >= s.Config.Retries || !now.Before(s.giveUpAt) {
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
		if from.Addr().Unmap() != s.Client.Addr() || from.Port() != s.Client.Port() {
			s.unknownTID(s.rbuf[:n], from)
			continue
		}
		return n, true
	}
}

func (s *Session) send(pkt []byte) {
	s.st.PacketsSent++
	if _, err := s.Conn.WriteToUDPAddrPort(pkt, s.Client); err != nil {
		s.Config.Logger.Debug("send failed", "session", s.ID, "err", err)
	}
}

// sendThenRead sends pkt, which the session's next step reads the answer
// to: a transport that can sends it from that read (SendBeforeRead).
func (s *Session) sendThenRead(pkt []byte) {
	if s.Conn.SendBeforeRead(pkt) {
		s.st.PacketsSent++
		return
	}
	s.send(pkt)
}

// sendError sends e; its message is cut to what fits one small packet.
func (s *Session) sendError(e *Error) {
	c := *e // the stats get a copy of their own
	s.st.ErrorSent = &c
	msg := e.Message
	if len(msg) > scratchBufSize-5 {
		msg = msg[:scratchBufSize-5]
	}
	s.send(wire.AppendError(s.scratchBuf(), uint16(e.Code), msg))
}

func (s *Session) scratchBuf() []byte {
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
func (s *Session) superseded() bool {
	if !errors.Is(context.Cause(s.Ctx), ErrSuperseded) {
		return false
	}
	s.st.Outcome = OutcomeAborted
	s.st.Cause = ErrSuperseded
	if s.done || s.last != 0 && s.sentTo == s.last {
		s.st.Outcome = OutcomeOK
		s.st.Cause = nil
	}
	return true
}

// progressed records that the client acknowledged something.
func (s *Session) progressed() {
	if !s.answered {
		s.answered = true
		s.Host.Answered(0)
	}
}

// fail ends the session with the ERROR that err maps to: the session's
// own *Error as it is, any other error through Host.ErrorFor.
func (s *Session) fail(err error) {
	if s.superseded() {
		return
	}
	e, ok := errors.AsType[*Error](err) // the session's own errors
	if !ok {
		he := s.Host.ErrorFor(err)
		e = &he
	}
	if error(e) != err { // a bare *Error says it all
		s.st.Cause = err
	}
	switch {
	case s.stalled(): // whatever the content made of the cancellation
		e = errStalledReply
		if !errors.Is(err, errStalled) {
			err = fmt.Errorf("%w: %w", errStalled, err)
		}
		s.st.Cause = err
	case s.Host.Stopping(): // a forced shutdown interrupted the session
		e = ErrShutdown
	}
	if s.st.ErrorSent == nil {
		s.sendError(e)
	}
	s.st.Outcome = OutcomeError
}

// clientError ends the session silently: an ERROR is never answered with
// an ERROR (RFC 1350 section 7). One before any block beyond the first was
// acknowledged is a probe (the UEFI size query, the Raspberry Pi's early
// terminate).
//
// An ERROR 0 once the final block has been sent is PXELINUX closing the
// file after an ACK of the final block that was lost: a success.
func (s *Session) clientError(b []byte) {
	code, msg, _ := wire.ParseError(b)
	s.st.ErrorReceived = &Error{Code: code, Message: msg}
	if code == 0 && s.last != 0 && s.sentTo == s.last {
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
func (s *Session) unknownTID(pkt []byte, from netip.AddrPort) {
	if from.Addr().Unmap() != s.Client.Addr().Unmap() {
		s.Host.StrayPacket(false)
		return
	}
	if op, err := wire.PacketOpcode(pkt); err != nil || op != wire.OpDATA && op != wire.OpACK {
		s.Host.StrayPacket(false)
		return
	}
	s.Host.StrayPacket(true)
	s.Conn.WriteToUDPAddrPort(wire.AppendError(s.scratchBuf(), wire.CodeUnknownTID, "unknown transfer ID"), from)
}
