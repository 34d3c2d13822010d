package gatewaytest

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// DefaultExpectWait is how long [Client.Expect] and [Client.ExpectFrom]
// wait for a packet.
const DefaultExpectWait = 5 * time.Second

// Client speaks TFTP by hand, one packet at a time, so that a test can
// send exactly what it wants (a retransmitted RRQ, a stray ACK, junk) and
// assert the exact bytes the server answers with.
//
// A Client has one UDP socket. Requests go to the server's listening
// address; everything else ([Client.Ack], [Client.SendError],
// [Client.Send]) goes to the session's transfer ID (TID), which the client
// learns from the first packet it receives ([Client.TID]).
//
// Every method calls t.Helper and fails the test (t.Fatal) on an error or
// a packet other than the one expected, so it must be called from the
// test's goroutine. Every wait is bounded. The socket is closed by
// t.Cleanup. A Client is not safe for concurrent use.
type Client struct {
	t      testing.TB
	conn   *net.UDPConn
	server netip.AddrPort // the listening address
	tid    netip.AddrPort // the session's address, learnt from the first reply
	buf    []byte
}

// NewClient returns a client of the server listening on server, with a
// socket on the loopback address of the server's family (127.0.0.1 or
// ::1) and an ephemeral port.
func NewClient(t testing.TB, server netip.AddrPort) *Client {
	t.Helper()
	network, laddr := "udp4", "127.0.0.1:0"
	if server.Addr().Is6() {
		network, laddr = "udp6", "[::1]:0"
	}
	return NewClientOn(t, network, laddr, server)
}

// NewClientOn is like [NewClient] with a socket on network ("udp",
// "udp4" or "udp6") and the local address laddr: another loopback
// address such as "127.0.0.2:0" to be another client host, or a wildcard.
func NewClientOn(t testing.TB, network, laddr string, server netip.AddrPort) *Client {
	t.Helper()
	a, err := net.ResolveUDPAddr(network, laddr)
	if err != nil {
		t.Fatalf("gatewaytest: client address: %v", err)
	}
	c, err := net.ListenUDP(network, a)
	if err != nil {
		t.Fatalf("gatewaytest: client socket: %v", err)
	}
	_ = c.SetReadBuffer(8 << 20) // best effort: whole windows of big blocks
	t.Cleanup(func() { c.Close() })
	return &Client{t: t, conn: c, server: server, buf: make([]byte, 70000)}
}

// Conn returns the client's socket, for what the methods do not cover
// (socket options, a reader of its own). Reads from it do not learn the
// TID.
func (c *Client) Conn() *net.UDPConn { return c.conn }

// LocalAddr returns the address of the client's socket.
func (c *Client) LocalAddr() netip.AddrPort { return c.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Server returns the listening address the client sends its requests to.
func (c *Client) Server() netip.AddrPort { return c.server }

// TID returns the session's transfer ID: the source of the first packet
// received since the client was made or since [Client.SetTID]. It is the
// zero AddrPort before that.
func (c *Client) TID() netip.AddrPort { return c.tid }

// SetTID sets the session's transfer ID: a test that plays a stranger sets
// another client's TID; the zero AddrPort makes the client learn it again
// from the next packet it receives (a new session of the same client).
func (c *Client) SetTID(tid netip.AddrPort) { c.tid = tid }

// SendTo sends the datagram b to the address to.
func (c *Client) SendTo(to netip.AddrPort, b []byte) {
	c.t.Helper()
	if _, err := c.conn.WriteToUDPAddrPort(b, to); err != nil {
		c.t.Fatalf("gatewaytest: send: %v", err)
	}
}

// Send sends the datagram b to the session's TID.
func (c *Client) Send(b []byte) {
	c.t.Helper()
	c.SendTo(c.tid, b)
}

// RRQ sends a read request for file in mode to the server's listening
// address; opts are option names and values, in pairs.
func (c *Client) RRQ(file, mode string, opts ...string) {
	c.t.Helper()
	c.SendTo(c.server, ReadRequest(file, mode, opts...))
}

// WRQ sends a write request for file in mode to the server's listening
// address; opts are option names and values, in pairs.
func (c *Client) WRQ(file, mode string, opts ...string) {
	c.t.Helper()
	c.SendTo(c.server, WriteRequest(file, mode, opts...))
}

// Ack sends ACK block to the session's TID.
func (c *Client) Ack(block uint16) {
	c.t.Helper()
	c.SendTo(c.tid, Ack(block))
}

// SendError sends ERROR code with msg to the session's TID.
func (c *Client) SendError(code uint16, msg string) {
	c.t.Helper()
	c.SendTo(c.tid, ErrorPacket(code, msg))
}

// Recv returns the next packet and its source, failing the test if none
// comes within d. The first packet received sets the TID. The packet is
// valid until the next receive.
func (c *Client) Recv(d time.Duration) ([]byte, netip.AddrPort) {
	c.t.Helper()
	b, from, err := c.read(d)
	if err != nil {
		c.t.Fatalf("gatewaytest: recv: %v", err)
	}
	return b, from
}

// TryRecv is like [Client.Recv] but reports whether a packet came within
// d instead of failing the test when none did.
func (c *Client) TryRecv(d time.Duration) (b []byte, from netip.AddrPort, ok bool) {
	c.t.Helper()
	b, from, err := c.read(d)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, netip.AddrPort{}, false
	}
	if err != nil {
		c.t.Fatalf("gatewaytest: recv: %v", err)
	}
	return b, from, true
}

func (c *Client) read(d time.Duration) ([]byte, netip.AddrPort, error) {
	if err := c.conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		return nil, netip.AddrPort{}, err
	}
	n, from, err := c.conn.ReadFromUDPAddrPort(c.buf)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	if !c.tid.IsValid() {
		c.tid = from
	}
	return c.buf[:n], from, nil
}

// Expect reads the next packet, waiting up to [DefaultExpectWait], and
// checks that it is exactly want and comes from the session's TID.
func (c *Client) Expect(want []byte) {
	c.t.Helper()
	got, from := c.Recv(DefaultExpectWait)
	if from != c.tid {
		c.t.Fatalf("packet from %v, want the session's TID %v", from, c.tid)
	}
	if !bytes.Equal(got, want) {
		c.t.Fatalf("got packet\n%q\nwant\n%q", Abbrev(got), Abbrev(want))
	}
}

// ExpectFrom is like [Client.Expect] for a packet from the address from
// (the listening port, say) instead of the TID.
func (c *Client) ExpectFrom(from netip.AddrPort, want []byte) {
	c.t.Helper()
	got, src := c.Recv(DefaultExpectWait)
	if src != from || !bytes.Equal(got, want) {
		c.t.Fatalf("got %q from %v, want %q from %v", Abbrev(got), src, Abbrev(want), from)
	}
}

// ExpectWithin is like [Client.Expect] with a wait of d, shorter than the
// server's retransmission timer: the packet can then only have been
// caused by what the client sent.
func (c *Client) ExpectWithin(d time.Duration, want []byte) {
	c.t.Helper()
	got, from := c.Recv(d)
	if from != c.tid || !bytes.Equal(got, want) {
		c.t.Fatalf("got %q from %v, want %q from %v", Abbrev(got), from, Abbrev(want), c.tid)
	}
}

// ExpectNothing checks that no packet arrives within d.
func (c *Client) ExpectNothing(d time.Duration) {
	c.t.Helper()
	if b, from, ok := c.TryRecv(d); ok {
		c.t.Fatalf("unexpected packet from %v: %q", from, Abbrev(b))
	}
}
