package gateway_test

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// Fuzz session parameters: short timers so that an input takes well under
// 200 ms.
const (
	fuzzTimeout = 20 * time.Millisecond
	fuzzRetries = 1
	fuzzMaxOps  = 48
	// fuzzSlack allows for scheduling delays on a loaded machine on top of
	// the (retries+1)*timeout a session may live after its last input.
	fuzzSlack = 500 * time.Millisecond
)

// Script operations, one byte each (modulo fuzzOps), some followed by
// operands.
const (
	opAckNear     = iota // ACK (highest acked by the model) + int8 operand
	opAckAny             // ACK with a uint16 operand
	opAckProgress        // ACK the highest DATA received
	opError              // ERROR with a code operand; ends the script
	opJunk               // 0..15 operand bytes sent to the session as they are
	opStranger           // an ACK from another socket (unknown TID)
	opDupRRQ             // the RRQ again to the listening port
	opWait               // wait (operand%8) ms, reading what comes
	opOtherOpcode        // DATA, OACK, RRQ or WRQ sent to the session
	fuzzOps
)

// FuzzSession drives a live session with a random packet sequence and
// checks the server's invariants:
//   - it never panics (a panic ends the session with ERROR 0, which the
//     next invariant catches) and never sends an ERROR from a session
//     (the content cannot fail), so never answers an ERROR with an ERROR;
//   - every DATA has a block within (acked, acked+windowsize], acked being
//     what the server can have seen acknowledged, and carries the right
//     bytes of the file; no OACK comes after DATA;
//   - a packet from a stranger gets ERROR 5 and nothing else;
//   - every session ends (its stats arrive) within (retries+1)*timeout of
//     the last input, plus scheduling slack;
//   - the server still serves a clean transfer afterwards.
func FuzzSession(f *testing.F) {
	// blksize, windowsize (0: option not sent), file size, script.
	f.Add(uint16(0), uint8(0), uint16(1300), []byte{opAckProgress, opAckProgress, opAckProgress})
	f.Add(uint16(512), uint8(4), uint16(5000), []byte{opAckAny, 0, 0, opAckNear, 2, opAckNear, 0xff, opAckProgress, opWait, 7, opAckProgress})
	f.Add(uint16(8), uint8(16), uint16(300), []byte{opStranger, opDupRRQ, opJunk, 3, 0, 4, 0, opAckProgress, opError, 0})
	f.Add(uint16(1468), uint8(1), uint16(0), []byte{opAckAny, 0, 0, opAckAny, 0xff, 0xff, opOtherOpcode, 1, opAckAny, 0, 1})
	f.Add(uint16(100), uint8(8), uint16(2000), []byte{opAckAny, 0, 0, opAckNear, 3, opAckNear, 3, opAckNear, 8, opWait, 30, opAckProgress, opError, 8})
	f.Fuzz(func(t *testing.T, blksize uint16, windowsize uint8, size uint16, script []byte) {
		fuzzSession(t, blksize, windowsize, size, script)
	})
}

// fuzzState is the client's model of one session (one server TID).
type fuzzState struct {
	tid    netip.AddrPort
	gotAny bool
	data   bool  // DATA seen
	hiRecv int   // highest DATA block received
	ackHi  int   // upper bound of the server's acked
	ackLo  int   // lower bound of the server's acked
	oacked bool  // OACK phase over (or no OACK): ACKs count
	acks   []int // the first ACKs sent, for the failure message
}

func fuzzSession(t *testing.T, rawBlk uint16, rawWin uint8, size uint16, script []byte) {
	content := gatewaytest.Pattern(int(size))
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, func(s *gateway.Server) {
		s.Timeout, s.Retries = fuzzTimeout, fuzzRetries
	})
	var opts []string
	blksize, window := 512, 1
	if rawBlk != 0 {
		blksize = 8 + int(rawBlk)%1461 // 8..1468
		opts = append(opts, "blksize", strconv.Itoa(blksize))
	}
	if rawWin != 0 {
		window = int(rawWin)%64 + 1 // 1..64, under the default cap
		opts = append(opts, "windowsize", strconv.Itoa(window))
	}
	last := int(size)/blksize + 1 // final block number (< 65536: no rollover)
	client, stranger := fuzzSocket(t), fuzzSocket(t)
	rrq := gatewaytest.ReadRequest("f", "octet", opts...)
	send := func(c *net.UDPConn, to netip.AddrPort, b []byte) {
		if to.IsValid() {
			c.WriteToUDPAddrPort(b, to)
		}
	}

	var sessions []*fuzzState
	cur := func() *fuzzState {
		if len(sessions) == 0 {
			return nil
		}
		return sessions[len(sessions)-1]
	}
	lastInput := time.Now()
	buf := make([]byte, 70000)

	// check validates one packet from the server to the client.
	check := func(b []byte, from netip.AddrPort) {
		if from == ts.Addr() {
			// The listening port answers only refused requests (WRQ).
			if op, _ := wire.PacketOpcode(b); op != wire.OpERROR {
				t.Fatalf("listening port sent %q", gatewaytest.Abbrev(b))
			}
			return
		}
		var s *fuzzState
		for _, x := range sessions {
			if x.tid == from {
				s = x
			}
		}
		if s == nil {
			s = &fuzzState{tid: from, oacked: len(opts) == 0}
			sessions = append(sessions, s)
		}
		s.gotAny = true
		op, _ := wire.PacketOpcode(b)
		switch op {
		case wire.OpOACK:
			if len(opts) == 0 || s.data {
				t.Fatalf("session %v: OACK %q (options %q, DATA seen %v)", from, gatewaytest.Abbrev(b), opts, s.data)
			}
		case wire.OpDATA:
			blk16, payload, _ := wire.ParseData(b)
			blk := int(blk16)
			s.data, s.oacked = true, true
			if blk < 1 || blk > last || blk <= s.ackLo || blk > s.ackHi+window {
				t.Fatalf("session %v: DATA %d outside (%d, %d+%d] (final block %d; ACKs sent %v)", from, blk, s.ackLo, s.ackHi, window, last, s.acks)
			}
			start := (blk - 1) * blksize
			want := content[start:min(start+blksize, len(content))]
			if !bytes.Equal(payload, want) {
				t.Fatalf("session %v: DATA %d carries %d wrong bytes", from, blk, len(payload))
			}
			// The server had acked at least blk-window when it sent this.
			s.ackLo = max(s.ackLo, blk-window)
			s.hiRecv = max(s.hiRecv, blk)
		default:
			t.Fatalf("session %v sent %q", from, gatewaytest.Abbrev(b))
		}
	}
	// drain reads what the server sent until d passes.
	drain := func(d time.Duration) {
		end := time.Now().Add(d)
		for {
			client.SetReadDeadline(end)
			n, from, err := client.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			check(buf[:n], from)
		}
	}
	ack := func(s *fuzzState, blk int) {
		if s == nil {
			return
		}
		blk &= 0xffff
		send(client, s.tid, wire.AppendAck(nil, uint16(blk)))
		if len(s.acks) < 64 {
			s.acks = append(s.acks, blk)
		}
		lastInput = time.Now()
		if !s.oacked {
			// ACK 0 ends the OACK phase; others are ignored by the server.
			s.oacked = blk == 0
			return
		}
		// The server accepts blk if it lies in (acked, sentTo], and
		// sentTo <= acked+window: keep an upper bound.
		if blk > s.ackHi && blk <= min(s.ackHi+window, last) {
			s.ackHi = blk
		}
	}

	send(client, ts.Addr(), rrq)
	drain(5 * time.Millisecond)
	ops := 0
	for i := 0; i < len(script) && ops < fuzzMaxOps; i++ {
		ops++
		operand := func() byte {
			if i+1 < len(script) {
				i++
				return script[i]
			}
			return 0
		}
		s := cur()
		switch script[i] % fuzzOps {
		case opAckNear:
			if s != nil {
				ack(s, s.ackHi+int(int8(operand())))
			}
		case opAckAny:
			hi, lo := operand(), operand()
			ack(s, int(hi)<<8|int(lo))
		case opAckProgress:
			if s != nil {
				ack(s, s.hiRecv)
			}
		case opError:
			if s != nil {
				send(client, s.tid, wire.AppendError(nil, uint16(operand()%9), "fuzz"))
				lastInput = time.Now()
				i = len(script) // the session is over
			}
		case opJunk:
			n := int(operand() % 16)
			junk := script[min(i+1, len(script)):min(i+1+n, len(script))]
			i += len(junk)
			if s != nil {
				send(client, s.tid, junk)
			}
		case opStranger:
			if s != nil {
				send(stranger, s.tid, wire.AppendAck(nil, uint16(s.hiRecv)))
				stranger.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
				if n, from, err := stranger.ReadFromUDPAddrPort(buf); err == nil {
					code := -1
					if c, _, err := wire.ParseError(buf[:n]); err == nil {
						code = int(c)
					}
					if from != s.tid || code != 5 {
						t.Fatalf("stranger got %q from %v, want ERROR 5 from %v", gatewaytest.Abbrev(buf[:n]), from, s.tid)
					}
				} // no answer: the session has ended already
			}
		case opDupRRQ:
			send(client, ts.Addr(), rrq)
			lastInput = time.Now()
		case opWait:
			drain(time.Duration(operand()%8) * time.Millisecond)
		case opOtherOpcode:
			pkts := [][]byte{gatewaytest.Data(1, []byte("x")), gatewaytest.OACK("blksize", "512"), rrq, gatewaytest.WriteRequest("f", "octet")}
			if s != nil {
				send(client, s.tid, pkts[int(operand())%len(pkts)])
			}
		}
		drain(time.Millisecond)
	}

	// Every session ends within (retries+1)*timeout of the last input.
	deadline := lastInput.Add(time.Duration(fuzzRetries+1)*fuzzTimeout + fuzzSlack)
	drain(time.Until(lastInput.Add(time.Duration(fuzzRetries+1) * fuzzTimeout)))
	for range sessions {
		if _, ok := ts.WaitStats(time.Until(deadline)); !ok {
			t.Fatalf("%d sessions started, not all ended within (%d+1)*%v (+%v) of the last input",
				len(sessions), fuzzRetries, fuzzTimeout, fuzzSlack)
		}
	}
	drain(0)
	if n := ts.Config.Stats().ActiveSessions; n != 0 {
		t.Fatalf("%d sessions still active, %d seen", n, len(sessions))
	}

	// The server still serves.
	var got bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := tftpclient.Get(ctx, ts.Addr().String(), "f", &got, tftpclient.Options{BlockSize: 1024, WindowSize: 4, RetransmitTimeout: 100 * time.Millisecond}); err != nil || !bytes.Equal(got.Bytes(), content) {
		t.Fatalf("clean transfer afterwards: %v, %d of %d bytes", err, got.Len(), len(content))
	}
	ts.NextStats(t)
}

func fuzzSocket(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadBuffer(1 << 20)
	t.Cleanup(func() { c.Close() })
	return c
}
