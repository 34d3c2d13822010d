package tftpclient

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tftpgw/tftpgw/internal/wire"
)

// Defaults applied by [Get], [Put] and [Probe].
const (
	DefaultRetries           = 5
	DefaultRecvBuffer        = 4 << 20
	DefaultRetransmitTimeout = 2 * time.Second
)

// Option limits (RFC 2348, RFC 2349, RFC 7440).
const (
	MinBlockSize  = wire.MinBlockSize
	MaxBlockSize  = wire.MaxBlockSize
	MaxWindowSize = wire.MaxWindowSize
	MaxTimeout    = wire.MaxTimeout
)

// Options controls a transfer. The zero value requests no options: a plain
// RFC 1350 octet transfer with 512-byte blocks.
type Options struct {
	// BlockSize is the blksize option to request (8..65464); 0 sends none.
	BlockSize int
	// WindowSize is the windowsize option to request (1..65535); 0 sends
	// none.
	WindowSize int
	// Timeout is the timeout option to request in seconds (1..255); 0 sends
	// none. When set it is also the client's retransmission timeout unless
	// RetransmitTimeout overrides it.
	Timeout int
	// TSize sends "tsize 0" and reports the server's answer in
	// Result.TSize. [Put] sends the size it is given instead, and no tsize
	// when that size is unknown (-1).
	TSize bool
	// Mode is "octet" (the default when empty) or "netascii",
	// case-insensitive. [Get] returns netascii data untranslated; [Put]
	// translates it on the way out (LF to CR LF, CR to CR NUL).
	Mode string
	// Retries is how many times the client retransmits its last packet (the
	// RRQ or the last ACK; for [Put] the WRQ or the window of DATA) when the
	// server goes quiet before giving up with ErrTimeout. 0 means
	// DefaultRetries; a negative value means none.
	Retries int
	// RecvBuffer is the socket receive buffer (SO_RCVBUF) in bytes; 0 means
	// DefaultRecvBuffer. A small buffer loses the tail of large windows.
	RecvBuffer int
	// RetransmitTimeout is how long the client waits for the server before
	// retransmitting. 0 means Timeout seconds if Timeout is set, otherwise
	// DefaultRetransmitTimeout. It is never sent on the wire; tests use it
	// to fail fast.
	RetransmitTimeout time.Duration
	// ExtraOptions are sent verbatim after the options above. Their names
	// count as requested when the OACK is validated; blksize, windowsize
	// and timeout values given here are validated like the typed fields.
	ExtraOptions [][2]string
	// AckEveryGap acknowledges every block that arrives out of order with
	// the last in-order block, as EDK2's UEFI PXE client does, which gives
	// the server bursts of duplicate ACKs; by default the client
	// acknowledges a gap once (RFC 7440 section 4).
	AckEveryGap bool
	// LocalAddr is the address the client's socket binds to (port 0); the
	// unspecified address of the server's family when not valid. Tests and
	// tftpbench use loopback addresses other than 127.0.0.1 to stand for
	// many clients.
	LocalAddr netip.Addr
}

// Result describes a finished (or failed) transfer. On error the fields
// describe what happened until the failure. Where a field's meaning
// differs between a read ([Get]) and a write ([Put]), its doc says both.
type Result struct {
	// Size is the DATA payload in bytes: received and written to w (Get),
	// or sent, each block counted once (Put; after netascii translation).
	Size       int64
	TSize      int64             // tsize from the OACK, -1 if absent
	Negotiated map[string]string // OACK options (lower-case names), nil if no OACK
	// BlockSize and WindowSize are the values in use: negotiated, or 512
	// and 1 without an OACK (0 if the server never answered).
	BlockSize  int
	WindowSize int
	// TimeToFirst is, for Get, RRQ sent -> first DATA received; for Put,
	// WRQ sent -> the server's first answer (OACK or ACK 0).
	TimeToFirst time.Duration
	// TimeToFirstWire is TimeToFirst as the kernel saw it: RRQ sent ->
	// first DATA queued on the client's socket (its receive timestamp),
	// less the client's own time between an OACK's arrival and its ACK 0.
	// It is the wait on the network and the server alone, without the
	// client's scheduling delays (a load generator running thousands of
	// transfers has many). 0 where the kernel gives no timestamps (Linux
	// only) or the transfer got no DATA. Always 0 for Put.
	TimeToFirstWire time.Duration
	Duration        time.Duration // request sent -> return
	// Packets is the number of DATA packets received (Get) or sent,
	// retransmissions included (Put).
	Packets int64
	// Duplicates is the number of DATA packets received again or out of
	// order (Get), or of ACKs that acknowledged nothing new: repeated,
	// stale or beyond what was sent (Put).
	Duplicates int64
	// Retransmits is the number of packets the client sent again: on its
	// timer (the request, an ACK, or for Put the DATA of a window) and,
	// for Put, the DATA resent after an ACK inside the window (a gap).
	Retransmits int64
	ServerAddr  netip.AddrPort // the server's TID (source of the first reply)
}

// longAgo is a deadline in the past, used to interrupt a blocked read.
var longAgo = time.Unix(1, 0)

// transfer is the state shared by Get, Put and Probe.
type transfer struct {
	conn    *net.UDPConn
	server  netip.AddrPort // where the RRQ goes
	peer    netip.AddrPort // the server's TID once locked
	locked  bool
	rrq     []byte // the request: RRQ or WRQ
	ack     [4]byte
	last    []byte // last packet sent: rrq, ack or DATA
	buf     []byte
	tidErr  []byte // lazily built ERROR 5
	rto     time.Duration
	retries int // retransmissions allowed
	tries   int // retransmissions since the last progress
	// resend, if set, replaces the retransmission of last on timeout
	// (Put resends a window); it returns the packets it sent.
	resend      func() (int, error)
	retransmits int64       // packets sent again
	op          wire.Opcode // OpRRQ or OpWRQ
	dead        time.Time
	sent        time.Time // first RRQ

	// Kernel receive timestamps, until the first DATA (TimeToFirstWire).
	stamps bool
	oob    []byte
	rx     time.Time // when the packet last read reached the socket; zero if unknown

	requested map[string]string // lower-case option name -> value
	reqBlk    int               // requested blksize, 0 if none
	reqWin    int               // requested windowsize, 0 if none
	reqTmo    string            // requested timeout, "" if none
}

// newTransfer validates the options, resolves server, opens the socket and
// builds the request op (RRQ or WRQ); tsize is the tsize value a request
// with o.TSize carries, none if negative.
func newTransfer(ctx context.Context, server, file string, o Options, op wire.Opcode, tsize int64) (*transfer, error) {
	mode := strings.ToLower(o.Mode)
	if mode == "" {
		mode = "octet"
	}
	if mode != "octet" && mode != "netascii" {
		return nil, fmt.Errorf("tftpclient: unsupported mode %q", o.Mode)
	}
	if strings.IndexByte(file, 0) >= 0 {
		return nil, errors.New("tftpclient: file name contains NUL")
	}
	t := &transfer{op: op}
	opts, err := t.request(o, tsize)
	if err != nil {
		return nil, err
	}

	t.rto = DefaultRetransmitTimeout
	if o.Timeout > 0 {
		t.rto = time.Duration(o.Timeout) * time.Second
	}
	if o.RetransmitTimeout > 0 {
		t.rto = o.RetransmitTimeout
	}
	t.retries = o.Retries
	switch {
	case t.retries == 0:
		t.retries = DefaultRetries
	case t.retries < 0:
		t.retries = 0
	}

	addr, err := resolve(ctx, server)
	if err != nil {
		return nil, err
	}
	t.server = addr
	network, laddr := "udp4", &net.UDPAddr{IP: net.IPv4zero}
	if !addr.Addr().Is4() {
		network, laddr = "udp6", &net.UDPAddr{IP: net.IPv6unspecified}
	}
	if o.LocalAddr.IsValid() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(o.LocalAddr, 0))
	}
	conn, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, fmt.Errorf("tftpclient: %w", err)
	}
	rcv := o.RecvBuffer
	if rcv <= 0 {
		rcv = DefaultRecvBuffer
	}
	_ = conn.SetReadBuffer(rcv) // best effort: the kernel may cap it
	t.conn = conn
	if op == wire.OpRRQ && stampSpace > 0 && setStamps(conn, true) {
		t.stamps, t.oob = true, make([]byte, stampSpace)
	}

	bufBlk := wire.DefaultBlockSize
	if t.reqBlk > bufBlk && t.reqBlk <= MaxBlockSize {
		bufBlk = t.reqBlk
	}
	// One spare byte detects DATA larger than the negotiated block size.
	t.buf = make([]byte, wire.HeaderSize+bufBlk+1)
	t.rrq = wire.AppendRequest(nil, op, file, mode, opts)
	return t, nil
}

// request validates the options of o and returns those the request
// carries, in order, noting in t what was requested for
// [transfer.negotiate]. A tsize option carries tsize, and is left out when
// tsize is negative.
func (t *transfer) request(o Options, tsize int64) ([]wire.Option, error) {
	var opts []wire.Option
	if o.BlockSize != 0 {
		if o.BlockSize < MinBlockSize || o.BlockSize > MaxBlockSize {
			return nil, fmt.Errorf("tftpclient: blksize %d out of range %d..%d", o.BlockSize, MinBlockSize, MaxBlockSize)
		}
		opts = append(opts, wire.Option{Name: "blksize", Value: strconv.Itoa(o.BlockSize)})
	}
	if o.Timeout != 0 {
		if o.Timeout < 1 || o.Timeout > MaxTimeout {
			return nil, fmt.Errorf("tftpclient: timeout %d out of range 1..%d", o.Timeout, MaxTimeout)
		}
		opts = append(opts, wire.Option{Name: "timeout", Value: strconv.Itoa(o.Timeout)})
	}
	if o.TSize && tsize >= 0 {
		opts = append(opts, wire.Option{Name: "tsize", Value: strconv.FormatInt(tsize, 10)})
	}
	if o.WindowSize != 0 {
		if o.WindowSize < 1 || o.WindowSize > MaxWindowSize {
			return nil, fmt.Errorf("tftpclient: windowsize %d out of range 1..%d", o.WindowSize, MaxWindowSize)
		}
		opts = append(opts, wire.Option{Name: "windowsize", Value: strconv.Itoa(o.WindowSize)})
	}
	for _, kv := range o.ExtraOptions {
		opts = append(opts, wire.Option{Name: kv[0], Value: kv[1]})
	}

	t.requested = make(map[string]string, len(opts))
	for _, opt := range opts {
		if strings.IndexByte(opt.Name, 0) >= 0 || strings.IndexByte(opt.Value, 0) >= 0 || opt.Name == "" {
			return nil, fmt.Errorf("tftpclient: invalid option %q=%q", opt.Name, opt.Value)
		}
		name := strings.ToLower(opt.Name)
		if _, dup := t.requested[name]; dup {
			continue // the first occurrence is the one validated
		}
		t.requested[name] = opt.Value
		switch name {
		case "blksize":
			t.reqBlk, _ = strconv.Atoi(opt.Value)
		case "windowsize":
			t.reqWin, _ = strconv.Atoi(opt.Value)
		case "timeout":
			t.reqTmo = opt.Value
		}
	}
	return opts, nil
}

// resolve turns "host:port" into an address, preferring a literal.
func resolve(ctx context.Context, server string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("tftpclient: server address: %w", err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		pn, lerr := net.DefaultResolver.LookupPort(ctx, "udp", port)
		if lerr != nil {
			return netip.AddrPort{}, fmt.Errorf("tftpclient: server port %q: %w", port, lerr)
		}
		p = uint64(pn)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("tftpclient: resolve %q: %w", host, err)
	}
	if len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("tftpclient: resolve %q: no addresses", host)
	}
	for _, a := range addrs { // prefer IPv4, like most firmware
		if a.Unmap().Is4() {
			return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
		}
	}
	return netip.AddrPortFrom(addrs[0], uint16(p)), nil
}

// dest is where replies to the server go: its TID once known.
func (t *transfer) dest() netip.AddrPort {
	if t.locked {
		return t.peer
	}
	return t.server
}

// send transmits p, remembers it for retransmission and restarts the
// retransmission timer.
func (t *transfer) send(p []byte) error {
	t.last = p
	t.dead = time.Now().Add(t.rto)
	if _, err := t.conn.WriteToUDPAddrPort(p, t.dest()); err != nil {
		return fmt.Errorf("tftpclient: send: %w", err)
	}
	return nil
}

// sendACK acknowledges block.
func (t *transfer) sendACK(block uint16) error {
	return t.send(wire.AppendAck(t.ack[:0], block)) // reuses t.ack: no allocation
}

// progress records that the server made progress: the retry budget is
// refilled.
func (t *transfer) progress() {
	t.tries = 0
	t.dead = time.Now().Add(t.rto)
}

// abort sends an ERROR to the server's TID (if known). Errors are neither
// acknowledged nor retransmitted (RFC 1350), so this is best effort.
func (t *transfer) abort(code uint16, msg string) {
	if !t.locked {
		return
	}
	_, _ = t.conn.WriteToUDPAddrPort(wire.AppendError(nil, code, msg), t.peer)
}

// fail sends ERROR code/msg to the server and returns err.
func (t *transfer) fail(code uint16, msg string, err error) error {
	t.abort(code, msg)
	return err
}

// next returns the next packet from the server's TID (opcode included; at
// least 4 bytes unless it is an empty OACK). It retransmits the last packet on timeout, answers foreign
// TIDs with ERROR 5, locks onto the first reply's source and handles
// cancellation of ctx.
func (t *transfer) next(ctx context.Context) ([]byte, error) {
	for {
		if err := t.conn.SetReadDeadline(t.dead); err != nil {
			return nil, fmt.Errorf("tftpclient: %w", err)
		}
		// Checked after SetReadDeadline: a cancellation racing with it has
		// either been seen here or has moved the deadline to the past.
		if ctx.Err() != nil {
			return nil, t.fail(wire.CodeNotDefined, "cancelled", ctx.Err())
		}
		n, from, err := t.read()
		if err != nil {
			if ctx.Err() != nil {
				return nil, t.fail(wire.CodeNotDefined, "cancelled", ctx.Err())
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if t.tries >= t.retries {
					return nil, fmt.Errorf("%w: no answer after %d retransmissions (timeout %v)", ErrTimeout, t.tries, t.rto)
				}
				t.tries++
				if t.resend != nil {
					n, err := t.resend()
					t.retransmits += int64(n)
					if err != nil {
						return nil, err
					}
					continue
				}
				t.retransmits++
				if err := t.send(t.last); err != nil {
					return nil, err
				}
				continue
			}
			return nil, fmt.Errorf("tftpclient: receive: %w", err)
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		p := t.buf[:n]
		if !t.locked {
			// Only an OACK, DATA 1 or an ERROR answers a request. Anything
			// else is a stray that reached this fresh socket first, such
			// as the retransmitted final DATA of an earlier transfer whose
			// client had the same port: locking onto its source would tie
			// this transfer to that session. So is a DATA 1 of more than
			// 512 bytes when a blksize was asked for: a server that
			// answers without an OACK uses 512 (without options, such a
			// DATA 1 is the server's protocol error, reported below).
			if !t.answers(p) {
				continue
			}
			t.locked = true
			t.peer = from
		} else if from != t.peer {
			if t.tidErr == nil {
				t.tidErr = wire.AppendError(nil, wire.CodeUnknownTID, "unknown transfer ID")
			}
			_, _ = t.conn.WriteToUDPAddrPort(t.tidErr, from)
			continue
		}
		// Only an OACK (with no options) may be shorter than a header.
		if n < wire.HeaderSize && (n < 2 || opcode(p) != wire.OpOACK) {
			return nil, t.fail(wire.CodeIllegalOperation, "short packet", fmt.Errorf("%w: %d-byte packet", ErrProtocol, n))
		}
		return p, nil
	}
}

// answers reports whether p, the first packet from the server's side, can
// answer a request: an OACK, an ERROR, for an RRQ a DATA 1 that is not
// longer than 512 bytes when a blksize was asked for (see next), for a WRQ
// an ACK 0.
func (t *transfer) answers(p []byte) bool {
	op, err := wire.PacketOpcode(p)
	switch {
	case err != nil:
		return false
	case op == wire.OpOACK:
		return true
	case op == wire.OpERROR:
		return len(p) >= wire.HeaderSize
	case op == wire.OpACK:
		block, err := wire.ParseAck(p)
		return t.op == wire.OpWRQ && err == nil && block == 0
	case op == wire.OpDATA && t.op == wire.OpRRQ:
		block, data, err := wire.ParseData(p)
		return err == nil && block == 1 && (len(data) <= wire.DefaultBlockSize || t.reqBlk == 0)
	}
	return false
}

// opcode returns the opcode of p, a packet returned by next.
func opcode(p []byte) wire.Opcode {
	return wire.Opcode(binary.BigEndian.Uint16(p))
}

// serverError returns the ERROR packet p, returned by next, as an *Error.
func serverError(p []byte) *Error {
	code, msg, _ := wire.ParseError(p)
	return &Error{Code: code, Message: msg}
}

// read reads the next datagram, with its kernel receive time in t.rx while
// timestamps are on.
func (t *transfer) read() (int, netip.AddrPort, error) {
	if !t.stamps {
		return t.conn.ReadFromUDPAddrPort(t.buf)
	}
	n, oobn, _, from, err := t.conn.ReadMsgUDPAddrPort(t.buf, t.oob)
	t.rx = time.Time{}
	if err == nil {
		if ts, ok := parseStamp(t.oob[:oobn]); ok {
			t.rx = ts
		}
	}
	return n, from, err
}

// stopStamps turns kernel receive timestamps off: they are only needed
// until the first DATA.
func (t *transfer) stopStamps() {
	if t.stamps {
		t.stamps = false
		setStamps(t.conn, false)
	}
}

// negotiate validates an OACK against the request and returns the
// negotiated options.
func (t *transfer) negotiate(p []byte) (map[string]string, error) {
	opts, err := wire.ParseOACK(p)
	if err != nil {
		return nil, err
	}
	if len(opts) == 0 {
		return nil, errors.New("empty OACK")
	}
	m := make(map[string]string, len(opts))
	for _, o := range opts {
		name, value := o.Name, o.Value
		req, ok := t.requested[name]
		if !ok {
			return nil, fmt.Errorf("option %q was not requested", name)
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("option %q repeated", name)
		}
		switch name {
		case "blksize":
			v, err := strconv.Atoi(value)
			if err != nil || v < MinBlockSize || v > MaxBlockSize {
				return nil, fmt.Errorf("blksize %q invalid", value)
			}
			if v > t.reqBlk {
				return nil, fmt.Errorf("blksize %d larger than requested %q", v, req)
			}
		case "windowsize":
			v, err := strconv.Atoi(value)
			if err != nil || v < 1 || v > MaxWindowSize {
				return nil, fmt.Errorf("windowsize %q invalid", value)
			}
			if v > t.reqWin {
				return nil, fmt.Errorf("windowsize %d larger than requested %q", v, req)
			}
		case "timeout":
			if value != t.reqTmo {
				return nil, fmt.Errorf("timeout %q differs from requested %q", value, req)
			}
		case "tsize":
			v, err := strconv.ParseInt(value, 10, 64)
			if err != nil || v < 0 {
				return nil, fmt.Errorf("tsize %q invalid", value)
			}
		}
		m[name] = value
	}
	return m, nil
}

// startCancel makes a blocked read return when ctx is cancelled. The
// returned stop function must be called before the transfer ends.
func (t *transfer) startCancel(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = t.conn.SetReadDeadline(longAgo) })
}

// Get fetches file from server ("host:port") and writes it to w, in order.
//
// It sends the RRQ from a fresh UDP socket of the server's address family,
// locks onto the source of the first reply (the server's TID), validates any
// OACK and acknowledges it with ACK 0, falls back to 512-byte lock-step when
// the server answers with DATA 1 directly, and acknowledges as an RFC 7440
// receiver: the last block of each window, the final short block, and, once
// per gap, the last in-order block. It returns after the final ACK.
//
// An ERROR from the server is returned as *Error. When ctx is cancelled the
// server is sent ERROR 0 "cancelled" and ctx.Err() is returned. If w fails,
// the server is sent ERROR 0 and the write error is returned.
func Get(ctx context.Context, server, file string, w io.Writer, o Options) (res Result, err error) {
	res.TSize = -1
	t, err := newTransfer(ctx, server, file, o, wire.OpRRQ, 0)
	if err != nil {
		return res, err
	}
	defer t.conn.Close()
	defer t.startCancel(ctx)()
	t.sent = time.Now()
	var (
		blksize = 512
		window  = 1
	)
	defer func() {
		res.Duration = time.Since(t.sent)
		res.ServerAddr = t.peer
		res.Retransmits = t.retransmits
		if t.locked {
			res.BlockSize, res.WindowSize = blksize, window
		}
	}()
	if err := t.send(t.rrq); err != nil {
		return res, err
	}

	var (
		expected = uint16(1) // next in-order block
		sinceAck = 0         // in-order blocks since the last ACK sent
		gapAcked = false     // a gap ACK was sent since the last in-order block
		gotOACK  = false
		// The client's own time from the OACK's arrival to its ACK 0, left
		// out of TimeToFirstWire; -1 when the OACK had no timestamp.
		turnaround time.Duration
	)
	for {
		p, err := t.next(ctx)
		if err != nil {
			return res, err
		}
		switch opcode(p) {
		case wire.OpERROR:
			return res, serverError(p)

		case wire.OpOACK:
			if res.Packets > 0 {
				continue // a late OACK retransmission; DATA has started
			}
			if gotOACK {
				// Our ACK 0 was lost and the server resent the OACK.
				if err := t.sendACK(0); err != nil {
					return res, err
				}
				continue
			}
			m, err := t.negotiate(p)
			if err != nil {
				return res, t.fail(wire.CodeOptionNegotiation, "invalid OACK", fmt.Errorf("%w: %v", ErrBadOACK, err))
			}
			gotOACK = true
			res.Negotiated = m
			if v, ok := m["blksize"]; ok {
				blksize, _ = strconv.Atoi(v)
			}
			if v, ok := m["windowsize"]; ok {
				window, _ = strconv.Atoi(v)
			}
			if v, ok := m["tsize"]; ok {
				res.TSize, _ = strconv.ParseInt(v, 10, 64)
			}
			t.progress()
			oackAt := t.rx
			if err := t.sendACK(0); err != nil {
				return res, err
			}
			turnaround = -1
			if !oackAt.IsZero() {
				turnaround = time.Since(oackAt)
			}

		case wire.OpDATA:
			block, data, _ := wire.ParseData(p)
			res.Packets++
			if res.Packets == 1 {
				res.TimeToFirst = time.Since(t.sent)
				if !t.rx.IsZero() && turnaround >= 0 {
					res.TimeToFirstWire = max(t.rx.Sub(t.sent)-turnaround, 1)
				}
				t.stopStamps()
			}
			if len(data) > blksize {
				return res, t.fail(wire.CodeIllegalOperation, "block too large",
					fmt.Errorf("%w: DATA %d has %d bytes, block size is %d", ErrProtocol, block, len(data), blksize))
			}
			if block != expected {
				// Out of order: a gap (future block) or a retransmission
				// (past block). Tell the server where we are, once.
				res.Duplicates++
				if !gapAcked || o.AckEveryGap {
					gapAcked = true
					sinceAck = 0
					if err := t.sendACK(expected - 1); err != nil {
						return res, err
					}
				}
				continue
			}
			gapAcked = false
			if len(data) > 0 {
				if _, err := w.Write(data); err != nil {
					return res, t.fail(wire.CodeNotDefined, "write failed", fmt.Errorf("tftpclient: write: %w", err))
				}
			}
			res.Size += int64(len(data))
			expected++ // rolls over 65535 -> 0
			sinceAck++
			t.progress()
			if len(data) < blksize {
				// Final block: acknowledge and finish without dallying.
				return res, t.sendACK(block)
			}
			if sinceAck >= window {
				sinceAck = 0
				if err := t.sendACK(block); err != nil {
					return res, err
				}
			}

		default:
			return res, t.fail(wire.CodeIllegalOperation, "illegal TFTP operation",
				fmt.Errorf("%w: opcode %d", ErrProtocol, opcode(p)))
		}
	}
}

// Probe performs the UEFI size probe: an RRQ with "tsize 0" (plus the
// blksize, windowsize, timeout and extra options set in o), a wait for the
// OACK, then ERROR 8 "User aborted the transfer". It returns the tsize the
// server announced. o.TSize is ignored (tsize is always requested).
//
// A server that answers with DATA instead of an OACK, or with an OACK
// without tsize, is sent ERROR 8 as well and ErrNoTSize is returned.
func Probe(ctx context.Context, server, file string, o Options) (tsize int64, err error) {
	o.TSize = true
	t, err := newTransfer(ctx, server, file, o, wire.OpRRQ, 0)
	if err != nil {
		return -1, err
	}
	defer t.conn.Close()
	defer t.startCancel(ctx)()
	t.sent = time.Now()
	if err := t.send(t.rrq); err != nil {
		return -1, err
	}
	p, err := t.next(ctx)
	if err != nil {
		return -1, err
	}
	const abortMsg = "User aborted the transfer"
	switch opcode(p) {
	case wire.OpERROR:
		return -1, serverError(p)
	case wire.OpDATA:
		return -1, t.fail(wire.CodeOptionNegotiation, abortMsg, fmt.Errorf("%w: server answered with DATA", ErrNoTSize))
	case wire.OpOACK:
		m, err := t.negotiate(p)
		if err != nil {
			return -1, t.fail(wire.CodeOptionNegotiation, "invalid OACK", fmt.Errorf("%w: %v", ErrBadOACK, err))
		}
		v, ok := m["tsize"]
		if !ok {
			return -1, t.fail(wire.CodeOptionNegotiation, abortMsg, ErrNoTSize)
		}
		n, _ := strconv.ParseInt(v, 10, 64) // validated by negotiate
		t.abort(wire.CodeOptionNegotiation, abortMsg)
		return n, nil
	default:
		return -1, t.fail(wire.CodeIllegalOperation, "illegal TFTP operation",
			fmt.Errorf("%w: opcode %d", ErrProtocol, opcode(p)))
	}
}
