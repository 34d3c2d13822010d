//go:build !linux

package udp

import "net/netip"

// muxSender: the descriptor-level send is Linux-only; elsewhere a
// single-port session sends through net's path.
type muxSender struct{}

func (*muxSender) init(*Listener, netip.AddrPort, []byte) {}

func (*muxSender) to([]byte) (bool, error) { return false, nil }

func (*muxSender) batchable() bool { return false }

// replyBatch: replies are batched on Linux only (Offload reports false
// elsewhere).
type replyBatch struct{}

func (*replyBatch) full() bool { return false }

func (l *Listener) queueReply(*MuxConn, []byte) {}

func (l *Listener) flushReplies() {}
