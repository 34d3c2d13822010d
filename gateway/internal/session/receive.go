package session

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/tftpgw/tftpgw/gateway/internal/netascii"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// Sink is what a receiving session writes an upload to: the method set of
// gateway.Upload but Abort, which the server calls.
type Sink interface {
	// Write is given the next bytes of the file, in order, converted
	// from netascii if that is the mode.
	Write(p []byte) (int, error)
	// Commit stores the file; the final ACK is sent only when it returns
	// nil.
	Commit() error
}

// batchSize is the size of an upload's batch, the buffer (from window
// memory) that collects received blocks before they are written to the
// Sink: a write per 32 KiB rather than per block. A block larger than it
// gets a batch of its size.
const batchSize = 32 << 10

// dallyTimeouts is how many retransmission timeouts the final ACK is
// dallied for (RFC 1350 section 6): a client whose final ACK was lost
// sends its last DATA again, and gets the ACK again. One, as tftp-hpa's
// in.tftpd: a client whose timer is longer than the server's sees its
// upload time out although it was stored, on the rare loss of that one
// packet, rather than every upload holding its session and port longer.
const dallyTimeouts = 1

// Errors a receiving session sends on its own.
var (
	// ErrBlockTooLarge ends an upload whose client sent a DATA larger than
	// the negotiated block size.
	ErrBlockTooLarge = &Error{Code: 4, Message: "block larger than the negotiated blksize"}
)

// receiver is the state of an upload (see Receive).
type receiver struct {
	sink    Sink
	dec     netascii.Decoder
	ascii   bool
	batch   []byte // blocks received, not yet written to the sink
	expect  uint64 // the next block, absolute (1-based)
	inWin   int    // blocks received in order since the last ACK sent
	reAcked bool   // the last ACK was sent again for a duplicate, and nothing progressed since
	gapAck  bool   // a gap was acknowledged, and nothing progressed since
}

// Receive takes an upload (a write request) from the client into sink: it
// negotiates the options (tsize is the client's, echoed), sends the OACK
// or ACK 0, receives the DATA in order (RFC 7440 windows: an ACK after
// each window, an ACK of the last block in order when a gap shows, one
// again for duplicates), writes it to sink in batches, calls Commit after
// the last block and, only when Commit succeeded, sends the final ACK and
// dallies for the client's repeat of its last DATA. It returns when the
// session is over (see Stats; Outcome is OK only after a successful
// Commit) and never panics. The caller aborts the upload unless the
// outcome is OutcomeOK.
func (s *Session) Receive(sink Sink) {
	s.allocSmall()
	defer s.release()
	defer func() {
		if v := recover(); v != nil {
			s.Config.Logger.Error("session panic", "session", s.ID, "panic", v)
			s.fail(fmt.Errorf("gateway: panic: %v", v))
		}
	}()
	r := &receiver{sink: sink, ascii: s.Mode == "netascii", expect: 1}
	s.st.TransferSize = declaredSize(s.Options)
	s.p = negotiateWrite(s.Options, s.Config)
	if !s.allocRecv() {
		// No room for a large receive buffer before the client answers:
		// the upload goes on in blocks of 512 bytes.
		c := *s.Config
		c.MaxBlockSize = wire.DefaultBlockSize
		s.p = negotiateWrite(s.Options, &c)
	}
	s.st.BlockSize, s.st.WindowSize = s.p.blksize, s.p.windowsize
	s.st.NegotiatedOptions = s.p.oack
	s.rto = newRTO(s.p.timeout, max(s.Config.MinTimeout, quietFloor), !s.p.clientTimeout)
	s.receive(r)
}

// declaredSize is the size a write request's tsize option declares, -1
// when it has none (or an invalid one).
func declaredSize(opts []wire.Option) int64 {
	for _, o := range opts {
		if o.Name == "tsize" {
			if n, err := strconv.ParseInt(o.Value, 10, 64); err == nil && n >= 0 {
				return n
			}
		}
	}
	return -1
}

// negotiateWrite negotiates a write request's options as negotiate does a
// read's, except tsize: the client's declared size is echoed (RFC 2349),
// 0 included.
func negotiateWrite(opts []wire.Option, c *Config) params {
	p := negotiate(opts, 0, c)
	if c.Refuse&OptTsize != 0 {
		return p
	}
	for i, o := range opts {
		if o.Name != "tsize" {
			continue
		}
		n, err := strconv.ParseInt(o.Value, 10, 64)
		if err != nil || n < 0 {
			break
		}
		// In the order of the request, as negotiate keeps it: after the
		// options acknowledged before it.
		at := 0
		for _, q := range opts[:i] {
			for _, a := range p.oack {
				if a.Name == q.Name {
					at++
				}
			}
		}
		p.oack = append(p.oack[:at:at], append([]wire.Option{{Name: "tsize", Value: strconv.FormatInt(n, 10)}}, p.oack[at:]...)...)
		break
	}
	return p
}

// receive runs an upload from its first answer to its end.
func (s *Session) receive(r *receiver) {
	var first []byte
	if len(s.p.oack) > 0 {
		first = wire.AppendOACK(nil, s.p.oack)
	} else {
		first = wire.AppendAck(s.scratchBuf(), 0)
	}
	resend := func() {
		if r.expect == 1 {
			s.sendThenRead(first)
		} else {
			s.sendAck(r.expect - 1)
		}
		s.st.Retransmits++
		r.inWin = 0
	}
	s.sendThenRead(first)
	now := time.Now()
	s.rto.sent(now, 1)
	s.giveUpAt = now.Add(s.readLimit())
	retries := 0
	deadline := now.Add(s.rto.current())
	for {
		n, ok := s.recv(&deadline, &retries, resend)
		if !ok {
			return
		}
		b := s.rbuf[:n]
		op, _ := wire.PacketOpcode(b)
		switch op {
		case wire.OpDATA:
			blk, payload, err := wire.ParseData(b)
			if err != nil {
				continue
			}
			switch d := blk - uint16(r.expect); {
			case d == 0:
				done, err := s.takeBlock(r, payload)
				if err != nil {
					s.fail(err)
					return
				}
				if done {
					s.finishUpload(r)
					return
				}
				retries = 0
				now := time.Now()
				if r.inWin >= s.p.windowsize {
					s.sendAck(r.expect - 1)
					r.inWin, r.reAcked, r.gapAck = 0, false, false
					s.rto.sent(now, r.expect)
				}
				s.giveUpAt = now.Add(s.readLimit())
				deadline = now.Add(s.rto.current())
			case d < 0x8000:
				// A block beyond the next: the blocks between were lost
				// (or are late). RFC 7440 section 4: acknowledge the last
				// block received in order, once, so that the sender
				// restarts its window right after it.
				if !r.gapAck {
					r.gapAck = true
					r.inWin = 0
					s.sendAck(r.expect - 1)
					s.st.Retransmits++
					s.rto.cancelSample()
				}
			default:
				// A block received before: the sender did not get an ACK
				// (lost, or not yet sent for a window's middle). In
				// lock-step each gets the ACK again (RFC 1350); in a
				// window the first of a run does, so that a resent window
				// costs one ACK, not one per block.
				s.st.DuplicateAcks++
				if s.p.windowsize <= 1 || !r.reAcked {
					// The sender restarts its window after this ACK:
					// count the window from here, as after a gap.
					r.reAcked = true
					r.inWin = 0
					s.sendAck(r.expect - 1)
					s.st.Retransmits++
				}
			}
		case wire.OpERROR:
			code, msg, _ := wire.ParseError(b)
			s.st.ErrorReceived = &Error{Code: code, Message: msg}
			s.st.Outcome = OutcomeAborted
			return
		}
	}
}

// takeBlock takes the next block in order: into the batch (taken from
// window memory on the first block, see answeredUpload), written to the
// sink when full. It
// reports whether it was the last block, after which everything has
// been written.
func (s *Session) takeBlock(r *receiver, payload []byte) (last bool, err error) {
	if len(payload) > s.p.blksize {
		return false, ErrBlockTooLarge
	}
	if r.expect == 1 {
		if err := s.answeredUpload(r); err != nil {
			return false, err
		}
	}
	s.rto.acked(time.Now(), r.expect)
	if len(r.batch)+len(payload)+1 > cap(r.batch) {
		if err := s.flushBatch(r); err != nil {
			return false, err
		}
	}
	if r.ascii {
		r.batch = r.dec.Append(r.batch, payload)
	} else {
		r.batch = append(r.batch, payload...)
	}
	s.st.BytesReceived += int64(len(payload))
	r.expect++
	r.inWin++
	if len(payload) == s.p.blksize {
		return false, nil
	}
	if r.ascii {
		r.batch = r.dec.Flush(r.batch)
	}
	return true, s.flushBatch(r)
}

// allocRecv takes a receive buffer for DATA larger than the session's
// small one (blksize over 512) from window memory. It is taken before the
// client answers, when the request's source may be spoofed: so it is also
// held against the server's budget of unanswered uploads (Host.Unanswered),
// which keeps a flood of write requests that are never answered from
// taking the memory reads need. It reports false when there is no room:
// the upload then takes blksize 512.
func (s *Session) allocRecv() bool {
	pkt := s.p.blksize + wire.HeaderSize + 1 // one more: a longer DATA shows
	if pkt <= len(s.rbuf) {
		return true
	}
	if !s.Host.Unanswered(pkt) {
		return false
	}
	if s.Host.FitWindow(1, pkt) > 0 {
		s.rbufWin = s.Host.GetWindow(pkt)
	}
	if s.rbufWin == nil {
		s.Host.Answered(pkt)
		return false
	}
	s.unanswered = pkt
	s.rbuf = (*s.rbufWin)[:pkt:pkt]
	return true
}

// answeredUpload records that the client sent its first block: the upload
// takes its batch from window memory (refused as busy when there is none)
// and stops counting as unanswered.
func (s *Session) answeredUpload(r *receiver) error {
	s.progressed()
	if s.unanswered > 0 {
		s.Host.Answered(s.unanswered)
		s.unanswered = 0
	}
	n := max(batchSize, s.p.blksize+1)
	if s.Host.FitWindow(1, n) == 0 {
		s.Host.Busy()
		return ErrBusy
	}
	if s.buf = s.Host.GetWindow(n); s.buf == nil {
		s.Host.Busy()
		return ErrBusy
	}
	r.batch = (*s.buf)[:0:n]
	return nil
}

// flushBatch writes the batch to the sink. The write is watched as a
// content read is (see beginRead): a sink that takes longer than the
// session waits for a silent client (a backend that stopped reading its
// stream) has the session cancelled, which ends its call.
func (s *Session) flushBatch(r *receiver) error {
	if len(r.batch) == 0 {
		return nil
	}
	s.beginRead()
	defer s.readStart.Store(0)
	n, err := r.sink.Write(r.batch)
	if err == nil && n != len(r.batch) {
		err = fmt.Errorf("gateway: upload: short write (%d of %d bytes)", n, len(r.batch))
	}
	r.batch = r.batch[:0]
	return err
}

// finishUpload commits the upload and, once it is stored, sends the final
// ACK and dallies. A session cancelled during the Commit (a shutdown)
// still acknowledges what was stored.
func (s *Session) finishUpload(r *receiver) {
	s.beginRead()
	err := r.sink.Commit()
	s.readStart.Store(0)
	if err != nil {
		s.fail(err)
		return
	}
	last := r.expect - 1
	s.sendAck(last)
	s.st.Outcome = OutcomeOK
	s.done = true
	s.dally(uint16(last))
}

// dally waits, after the final ACK, for the client to send its last DATA
// again (its ACK was lost), and acknowledges it again (RFC 1350 section
// 6), for dallyTimeouts timeouts, until the session is cancelled, or
// until the server drains: the upload is stored, and a shutdown need not
// wait for a client's timer (curl negotiates 6 s).
func (s *Session) dally(last uint16) {
	end := time.Now().Add(dallyTimeouts * s.p.timeout)
	for s.Ctx.Err() == nil && !s.Host.Draining() {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		d := now.Add(dallyPoll)
		if end.Before(d) {
			d = end
		}
		s.Conn.SetReadDeadline(d)
		n, from, err := s.Conn.ReadFromUDPAddrPort(s.rbuf)
		if err == nil {
			s.dallyPacket(s.rbuf[:n], from, last)
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		if n, from, ok := s.Conn.ReadQueued(s.rbuf); ok {
			s.dallyPacket(s.rbuf[:n], from, last)
		}
	}
}

// dallyPoll is how often a dallying session looks whether the server
// drains.
const dallyPoll = 100 * time.Millisecond

// dallyPacket answers a repeat of the last DATA with the final ACK again.
func (s *Session) dallyPacket(b []byte, from netip.AddrPort, last uint16) {
	if from.Addr().Unmap() != s.Client.Addr() || from.Port() != s.Client.Port() {
		return
	}
	if blk, _, err := wire.ParseData(b); err == nil && blk == last {
		s.sendAck(uint64(last))
		s.st.Retransmits++
	}
}

// sendAck acknowledges block abs (absolute; the wire carries its low 16
// bits, rolling over to 0 after 65535).
func (s *Session) sendAck(abs uint64) {
	s.send(wire.AppendAck(s.scratchBuf(), uint16(abs)))
}
