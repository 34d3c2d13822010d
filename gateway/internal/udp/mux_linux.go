package udp

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tftpgw/tftpgw/internal/wire"
)

// muxSender sends a single-port session's packets to its client with a
// raw system call on the listening socket's descriptor: sendto, or
// sendmsg when a control message picks the source address, with the
// client's address prepared once. net's WriteMsgUDPAddrPort takes the
// socket's write lock, which every session of the listener shares and
// contends for, and converts the address on every call. The descriptor is
// held through RawConn.Control, which counts a reference (the socket
// cannot be closed and its number reused during the call) but takes no
// lock: the kernel sends datagrams on one socket from several threads.
type muxSender struct {
	l      *Listener // nil: not available, the caller uses net's path
	client netip.AddrPort
	oob    []byte // the source address's control message, if any

	mu       sync.Mutex // one send at a time uses the fields below
	prepared bool       // by the first send, on the session's goroutine
	rc       syscall.RawConn
	sendFn   func(fd uintptr)
	buf      []byte
	sent     bool // the datagram went out or failed; false: EAGAIN
	err      error

	sa   sockaddr // the client's
	msg  unix.Msghdr
	iov  unix.Iovec
	addr *net.UDPAddr // the client, for errors
}

// init makes s send to client from l's socket, with the control message
// oob (from sourceOOB). It runs on the listener's read loop, so the
// address is prepared later, by the first send (a zone's interface index
// is a netlink query).
func (s *muxSender) init(l *Listener, client netip.AddrPort, oob []byte) {
	if fastPath && l.rc != nil {
		s.l, s.client, s.oob = l, client, oob
	}
}

// prepare sets up the client's address and the message header; s.rc
// stays nil when the socket's family is unknown or cannot reach client.
func (s *muxSender) prepare() {
	s.prepared = true
	a := s.client.Addr()
	switch {
	case s.l.domain == unix.AF_INET && a.Is4():
		s.sa.set(s.client, true)
	case s.l.domain == unix.AF_INET6:
		// An IPv4 client of a dual-stack socket is v4-mapped, as net
		// maps it.
		s.sa.set(s.client, false)
	default:
		return
	}
	if len(s.oob) > 0 {
		s.msg.Name = (*byte)(s.sa.p)
		s.msg.Namelen = uint32(s.sa.len)
		s.msg.Iov = &s.iov
		s.msg.Iovlen = 1
		s.msg.Control = &s.oob[0]
		s.msg.SetControllen(len(s.oob))
	}
	s.addr = net.UDPAddrFromAddrPort(s.client)
	s.rc, s.sendFn = s.l.rc, s.send
}

// to sends b to the client. sent is false when the caller must send b
// itself: s is not set up, the socket's buffer is full (net's path waits
// for room) or the socket is closed (net's path says so).
func (s *muxSender) to(b []byte) (sent bool, err error) {
	if s.l == nil {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.prepared {
		s.prepare()
	}
	if s.rc == nil {
		return false, nil
	}
	s.buf, s.sent, s.err = b, false, nil
	if err := s.rc.Control(s.sendFn); err != nil {
		return false, nil
	}
	s.buf = nil
	return s.sent, s.err
}

func (s *muxSender) send(fd uintptr) {
	var p unsafe.Pointer
	if len(s.buf) > 0 {
		p = unsafe.Pointer(&s.buf[0])
	}
	var e syscall.Errno
	for {
		// MSG_DONTWAIT: the listening socket is the caller's and may be
		// blocking (see rawReader.recvmsg); a full buffer gives EAGAIN,
		// and net's path waits.
		if s.oob == nil {
			_, _, e = unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(p), uintptr(len(s.buf)), unix.MSG_DONTWAIT, uintptr(s.sa.p), s.sa.len)
		} else {
			s.iov.Base = (*byte)(p)
			s.iov.SetLen(len(s.buf))
			_, _, e = unix.RawSyscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&s.msg)), unix.MSG_DONTWAIT)
		}
		if e != unix.EINTR {
			break
		}
	}
	s.iov.Base = nil
	switch e {
	case 0:
		s.sent = true
	case unix.EAGAIN:
	default:
		call := "sendto"
		if s.oob != nil {
			call = "sendmsg"
		}
		s.sent, s.err = true, &net.OpError{Op: "write", Net: "udp", Source: s.l.pc.LocalAddr(), Addr: s.addr, Err: os.NewSyscallError(call, e)}
	}
}

// batchable reports whether the session's replies can go out in the
// listener's batches (see replyBatch): the client's address is prepared
// (by the session's first send) and the socket can be reached raw.
func (s *muxSender) batchable() bool {
	if s.l == nil || s.l.replies.off.Load() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.prepared && s.rc != nil
}

// replyBatch holds the replies that responders (see MuxConn.Offload) made
// while the read loop served a batch of datagrams, and sends them in one
// sendmmsg before the loop reads again, or when it is full: in
// single-port lock-step a system call carries the next blocks of many
// sessions, not one each. A reply is copied in, so no session's memory is
// read after its responder has returned. Read loop only.
type replyBatch struct {
	msgs  [batchLen]unix.Mmsghdr
	iovs  [batchLen]unix.Iovec
	conns [batchLen]*MuxConn // whose reply each message is: net's path needs its client
	arena []byte             // the replies' bytes
	used  int                // bytes of arena in use
	n     int                // messages queued
	next  int                // the first message sendmmsg has not taken (flush)
	stop  int                // why sendmmsg stopped short (stopNone, stopAgain, stopRefused)
	off   atomic.Bool        // no sendmmsg on this kernel: Offload reports false
	fn    func(fd uintptr)   // b.sendmmsg, bound once
}

// replyArena is the room of a batch's replies: 32 blocks of 8 KiB, or
// fewer larger ones (at least three of the largest, 65468 bytes: see
// full).
const replyArena = 256 << 10

// queueReply sends reply, m's, with the read loop's next batch. It runs
// under m's mutex and never waits: Deliver flushes a batch that is full
// (see full) once the mutex is let go, so there is always room, but
// should there be none the reply goes at once, or is dropped if the
// socket's buffer is full (a lost datagram: the session's timer sends it
// again).
func (l *Listener) queueReply(m *MuxConn, reply []byte) {
	b := &l.replies
	if b.arena == nil {
		b.arena = make([]byte, replyArena)
		b.fn = b.sendmmsg
	}
	if b.n == batchLen || b.used+len(reply) > len(b.arena) {
		m.send.to(reply)
		return
	}
	p := b.arena[b.used : b.used+len(reply)]
	copy(p, reply)
	b.used += len(reply)
	i := b.n
	b.n++
	b.conns[i] = m
	b.iovs[i].Base = &p[0]
	b.iovs[i].SetLen(len(p))
	s := &m.send
	h := &b.msgs[i].Hdr
	h.Name, h.Namelen = (*byte)(s.sa.p), uint32(s.sa.len)
	h.Iov, h.Iovlen = &b.iovs[i], 1
	h.Control = nil
	h.SetControllen(0)
	if len(s.oob) > 0 {
		h.Control = &s.oob[0]
		h.SetControllen(len(s.oob))
	}
}

// full reports whether the batch may have no room for one more reply (the
// largest: a block of 65464 bytes).
func (b *replyBatch) full() bool {
	return b.n == batchLen || b.used+wire.HeaderSize+wire.MaxBlockSize > len(b.arena)
}

// flushReplies sends the replies queued, in order: by sendmmsg while the
// socket takes them; a reply it refuses, and the rest once the socket's
// buffer is full, go through net's path, which waits for room as a
// session's own send would (and drops what the kernel refuses there too:
// the session's timer sends it again).
func (l *Listener) flushReplies() {
	b := &l.replies
	if b.n == 0 {
		return
	}
	b.drop()
	b.next = 0
	if b.off.Load() {
		b.next = b.n
		for i := range b.n {
			l.sendSlow(i)
		}
	}
	for b.next < b.n {
		b.stop = stopNone
		if err := l.rc.Control(b.fn); err != nil {
			b.stop = stopAgain // the socket is closing: net's path says so
		}
		switch b.stop {
		case stopRefused:
			l.sendSlow(b.next)
			b.next++
		case stopAgain:
			for i := b.next; i < b.n; i++ {
				l.sendSlow(i)
			}
			b.next = b.n
		}
	}
	clear(b.conns[:b.n])
	b.n, b.used, b.next = 0, 0, 0
}

// drop takes out the replies of sessions that are gone (see
// MuxConn.gone), keeping the others in order.
func (b *replyBatch) drop() {
	k := 0
	for i := range b.n {
		if b.conns[i].gone.Load() {
			continue
		}
		if k != i {
			b.conns[k], b.msgs[k], b.iovs[k] = b.conns[i], b.msgs[i], b.iovs[i]
			b.msgs[k].Hdr.Iov = &b.iovs[k]
		}
		k++
	}
	clear(b.conns[k:b.n])
	b.n = k
}

// sendSlow sends the batch's message i through net's path.
func (l *Listener) sendSlow(i int) {
	b := &l.replies
	m := b.conns[i]
	off := uintptr(unsafe.Pointer(b.iovs[i].Base)) - uintptr(unsafe.Pointer(&b.arena[0]))
	l.writeTo(b.arena[off:off+uintptr(b.iovs[i].Len)], m.send.oob, m.client)
}

// Why a batch's sendmmsg stopped short.
const (
	stopNone    = iota
	stopAgain   // the socket's buffer is full, or no sendmmsg: net's path for the rest
	stopRefused // the message at next was refused
)

func (b *replyBatch) sendmmsg(fd uintptr) {
	for b.next < b.n {
		n, e := sysSendmmsg(fd, unsafe.Pointer(&b.msgs[b.next]), b.n-b.next)
		switch e {
		case 0:
			b.next += n
		case unix.EINTR:
		case unix.EAGAIN:
			b.stop = stopAgain
			return
		case unix.ENOSYS:
			// No sendmmsg here (an old or emulated kernel): net's path
			// from now on.
			b.off.Store(true)
			b.stop = stopAgain
			return
		default:
			// sendmmsg reports an error only when its first message did
			// not go out: that one tries net's path (a seccomp filter
			// refusing sendmmsg, a firewall refusing the client), then
			// the rest go on.
			b.stop = stopRefused
			return
		}
	}
}

// sysSendmmsg is the raw call, non-blocking (a variable: tests make the
// kernel refuse it).
var sysSendmmsg = func(fd uintptr, msgs unsafe.Pointer, vlen int) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(msgs), uintptr(vlen), unix.MSG_DONTWAIT, 0, 0)
	return int(n), e
}
