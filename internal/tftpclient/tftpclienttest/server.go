// Package tftpclienttest provides a small, scriptable TFTP server on
// 127.0.0.1 for testing TFTP clients (package tftpclient and the tftpbench
// command). It serves reads, and writes when [Config.Writable] is set.
//
// It is deliberately independent of the gateway, sharing only the packet
// codec (internal/wire, whose tests hold the RFCs' bytes): it negotiates
// blksize, windowsize, timeout and tsize, sends windows (RFC 7440) with
// block-number rollover to 0, and lets a test drop DATA packets, replace the
// OACK, stay silent or inject packets, while recording what the client
// sent.
package tftpclienttest

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/internal/wire"
)

// Config scripts the server. The zero value serves nothing (every RRQ gets
// ERROR 1, every WRQ ERROR 2).
type Config struct {
	// Files maps a file name (as sent in the RRQ) to its content.
	Files map[string][]byte
	// Writable makes the server accept WRQs (RFC 7440 receiver: it
	// acknowledges the last block of each window, the final block, and the
	// last in-order block once per gap). What a completed upload received
	// is in [Server.Upload]. The options are negotiated as for reads, tsize
	// echoed. Files is not changed.
	Writable bool
	// NoOptions makes the server ignore all options: RFC 1350 lock-step
	// transfers with 512-byte blocks, no OACK.
	NoOptions bool
	// MaxBlockSize and MaxWindowSize cap the negotiated values (0: no cap).
	MaxBlockSize  int
	MaxWindowSize int
	// Retransmit is the server's retransmission timeout (default 100 ms),
	// Retries how many times it retransmits before giving up (default 5).
	Retransmit time.Duration
	Retries    int
	// Silent makes the server count RRQs and never answer them.
	Silent bool
	// OACK, if set, replaces the negotiated OACK: it receives the RRQ's
	// options (as [Server.Options] gives them) and returns the options to
	// send verbatim. Returning nil sends no OACK; the transfer then uses
	// 512/1.
	OACK func(requested [][2]string) [][2]string
	// DropData, if set, is called before each DATA transmission with the
	// absolute block index (1-based, not rolled over) and how many times
	// that index was sent before; returning true drops the packet. In a
	// write, it is called for each DATA received instead (index as the
	// server reckons it, attempt: how many times it arrived before), and
	// true ignores the packet as if it had been lost.
	DropData func(index, attempt int) bool
	// DropACK, if set, is called before each ACK a write session sends,
	// with the absolute index of the block acknowledged (0 for the ACK of
	// the WRQ) and how many times that ACK was sent before; true drops it.
	DropACK func(index, attempt int) bool
	// AfterData, if set, is called after each DATA transmission (dropped or
	// not) with the block index and the client's address.
	AfterData func(index int, client netip.AddrPort)
	// StopAfterOACK makes the server send the OACK and then ignore
	// everything (used to test client retransmission of ACK 0).
	StopAfterOACK bool
}

// ClientError is an ERROR packet received from a client.
type ClientError struct {
	Code    uint16
	Message string
}

// Server is a running test server. Its methods are safe for concurrent use.
type Server struct {
	cfg  Config
	tb   testing.TB
	conn *net.UDPConn

	wg sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	sessions map[*net.UDPConn]struct{}
	rrqs     int
	wrqs     int
	options  [][][2]string
	uploads  map[string][]byte
	acks     []uint16
	errs     []ClientError
	done     int
}

// NewServer starts a server on 127.0.0.1:0 and stops it with tb.Cleanup.
// Failures to start are reported with tb.Fatal.
func NewServer(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	if cfg.Retransmit <= 0 {
		cfg.Retransmit = 100 * time.Millisecond
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 5
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatalf("tftpclienttest: listen: %v", err)
	}
	s := &Server{cfg: cfg, tb: tb, conn: conn, sessions: map[*net.UDPConn]struct{}{}}
	s.wg.Add(1)
	go s.serve()
	tb.Cleanup(s.Close)
	return s
}

// Addr is the server's listening address as "127.0.0.1:port".
func (s *Server) Addr() string { return s.conn.LocalAddr().String() }

// Close stops the listener and all sessions and waits for them. It is
// idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		_ = s.conn.Close()
		for c := range s.sessions {
			_ = c.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// RRQs is the number of RRQs received on the listening port.
func (s *Server) RRQs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rrqs
}

// WRQs is the number of WRQs received on the listening port.
func (s *Server) WRQs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wrqs
}

// Upload returns what the last completed write of name received, and
// whether there was one.
func (s *Server) Upload(name string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.uploads[name]
	return b, ok
}

// Options returns the options of each RRQ or WRQ received as wire.ParseRequest
// reads them: in order, names lower-cased, a repeated name dropped.
func (s *Server) Options() [][][2]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][][2]string(nil), s.options...)
}

// ACKs returns the block numbers of all ACKs received, in order.
func (s *Server) ACKs() []uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint16(nil), s.acks...)
}

// ClientErrors returns the ERROR packets received from clients.
func (s *Server) ClientErrors() []ClientError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ClientError(nil), s.errs...)
}

// Completed is the number of transfers whose final block was acknowledged
// (sent by the server or, for a write, by the client).
func (s *Server) Completed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

func (s *Server) serve() {
	defer s.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, client, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		req, err := wire.ParseRequest(buf[:n])
		if err != nil {
			continue
		}
		file := req.Filename
		var opts [][2]string
		for _, o := range req.Options {
			opts = append(opts, [2]string{o.Name, o.Value})
		}
		s.mu.Lock()
		if req.Op == wire.OpRRQ {
			s.rrqs++
		} else {
			s.wrqs++
		}
		s.options = append(s.options, opts)
		closed := s.closed
		s.mu.Unlock()
		if s.cfg.Silent || closed {
			continue
		}
		sc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			s.tb.Errorf("tftpclienttest: session listen: %v", err)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = sc.Close()
			return
		}
		s.sessions[sc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.sessions, sc)
				s.mu.Unlock()
				_ = sc.Close()
			}()
			ss := &session{s: s, conn: sc, client: netip.AddrPortFrom(client.Addr().Unmap(), client.Port())}
			if req.Op == wire.OpWRQ {
				ss.runWrite(file, opts)
			} else {
				ss.run(file, opts)
			}
		}()
	}
}

type session struct {
	s      *Server
	conn   *net.UDPConn
	client netip.AddrPort
	buf    [2048]byte

	// A write session's receive buffer, the packet its timer resends (the
	// OACK or the last ACK), that ACK's block index (-1 for the OACK), and
	// how many times each ACK was sent (for DropACK).
	rbuf     []byte
	ackBuf   [4]byte
	reply    []byte
	replyIdx int
	ackTries map[int]int
}

func (ss *session) send(p []byte) bool {
	_, err := ss.conn.WriteToUDPAddrPort(p, ss.client)
	return err == nil
}

func (ss *session) sendError(code uint16, msg string) {
	ss.send(wire.AppendError(nil, code, msg))
}

// errStop ends a session (client error, closed socket or retries exhausted).
var errStop = errors.New("stop")

// recvACK waits up to the retransmission timeout for an ACK from the
// client. It returns ok=false on timeout and errStop when the session must
// end.
func (ss *session) recvACK() (block uint16, ok bool, err error) {
	deadline := time.Now().Add(ss.s.cfg.Retransmit)
	for {
		if err := ss.conn.SetReadDeadline(deadline); err != nil {
			return 0, false, errStop
		}
		n, from, err := ss.conn.ReadFromUDPAddrPort(ss.buf[:])
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return 0, false, nil
			}
			return 0, false, errStop
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if from != ss.client {
			continue
		}
		p := ss.buf[:n]
		if b, err := wire.ParseAck(p); err == nil {
			ss.s.mu.Lock()
			ss.s.acks = append(ss.s.acks, b)
			ss.s.mu.Unlock()
			return b, true, nil
		}
		if code, msg, err := wire.ParseError(p); err == nil {
			ss.s.mu.Lock()
			ss.s.errs = append(ss.s.errs, ClientError{Code: code, Message: msg})
			ss.s.mu.Unlock()
			return 0, false, errStop
		}
	}
}

func (ss *session) run(file string, opts [][2]string) {
	cfg := &ss.s.cfg
	data, found := cfg.Files[file]
	if !found {
		ss.sendError(wire.CodeFileNotFound, "File not found")
		return
	}
	oack, blksize, window := ss.negotiate(opts, strconv.Itoa(len(data)))
	if len(oack) > 0 {
		wopts := make([]wire.Option, len(oack))
		for i, kv := range oack {
			wopts[i] = wire.Option{Name: kv[0], Value: kv[1]}
		}
		p := wire.AppendOACK(nil, wopts)
		if cfg.StopAfterOACK {
			ss.send(p)
			for {
				if _, _, err := ss.recvACK(); err != nil {
					return
				}
			}
		}
		acked := false
		for try := 0; try <= cfg.Retries && !acked; try++ {
			if !ss.send(p) {
				return
			}
			for {
				b, ok, err := ss.recvACK()
				if err != nil {
					return
				}
				if !ok {
					break
				}
				if b == 0 {
					acked = true
					break
				}
			}
		}
		if !acked {
			return
		}
	}
	ss.sendData(data, blksize, window)
}

// negotiate returns the OACK's options for the request's opts (lower-case
// names, without repeats) and the block and window sizes in use; tsize is
// the value a tsize option is answered with.
func (ss *session) negotiate(opts [][2]string, tsize string) (oack [][2]string, blksize, window int) {
	cfg := &ss.s.cfg
	blksize, window = 512, 1
	if cfg.OACK != nil {
		oack = cfg.OACK(opts)
		for _, kv := range oack {
			switch kv[0] {
			case "blksize":
				if v, err := strconv.Atoi(kv[1]); err == nil && v >= 8 {
					blksize = v
				}
			case "windowsize":
				if v, err := strconv.Atoi(kv[1]); err == nil && v >= 1 {
					window = v
				}
			}
		}
	} else if !cfg.NoOptions {
		for _, kv := range opts { // lower-cased names, without repeats
			v, err := strconv.Atoi(kv[1])
			switch kv[0] {
			case "blksize":
				if err != nil || v < wire.MinBlockSize {
					continue
				}
				v = min(v, wire.MaxBlockSize)
				if cfg.MaxBlockSize > 0 {
					v = min(v, cfg.MaxBlockSize)
				}
				blksize = v
				oack = append(oack, [2]string{"blksize", strconv.Itoa(v)})
			case "windowsize":
				if err != nil || v < 1 {
					continue
				}
				v = min(v, wire.MaxWindowSize)
				if cfg.MaxWindowSize > 0 {
					v = min(v, cfg.MaxWindowSize)
				}
				window = v
				oack = append(oack, [2]string{"windowsize", strconv.Itoa(v)})
			case "timeout":
				if err == nil && v >= 1 && v <= wire.MaxTimeout {
					oack = append(oack, kv)
				}
			case "tsize":
				oack = append(oack, [2]string{"tsize", tsize})
			}
		}
	}
	return oack, blksize, window
}

// runWrite receives an upload as an RFC 7440 receiver and stores it in
// the server's uploads once the final block has arrived.
func (ss *session) runWrite(file string, opts [][2]string) {
	cfg := &ss.s.cfg
	if !cfg.Writable {
		ss.sendError(wire.CodeAccessViolation, "Access violation")
		return
	}
	tsize := ""
	for _, kv := range opts {
		if kv[0] == "tsize" {
			tsize = kv[1]
		}
	}
	oack, blksize, window := ss.negotiate(opts, tsize)
	ss.rbuf = make([]byte, wire.HeaderSize+blksize+1) // one spare byte spots oversized DATA
	ss.ackTries = map[int]int{}
	if len(oack) > 0 {
		wopts := make([]wire.Option, len(oack))
		for i, kv := range oack {
			wopts[i] = wire.Option{Name: kv[0], Value: kv[1]}
		}
		ss.reply, ss.replyIdx = wire.AppendOACK(nil, wopts), -1
		ss.sendReply()
	} else {
		ss.ack(0)
	}

	var (
		got      []byte
		expected = 1 // index of the next in-order block
		sinceAck = 0
		gapAcked = false
		tries    = 0
		arrivals = map[int]int{}
	)
	for {
		p, ok, err := ss.recv(time.Now().Add(cfg.Retransmit))
		if err != nil {
			return
		}
		if !ok {
			tries++
			if tries > cfg.Retries {
				return
			}
			ss.sendReply()
			continue
		}
		block, data, err := wire.ParseData(p)
		if err != nil {
			continue
		}
		idx := expected + int(int16(block-uint16(expected)))
		if cfg.DropData != nil {
			a := arrivals[idx]
			arrivals[idx] = a + 1
			if cfg.DropData(idx, a) {
				continue
			}
		}
		if len(data) > blksize {
			ss.sendError(wire.CodeIllegalOperation, "block too large")
			return
		}
		if idx != expected {
			if !gapAcked {
				gapAcked, sinceAck = true, 0
				ss.ack(expected - 1)
			}
			continue
		}
		gapAcked, tries = false, 0
		got = append(got, data...)
		expected++
		sinceAck++
		if len(data) < blksize {
			// Stored before the final ACK: a client that has it may look.
			ss.s.mu.Lock()
			if ss.s.uploads == nil {
				ss.s.uploads = map[string][]byte{}
			}
			ss.s.uploads[file] = got
			ss.s.done++
			ss.s.mu.Unlock()
			ss.ack(idx)
			ss.dally(block)
			return
		}
		if sinceAck >= window {
			sinceAck = 0
			ss.ack(idx)
		}
	}
}

// dally answers retransmissions of the final block (whose ACK was lost)
// until the client has been quiet for a retransmission timeout, Retries
// times at most.
func (ss *session) dally(final uint16) {
	deadline := time.Now().Add(ss.s.cfg.Retransmit)
	for answered := 0; answered < ss.s.cfg.Retries; {
		p, ok, err := ss.recv(deadline)
		if err != nil || !ok {
			return
		}
		if block, _, err := wire.ParseData(p); err == nil && block == final {
			ss.sendReply()
			answered++
			deadline = time.Now().Add(ss.s.cfg.Retransmit)
		}
	}
}

// ack makes the ACK of block index idx the write session's reply and
// sends it.
func (ss *session) ack(idx int) {
	ss.reply, ss.replyIdx = wire.AppendAck(ss.ackBuf[:0], uint16(idx)), idx
	ss.sendReply()
}

// sendReply sends the write session's reply (again), unless it is an ACK
// that DropACK drops.
func (ss *session) sendReply() {
	if ss.replyIdx >= 0 && ss.s.cfg.DropACK != nil {
		a := ss.ackTries[ss.replyIdx]
		ss.ackTries[ss.replyIdx] = a + 1
		if ss.s.cfg.DropACK(ss.replyIdx, a) {
			return
		}
	}
	ss.send(ss.reply)
}

// recv waits until deadline for a packet from the client. ok is false on
// timeout; err (errStop) ends the session, on a client ERROR too, which
// is recorded.
func (ss *session) recv(deadline time.Time) (p []byte, ok bool, err error) {
	for {
		if err := ss.conn.SetReadDeadline(deadline); err != nil {
			return nil, false, errStop
		}
		n, from, err := ss.conn.ReadFromUDPAddrPort(ss.rbuf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, false, nil
			}
			return nil, false, errStop
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if from != ss.client {
			continue
		}
		p := ss.rbuf[:n]
		if code, msg, err := wire.ParseError(p); err == nil {
			ss.s.mu.Lock()
			ss.s.errs = append(ss.s.errs, ClientError{Code: code, Message: msg})
			ss.s.mu.Unlock()
			return nil, false, errStop
		}
		return p, true, nil
	}
}

// sendData sends the file in windows and returns when the final block is
// acknowledged, the client errors or retries run out.
func (ss *session) sendData(data []byte, blksize, window int) {
	cfg := &ss.s.cfg
	nblocks := len(data)/blksize + 1 // the last block is short, maybe empty
	attempts := map[int]int{}
	pkt := make([]byte, 0, wire.HeaderSize+blksize)
	sendBlock := func(idx int) bool {
		start := (idx - 1) * blksize
		end := min(start+blksize, len(data))
		p := wire.AppendData(pkt[:0], uint16(idx), data[start:end])
		a := attempts[idx]
		attempts[idx] = a + 1
		ok := true
		if cfg.DropData == nil || !cfg.DropData(idx, a) {
			ok = ss.send(p)
		}
		if cfg.AfterData != nil {
			cfg.AfterData(idx, ss.client)
		}
		return ok
	}
	base := 1 // first unacknowledged block index
	tries := 0
	for {
		last := min(base+window-1, nblocks)
		for i := base; i <= last; i++ {
			if !sendBlock(i) {
				return
			}
		}
		for {
			b, ok, err := ss.recvACK()
			if err != nil {
				return
			}
			if !ok {
				tries++
				if tries > cfg.Retries {
					return
				}
				break // resend the window from base
			}
			// Map the 16-bit block number to an index in [base-1, last].
			idx := base - 1 + int(b-uint16(base-1))
			if idx > last || idx == base-1 {
				// A stale, bogus or duplicate ACK. Never resend because of
				// a duplicate ACK (Sorcerer's Apprentice, RFC 1123
				// 4.2.3.1): only the timer restarts the window.
				continue
			}
			tries = 0
			if idx == nblocks {
				ss.s.mu.Lock()
				ss.s.done++
				ss.s.mu.Unlock()
				return
			}
			base = idx + 1
			break
		}
	}
}
