package gateway_test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
)

// TestRFC1350 checks the base protocol: lock-step DATA/ACK, the final short
// block, the empty final block of an exact multiple, and netascii.
func TestRFC1350(t *testing.T) {
	tests := []struct {
		name    string
		content []byte
		mode    string
		want    [][]byte // payloads of DATA 1, 2, ...
	}{
		{"section6_short_final_block", gatewaytest.Pattern(700), "octet", [][]byte{gatewaytest.Pattern(700)[:512], gatewaytest.Pattern(700)[512:]}},
		{"section6_exact_multiple_ends_with_empty_block", gatewaytest.Pattern(1024), "octet", [][]byte{gatewaytest.Pattern(1024)[:512], gatewaytest.Pattern(1024)[512:], {}}},
		{"section6_empty_file_is_one_empty_block", nil, "octet", [][]byte{{}}},
		{"mode_is_case_insensitive", []byte("x"), "OcTeT", [][]byte{[]byte("x")}},
		{"netascii_LF_becomes_CRLF_CR_becomes_CRNUL", []byte("a\nb\rc"), "netascii", [][]byte{[]byte("a\r\nb\r\x00c")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": tt.content}, gatewaytest.FixedTimer)
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", tt.mode)
			for i, p := range tt.want {
				c.Expect(gatewaytest.Data(uint16(i+1), p))
				c.Ack(uint16(i + 1))
			}
			c.ExpectNothing(100 * time.Millisecond)
			st := ts.NextStats(t)
			if st.Outcome != gateway.OutcomeOK {
				t.Errorf("outcome %v, want ok", st.Outcome)
			}
			if st.BytesAcked != int64(len(joinPayloads(tt.want))) {
				t.Errorf("BytesAcked %d, want %d", st.BytesAcked, len(joinPayloads(tt.want)))
			}
		})
	}
}

func joinPayloads(ps [][]byte) []byte {
	var b []byte
	for _, p := range ps {
		b = append(b, p...)
	}
	return b
}

// TestRFC1350_Section4_NewTIDPerSession: every session answers from a
// socket of its own, not from the listening port.
func TestRFC1350_Section4_NewTIDPerSession(t *testing.T) {
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": []byte("x")}, gatewaytest.FixedTimer)
	c1, c2 := gatewaytest.NewClient(t, ts.Addr()), gatewaytest.NewClient(t, ts.Addr())
	c1.RRQ("f", "octet")
	c2.RRQ("f", "octet")
	c1.Expect(gatewaytest.Data(1, []byte("x")))
	c2.Expect(gatewaytest.Data(1, []byte("x")))
	if c1.TID().Port() == ts.Addr().Port() || c2.TID().Port() == ts.Addr().Port() || c1.TID() == c2.TID() {
		t.Fatalf("TIDs %v and %v, listening on %v: want two new ports", c1.TID(), c2.TID(), ts.Addr())
	}
	c1.Ack(1)
	c2.Ack(1)
	ts.NextStats(t)
	ts.NextStats(t)
}

// TestReplyFromRequestAddress: on a wildcard socket the session replies
// from the address the RRQ was sent to (IP_PKTINFO / IPV6_PKTINFO), and
// the handler sees that address as LocalAddr.
func TestReplyFromRequestAddress(t *testing.T) {
	tests := []struct {
		name          string
		network, addr string // listening socket
		clientNet     string
		clientAddr    string
		dst           string // where the RRQ is sent
	}{
		{"ipv4_wildcard_127.0.0.2", "udp4", "0.0.0.0:0", "udp4", "127.0.0.1:0", "127.0.0.2"},
		{"ipv4_wildcard_127.0.0.1", "udp4", "0.0.0.0:0", "udp4", "127.0.0.1:0", "127.0.0.1"},
		{"ipv6_loopback", "udp6", "[::1]:0", "udp6", "[::1]:0", "::1"},
		{"dual_stack_ipv4_client", "udp", "[::]:0", "udp4", "127.0.0.1:0", "127.0.0.3"},
		{"dual_stack_ipv6_client", "udp", "[::]:0", "udp6", "[::1]:0", "::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local := make(chan netip.AddrPort, 1)
			h := gateway.HandlerFunc(func(_ context.Context, r *gateway.Request) (gateway.Content, error) {
				local <- r.LocalAddr
				return gateway.BytesContent([]byte("x")), nil
			})
			ts := gatewaytest.NewServerOn(t, tt.network, tt.addr, h, gatewaytest.FixedTimer)
			dst := netip.AddrPortFrom(netip.MustParseAddr(tt.dst), ts.Addr().Port())
			c := gatewaytest.NewClientOn(t, tt.clientNet, tt.clientAddr, dst)
			c.RRQ("f", "octet")
			c.Expect(gatewaytest.Data(1, []byte("x")))
			if got := c.TID().Addr().Unmap(); got != dst.Addr() {
				t.Errorf("reply from %v, want %v", got, dst.Addr())
			}
			if got := <-local; got != dst {
				t.Errorf("Request.LocalAddr %v, want %v", got, dst)
			}
			c.Ack(1)
			ts.NextStats(t)
		})
	}
}

// TestRequestAtIsArrival: the handler sees when the request reached the
// server (Request.At), with a monotonic clock reading: after the client
// sent it, before the handler was called.
func TestRequestAtIsArrival(t *testing.T) {
	type seen struct{ at, called time.Time }
	ch := make(chan seen, 1)
	h := gateway.HandlerFunc(func(_ context.Context, r *gateway.Request) (gateway.Content, error) {
		ch <- seen{r.At, time.Now()}
		return gateway.BytesContent([]byte("x")), nil
	})
	ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer)
	c := gatewaytest.NewClient(t, ts.Addr())
	sent := time.Now()
	c.RRQ("f", "octet")
	c.Expect(gatewaytest.Data(1, []byte("x")))
	c.Ack(1)
	ts.NextStats(t)
	got := <-ch
	// The kernel's receive time and time.Now come from clocks read apart:
	// a millisecond of slack before the send.
	if got.at.Before(sent.Add(-time.Millisecond)) || got.at.After(got.called) {
		t.Errorf("Request.At %v: not between the send (%v) and the handler's call (%v)", got.at, sent, got.called)
	}
	if !strings.Contains(got.at.String(), " m=") {
		t.Errorf("Request.At %v has no monotonic clock reading", got.at)
	}
}

// TestNegotiation checks RFC 2347/2348/2349/7440 option negotiation by the
// exact OACK (or the DATA 1 that replaces it).
func TestNegotiation(t *testing.T) {
	content := gatewaytest.Pattern(3000)
	tests := []struct {
		name     string
		opts     []string
		size     int64 // content size reported; -1 unknown
		maxBlk   int
		maxWin   int
		wantOACK []byte // nil: DATA 1 of 512 bytes comes first
	}{
		{"RFC2347_only_requested_options_answered", []string{"blksize", "1024"}, 3000, 0, 0, gatewaytest.OACK("blksize", "1024")},
		{"RFC2347_option_names_case_insensitive", []string{"BlkSize", "1024", "TSIZE", "0"}, 3000, 0, 0, gatewaytest.OACK("blksize", "1024", "tsize", "3000")},
		{"RFC2347_unknown_options_omitted", []string{"foo", "bar", "blksize", "1024", "multicast", ""}, 3000, 0, 0, gatewaytest.OACK("blksize", "1024")},
		{"RFC2347_no_acknowledged_option_no_OACK", []string{"foo", "bar"}, 3000, 0, 0, nil},
		{"RFC2348_blksize_capped_by_server_maximum", []string{"blksize", "1468"}, 3000, 1024, 0, gatewaytest.OACK("blksize", "1024")},
		{"RFC2348_blksize_above_65464_capped", []string{"blksize", "65535"}, 3000, 0, 0, gatewaytest.OACK("blksize", "65464")},
		{"RFC2348_blksize_below_8_ignored", []string{"blksize", "7"}, 3000, 0, 0, nil},
		{"RFC2348_blksize_8_accepted", []string{"blksize", "8"}, 3000, 0, 0, gatewaytest.OACK("blksize", "8")},
		{"RFC2348_blksize_not_a_number_ignored", []string{"blksize", "big"}, 3000, 0, 0, nil},
		{"RFC2349_timeout_echoed_exactly", []string{"timeout", "5"}, 3000, 0, 0, gatewaytest.OACK("timeout", "5")},
		{"RFC2349_timeout_255_echoed", []string{"timeout", "255"}, 3000, 0, 0, gatewaytest.OACK("timeout", "255")},
		{"RFC2349_timeout_0_ignored", []string{"timeout", "0"}, 3000, 0, 0, nil},
		{"RFC2349_timeout_256_ignored", []string{"timeout", "256"}, 3000, 0, 0, nil},
		{"RFC2349_tsize_is_content_size", []string{"tsize", "0"}, 3000, 0, 0, gatewaytest.OACK("tsize", "3000")},
		{"RFC2349_tsize_omitted_when_size_unknown", []string{"tsize", "0", "blksize", "1024"}, -1, 0, 0, gatewaytest.OACK("blksize", "1024")},
		{"RFC7440_windowsize_granted", []string{"windowsize", "8"}, 3000, 0, 0, gatewaytest.OACK("windowsize", "8")},
		{"RFC7440_windowsize_capped_at_default_64", []string{"windowsize", "100"}, 3000, 0, 0, gatewaytest.OACK("windowsize", "64")},
		{"RFC7440_windowsize_capped_by_server_maximum", []string{"windowsize", "16"}, 3000, 0, 4, gatewaytest.OACK("windowsize", "4")},
		{"RFC7440_windowsize_0_ignored", []string{"windowsize", "0"}, 3000, 0, 0, nil},
		{"order_of_request_kept", []string{"tsize", "0", "windowsize", "4", "blksize", "1468", "timeout", "3"}, 3000, 0, 0, gatewaytest.OACK("tsize", "3000", "windowsize", "4", "blksize", "1468", "timeout", "3")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
				return gateway.NewContent(bytesReader(content), tt.size), nil
			})
			ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer, func(s *gateway.Server) {
				s.MaxBlockSize, s.MaxWindowSize = tt.maxBlk, tt.maxWin
			})
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", "octet", tt.opts...)
			if tt.wantOACK == nil {
				c.Expect(gatewaytest.Data(1, content[:512]))
			} else {
				c.Expect(tt.wantOACK)
			}
			c.SendError(0, "done")
			ts.NextStats(t)
		})
	}
}

// TestRFC2349_TsizeLeftOutForEmptyContent: an empty content's size is not
// acknowledged (RFC 2347 lets a server decline an option), because curl
// refuses "tsize 0" in an OACK and abandons the transfer silently. The
// transfer is then the single empty DATA 1.
func TestRFC2349_TsizeLeftOutForEmptyContent(t *testing.T) {
	tests := []struct {
		name     string
		opts     []string
		wantOACK []byte // nil: the empty DATA 1 comes first
	}{
		{"tsize_alone_no_OACK", []string{"tsize", "0"}, nil},
		{"tsize_with_blksize_like_curl", []string{"tsize", "0", "blksize", "512", "timeout", "6"}, gatewaytest.OACK("blksize", "512", "timeout", "6")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
				return gateway.NewContent(bytesReader(nil), 0), nil
			})
			ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer)
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("empty", "octet", tt.opts...)
			if tt.wantOACK != nil {
				c.Expect(tt.wantOACK)
				c.Ack(0)
			}
			c.Expect(gatewaytest.Data(1, nil))
			c.Ack(1)
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK || st.TransferSize != 0 {
				t.Fatalf("outcome %v, size %d; want ok, 0", st.Outcome, st.TransferSize)
			}
		})
	}
}

func bytesReader(b []byte) io.Reader { return &sliceReader{b: b} }

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// TestRFC7440_Section4 checks windowed sending: a full window after ACK 0,
// a restart right after a partial ACK, at most one restart for a burst of
// duplicate ACKs, and the final short window.
func TestRFC7440_Section4(t *testing.T) {
	content := gatewaytest.Pattern(10 * 512)
	blk := func(n int) []byte { return gatewaytest.Data(uint16(n), content[(n-1)*512:min(n*512, len(content))]) }
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer)
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet", "windowsize", "4")
	c.Expect(gatewaytest.OACK("windowsize", "4"))
	c.Ack(0)
	for n := 1; n <= 4; n++ {
		c.Expect(blk(n))
	}
	// Block 3 "was lost": the receiver ACKs 2, the sender restarts at 3.
	c.Ack(2)
	for n := 3; n <= 6; n++ {
		c.Expect(blk(n))
	}
	// A burst of duplicate ACKs (EDK2 ACKs every out-of-order block) causes
	// nothing: the window already restarted.
	c.Ack(2)
	c.Ack(2)
	c.Ack(2)
	c.ExpectNothing(200 * time.Millisecond)
	c.Ack(6)
	for n := 7; n <= 10; n++ {
		c.Expect(blk(n))
	}
	c.Ack(10)
	c.Expect(gatewaytest.Data(11, nil)) // 10 full blocks: an empty block ends the file
	c.Ack(11)
	st := ts.NextStats(t)
	if st.Outcome != gateway.OutcomeOK || st.DuplicateAcks != 3 || st.Retransmits != 2 {
		t.Errorf("outcome %v, duplicate ACKs %d, retransmits %d; want ok, 3, 2", st.Outcome, st.DuplicateAcks, st.Retransmits)
	}
}

// TestRFC7440_WindowSize1IsLockStep: windowsize 1 sends exactly one DATA
// per ACK, as RFC 1350 does.
func TestRFC7440_WindowSize1IsLockStep(t *testing.T) {
	content := gatewaytest.Pattern(3 * 512)
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer)
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet", "windowsize", "1")
	c.Expect(gatewaytest.OACK("windowsize", "1"))
	c.Ack(0)
	for n := 1; n <= 3; n++ {
		c.Expect(gatewaytest.Data(uint16(n), content[(n-1)*512:n*512]))
		c.ExpectNothing(50 * time.Millisecond)
		c.Ack(uint16(n))
	}
	c.Expect(gatewaytest.Data(4, nil))
	c.Ack(4)
	ts.NextStats(t)
}

// TestRFC1123_4_2_3_1_SorcerersApprentice: a duplicate ACK never causes a
// resend; only a timeout does.
func TestRFC1123_4_2_3_1_SorcerersApprentice(t *testing.T) {
	content := gatewaytest.Pattern(3 * 512)
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer)
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet")
	c.Expect(gatewaytest.Data(1, content[:512]))
	c.Ack(1)
	c.Expect(gatewaytest.Data(2, content[512:1024]))
	c.Ack(1) // delayed duplicate of ACK 1
	c.Ack(1)
	c.ExpectNothing(300 * time.Millisecond)
	c.Ack(2)
	c.Expect(gatewaytest.Data(3, content[1024:]))
	c.Ack(3)
	c.Expect(gatewaytest.Data(4, nil))
	c.Ack(4)
	if st := ts.NextStats(t); st.DuplicateAcks != 2 || st.Retransmits != 0 {
		t.Errorf("duplicate ACKs %d, retransmits %d; want 2, 0", st.DuplicateAcks, st.Retransmits)
	}
}

// TestDuplicateACKAfterTimeoutSendsNothing: after a retransmission, a
// duplicate ACK must neither resend at once nor use up a retry (it did:
// the read deadline was not moved for good by the resend).
func TestDuplicateACKAfterTimeoutSendsNothing(t *testing.T) {
	content := gatewaytest.Pattern(3 * 512)
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout, s.Retries = 300*time.Millisecond, 5 })
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet")
	c.Expect(gatewaytest.Data(1, content[:512]))
	c.Expect(gatewaytest.Data(1, content[:512])) // the timeout's resend
	for range 6 {
		c.Ack(0) // junk: nothing new
	}
	c.ExpectNothing(150 * time.Millisecond)
	c.Ack(1)
	c.Expect(gatewaytest.Data(2, content[512:1024]))
	c.SendError(0, "bye")
	if st := ts.NextStats(t); st.Retransmits != 1 || st.Outcome != gateway.OutcomeProbe {
		t.Errorf("retransmits %d outcome %v; want 1, probe (ERROR after DATA 1 was acknowledged)", st.Retransmits, st.Outcome)
	}
}

// TestRetransmission: on timeout the DATA and the final DATA are sent
// again, exactly Retries times, and the session then ends as a timeout.
// A first packet that nothing answered (the OACK here) backs off instead
// (see TestUnansweredFirstPacketBacksOff): it is sent at 0, T, 3T, 7T, ...
// while that is before (Retries+1) x T, when the session gives up.
func TestRetransmission(t *testing.T) {
	content := gatewaytest.Pattern(600)
	for _, tc := range []struct{ retries, oacks int }{{1, 2}, {3, 3}, {10, 4}} {
		retries := tc.retries
		t.Run("OACK_sent_"+strconv.Itoa(tc.oacks)+"_times_with_retries_"+strconv.Itoa(retries), func(t *testing.T) {
			ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout, s.Retries = 50*time.Millisecond, retries })
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", "octet", "blksize", "512")
			for range tc.oacks {
				c.Expect(gatewaytest.OACK("blksize", "512"))
			}
			c.ExpectNothing(time.Duration(retries+2) * 50 * time.Millisecond)
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeTimeout || st.Retransmits != int64(tc.oacks-1) {
				t.Errorf("outcome %v retransmits %d; want timeout, %d", st.Outcome, st.Retransmits, tc.oacks-1)
			}
		})
		t.Run("final_DATA_resent_"+strconv.Itoa(retries)+"_times", func(t *testing.T) {
			ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout, s.Retries = 50*time.Millisecond, retries })
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", "octet")
			c.Expect(gatewaytest.Data(1, content[:512]))
			c.Ack(1)
			for range retries + 1 {
				c.Expect(gatewaytest.Data(2, content[512:]))
			}
			c.ExpectNothing(200 * time.Millisecond)
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeTimeout || st.Retransmits != int64(retries) {
				t.Errorf("outcome %v retransmits %d; want timeout, %d", st.Outcome, st.Retransmits, retries)
			}
		})
	}
	t.Run("negotiated_timeout_is_used", func(t *testing.T) {
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout, s.Retries = time.Hour, 1 })
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet", "timeout", "1")
		c.Expect(gatewaytest.OACK("timeout", "1"))
		start := time.Now()
		c.Expect(gatewaytest.OACK("timeout", "1"))
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Errorf("OACK resent after %v, want the negotiated 1s", d)
		}
		c.Ack(0)
		c.Expect(gatewaytest.Data(1, content[:512]))
		c.SendError(0, "bye")
		ts.NextStats(t)
	})
	t.Run("negative_Retries_means_none", func(t *testing.T) {
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout, s.Retries = 50*time.Millisecond, -1 })
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		c.Expect(gatewaytest.Data(1, content[:512]))
		c.ExpectNothing(200 * time.Millisecond)
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeTimeout || st.Retransmits != 0 {
			t.Errorf("outcome %v retransmits %d; want timeout, 0", st.Outcome, st.Retransmits)
		}
	})
}

// TestUnansweredFirstPacketBacksOff (issue 14 point 4): a request whose
// first packet nothing answers (a spoofed source) got DATA 1 six times at
// fixed intervals, 309 times the request's size in payload (in.tftpd
// backs off 1, 2, 4 s: 206 times). The first packet's timer now doubles,
// so with the defaults (Retries 5) it goes out 3 times, at 0, T and 3T,
// and the session gives up at 6T as before. A timeout the client
// negotiated is used as it is: the client asked for it, and its first
// packet is an OACK no longer than its request.
func TestUnansweredFirstPacketBacksOff(t *testing.T) {
	const T = 200 * time.Millisecond
	content := gatewaytest.Pattern(2000)
	t.Run("no_options", func(t *testing.T) {
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout, s.Retries = T, 5 })
		c := gatewaytest.NewClient(t, ts.Addr())
		start := time.Now()
		c.RRQ("f", "octet")
		var at []time.Duration
		for range 3 {
			c.Expect(gatewaytest.Data(1, content[:512]))
			at = append(at, time.Since(start))
		}
		c.ExpectNothing(7*T - time.Since(start))
		if gap1, gap2 := at[1]-at[0], at[2]-at[1]; gap1 < T*3/4 || gap2 < 2*T*3/4 {
			t.Errorf("DATA 1 at %v: gaps %v and %v, want about T and 2T (T = %v)", at, gap1, gap2, T)
		}
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeTimeout || st.Retransmits != 2 || st.PacketsSent != 3 {
			t.Errorf("outcome %v, retransmits %d, packets %d; want timeout, 2, 3", st.Outcome, st.Retransmits, st.PacketsSent)
		}
	})
	t.Run("answered_first_packet_keeps_the_fixed_timer", func(t *testing.T) {
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout, s.Retries = T, 5 })
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		c.Expect(gatewaytest.Data(1, content[:512]))
		c.Ack(1)
		for range 6 {
			c.Expect(gatewaytest.Data(2, content[512:1024]))
		}
		c.ExpectNothing(2 * T)
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeTimeout || st.Retransmits != 5 {
			t.Errorf("outcome %v, retransmits %d; want timeout, 5", st.Outcome, st.Retransmits)
		}
	})
}

// TestBlockNumberRollover: block numbers wrap from 65535 to 0 (what iPXE,
// EDK2, U-Boot and GRUB expect).
func TestBlockNumberRollover(t *testing.T) {
	const blksize, blocks = 8, 65540
	content := gatewaytest.Pattern(blksize*blocks + 3)
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer)
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet", "blksize", "8", "windowsize", "64")
	c.Expect(gatewaytest.OACK("blksize", "8", "windowsize", "64"))
	c.Ack(0)
	var got []byte
	next := uint16(1)
	for {
		b, _ := c.Recv(5 * time.Second)
		if len(b) < 4 || b[1] != 3 {
			t.Fatalf("not DATA: %q", b)
		}
		blk := uint16(b[2])<<8 | uint16(b[3])
		if blk != next {
			t.Fatalf("DATA %d, want %d", blk, next)
		}
		got = append(got, b[4:]...)
		last := len(b) < 4+blksize
		if last || next%64 == 0 {
			c.Ack(next)
		}
		next++
		if last {
			break
		}
	}
	if want := uint16((blocks + 2) % 65536); next != want {
		t.Errorf("ended before block %d, want %d", next, want)
	}
	if string(got) != string(content) {
		t.Fatalf("content differs")
	}
	if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK || st.BytesAcked != int64(len(content)) {
		t.Errorf("stats %v %d", st.Outcome, st.BytesAcked)
	}
}

// TestClientError: a client ERROR ends the session silently; right after
// the OACK or DATA 1 it is a probe, later an abort, and after the final ACK
// the transfer still succeeded.
func TestClientError(t *testing.T) {
	content := gatewaytest.Pattern(5 * 512)
	tests := []struct {
		name    string
		opts    []string
		acks    int // DATA blocks acknowledged before the ERROR
		want    gateway.Outcome
		errCode uint16
	}{
		{"RFC2347_ERROR_8_after_OACK_is_probe", []string{"tsize", "0"}, -1, gateway.OutcomeProbe, 8},
		{"ERROR_after_DATA_1_is_probe", nil, 0, gateway.OutcomeProbe, 0},
		{"ERROR_later_is_aborted", nil, 3, gateway.OutcomeAborted, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer)
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", "octet", tt.opts...)
			if tt.opts != nil {
				c.Expect(gatewaytest.OACK("tsize", strconv.Itoa(len(content))))
			} else {
				for n := 1; n <= tt.acks+1; n++ {
					c.Expect(gatewaytest.Data(uint16(n), content[(n-1)*512:n*512]))
					if n <= tt.acks {
						c.Ack(uint16(n))
					}
				}
			}
			c.SendError(tt.errCode, "User aborted the transfer")
			c.ExpectNothing(200 * time.Millisecond) // never an ERROR for an ERROR
			st := ts.NextStats(t)
			if st.Outcome != tt.want || st.ErrorReceived == nil || st.ErrorReceived.Code != gateway.ErrorCode(tt.errCode) || st.ErrorSent != nil {
				t.Errorf("outcome %v, received %v, sent %v; want %v, code %d, nothing sent", st.Outcome, st.ErrorReceived, st.ErrorSent, tt.want, tt.errCode)
			}
		})
	}
	t.Run("PXELINUX_ERROR_after_final_ACK_is_success", func(t *testing.T) {
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": []byte("x")}, gatewaytest.FixedTimer)
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		c.Expect(gatewaytest.Data(1, []byte("x")))
		c.Ack(1)
		c.SendError(0, "No error, file close")
		c.ExpectNothing(200 * time.Millisecond)
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
			t.Errorf("outcome %v, want ok", st.Outcome)
		}
	})
	t.Run("PXELINUX_close_after_lost_final_ACK_is_success", func(t *testing.T) {
		// The final ACK is lost; PXELINUX's close (ERROR 0) shows that it
		// has the final block, so the transfer succeeded.
		content := gatewaytest.Pattern(700)
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer)
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		c.Expect(gatewaytest.Data(1, content[:512]))
		c.Ack(1)
		c.Expect(gatewaytest.Data(2, content[512:]))
		c.SendError(0, "No error, file close")
		c.ExpectNothing(200 * time.Millisecond)
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
			t.Errorf("outcome %v, want ok", st.Outcome)
		}
	})
}

// TestRFC1350_Section4_UnknownTID: a packet from another port gets ERROR 5
// at that source, and the transfer carries on.
func TestRFC1350_Section4_UnknownTID(t *testing.T) {
	content := gatewaytest.Pattern(600)
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer)
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet")
	c.Expect(gatewaytest.Data(1, content[:512]))
	stranger := gatewaytest.NewClient(t, ts.Addr())
	stranger.SetTID(c.TID())
	stranger.Ack(1)
	stranger.Expect(gatewaytest.ErrorPacket(5, "unknown transfer ID"))
	c.ExpectNothing(100 * time.Millisecond)
	c.Ack(1)
	c.Expect(gatewaytest.Data(2, content[512:]))
	c.Ack(2)
	if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
		t.Errorf("outcome %v, want ok", st.Outcome)
	}
	if n := ts.Config.Stats().UnknownTIDPackets; n != 1 {
		t.Errorf("UnknownTIDPackets %d, want 1", n)
	}
}

// TestDuplicateRRQIgnored: the same RRQ again (same client address, port
// and file) while its session runs starts no second session.
func TestDuplicateRRQIgnored(t *testing.T) {
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": gatewaytest.Pattern(600)}, gatewaytest.FixedTimer)
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet")
	c.Expect(gatewaytest.Data(1, gatewaytest.Pattern(600)[:512]))
	c.RRQ("f", "octet")
	c.RRQ("f", "octet")
	c.ExpectNothing(200 * time.Millisecond)
	c.Ack(1)
	c.Expect(gatewaytest.Data(2, gatewaytest.Pattern(600)[512:]))
	c.Ack(2)
	ts.NextStats(t)
	if n := ts.Config.Stats().DuplicateRequests; n != 2 {
		t.Errorf("DuplicateRequests %d, want 2", n)
	}
}

// TestListeningPortRefusals: WRQ gets ERROR 2, an unknown mode ERROR 4,
// and junk is counted and dropped without an answer.
func TestListeningPortRefusals(t *testing.T) {
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": []byte("x")}, gatewaytest.FixedTimer)
	t.Run("RFC1350_WRQ_read_only_server", func(t *testing.T) {
		c := gatewaytest.NewClient(t, ts.Addr())
		c.SendTo(ts.Addr(), gatewaytest.WriteRequest("boot/grub/grub.cfg", "octet"))
		c.Expect(gatewaytest.ErrorPacket(2, "read-only server"))
	})
	for _, mode := range []string{"mail", "binary", "ascii"} {
		t.Run("RFC1350_unknown_mode_"+mode, func(t *testing.T) {
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("boot/grub/x86_64-efi/core.efi", mode)
			c.Expect(gatewaytest.ErrorPacket(4, "unknown transfer mode"))
		})
	}
	// A reply from the listening port is never longer than the request, so
	// a spoofed source gets no amplification: short requests get a cut
	// message.
	t.Run("reply_no_longer_than_request", func(t *testing.T) {
		c := gatewaytest.NewClient(t, ts.Addr())
		c.SendTo(ts.Addr(), gatewaytest.WriteRequest("f", "o")) // 6 bytes
		c.Expect(gatewaytest.ErrorPacket(2, "r"))
		c.RRQ("f", "x") // 6 bytes
		c.Expect(gatewaytest.ErrorPacket(4, "u"))
	})
	junk := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"one_byte", []byte{0}},
		{"opcode_0", []byte{0, 0, 'f', 0, 'o', 'c', 't', 'e', 't', 0}},
		{"opcode_99", []byte{0, 99, 1, 2}},
		{"DATA_on_listening_port", gatewaytest.Data(1, []byte("x"))},
		{"ACK_on_listening_port", []byte{0, 4, 0, 1}},
		{"ERROR_on_listening_port", gatewaytest.ErrorPacket(0, "x")},
		{"RRQ_without_NUL", []byte{0, 1, 'f', 'o', 'o'}},
		{"RRQ_without_mode", []byte{0, 1, 'f', 0}},
		{"RRQ_empty_filename", []byte{0, 1, 0, 'o', 'c', 't', 'e', 't', 0}},
		{"RRQ_over_512_bytes", gatewaytest.ReadRequest("f", "octet", "x", string(make([]byte, 600)))},
	}
	before := ts.Config.Stats().MalformedPackets
	c := gatewaytest.NewClient(t, ts.Addr())
	for _, j := range junk {
		c.SendTo(ts.Addr(), j.b)
	}
	c.ExpectNothing(200 * time.Millisecond)
	if got := ts.Config.Stats().MalformedPackets - before; got != int64(len(junk)) {
		t.Errorf("MalformedPackets grew by %d, want %d", got, len(junk))
	}
	// The server still serves.
	c.RRQ("f", "octet")
	c.Expect(gatewaytest.Data(1, []byte("x")))
	c.Ack(1)
	ts.NextStats(t)
}

// TestHandlerErrors: handler errors map to TFTP codes without leaking
// their text; an *Error is sent as it is.
func TestHandlerErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want []byte
	}{
		{"not_found_is_1", fmt.Errorf("open /srv/secret/f: %w", fs.ErrNotExist), gatewaytest.ErrorPacket(1, "file not found")},
		{"permission_is_2", fmt.Errorf("open /srv/secret/f: %w", fs.ErrPermission), gatewaytest.ErrorPacket(2, "access violation")},
		{"other_is_0_without_text", fmt.Errorf("db at 10.1.2.3 down"), gatewaytest.ErrorPacket(0, "internal error")},
		{"explicit_code_and_message", &gateway.Error{Code: 2, Message: "not for you"}, gatewaytest.ErrorPacket(2, "not for you")},
		{"wrapped_explicit_error", fmt.Errorf("x: %w", &gateway.Error{Code: 0, Message: "server busy"}), gatewaytest.ErrorPacket(0, "server busy")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) { return nil, tt.err })
			ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer)
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", "octet", "tsize", "0")
			c.Expect(tt.want)
			c.ExpectNothing(100 * time.Millisecond)
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeError {
				t.Errorf("outcome %v, want error", st.Outcome)
			}
		})
	}
	t.Run("panic_is_error_0_and_server_survives", func(t *testing.T) {
		h := gateway.HandlerFunc(func(_ context.Context, r *gateway.Request) (gateway.Content, error) {
			if r.Path == "boom" {
				panic("boom")
			}
			return gateway.BytesContent([]byte("x")), nil
		})
		ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer)
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("boom", "octet")
		c.Expect(gatewaytest.ErrorPacket(0, "internal error"))
		ts.NextStats(t)
		c2 := gatewaytest.NewClient(t, ts.Addr())
		c2.RRQ("ok", "octet")
		c2.Expect(gatewaytest.Data(1, []byte("x")))
		c2.Ack(1)
		ts.NextStats(t)
	})
}

// TestPathHygiene: the handler sees the normalised path; escapes are
// refused with ERROR 2 before the handler runs.
func TestPathHygiene(t *testing.T) {
	tests := []struct {
		raw  string
		want string // "" means refused
		code uint16
	}{
		{`\Boot\BCD`, "Boot/BCD", 0},
		{`/boot\x64\wdsnbp.com`, "boot/x64/wdsnbp.com", 0},
		{"//pxelinux.cfg//default", "pxelinux.cfg/default", 0},
		{"pxelinux.0\xff\xff\xff", "pxelinux.0", 0},
		{"a/./b/../c", "a/c", 0},
		{"../etc/passwd", "", 2},
		{"/../etc/passwd", "", 2},
		{`..\..\windows`, "", 2},
		{"a/../../b", "", 2},
		{"/", "", 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.raw), func(t *testing.T) {
			seen := make(chan [2]string, 1)
			h := gateway.HandlerFunc(func(_ context.Context, r *gateway.Request) (gateway.Content, error) {
				seen <- [2]string{r.RawPath, r.Path}
				return gateway.BytesContent(nil), nil
			})
			ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer)
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ(tt.raw, "octet")
			if tt.want == "" {
				msg := "access violation"
				if tt.code == 1 {
					msg = "file not found"
				}
				c.Expect(gatewaytest.ErrorPacket(tt.code, msg))
				select {
				case s := <-seen:
					t.Fatalf("handler called with %q", s)
				default:
				}
			} else {
				c.Expect(gatewaytest.Data(1, nil))
				c.Ack(1)
				if s := <-seen; s != [2]string{tt.raw, tt.want} {
					t.Errorf("handler saw %q, want raw %q, path %q", s, tt.raw, tt.want)
				}
			}
			ts.NextStats(t)
		})
	}
}

// TestRFC1123_4_2_3_2_AdaptiveTimeout: without a negotiated timeout, the
// retransmission timer follows the measured round trip, so a lost ACK on
// loopback is answered long before the configured timeout; a negotiated
// timeout is used exactly.
func TestRFC1123_4_2_3_2_AdaptiveTimeout(t *testing.T) {
	content := gatewaytest.Pattern(20 * 512)
	t.Run("adapts_to_the_round_trip", func(t *testing.T) {
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout, s.MinTimeout = 5*time.Second, 0 })
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet")
		for n := 1; n <= 10; n++ {
			c.Expect(gatewaytest.Data(uint16(n), content[(n-1)*512:n*512]))
			c.Ack(uint16(n))
		}
		c.Expect(gatewaytest.Data(11, content[10*512:11*512]))
		start := time.Now()
		c.Expect(gatewaytest.Data(11, content[10*512:11*512])) // our ACK "was lost"
		if d := time.Since(start); d > 2500*time.Millisecond {
			t.Errorf("resent after %v, want well under the 5s timeout", d)
		}
		c.SendError(0, "bye")
		if st := ts.NextStats(t); st.Retransmits != 1 {
			t.Errorf("retransmits %d, want 1", st.Retransmits)
		}
	})
	t.Run("negotiated_timeout_is_not_adapted", func(t *testing.T) {
		ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.MinTimeout = 0 })
		c := gatewaytest.NewClient(t, ts.Addr())
		c.RRQ("f", "octet", "timeout", "1")
		c.Expect(gatewaytest.OACK("timeout", "1"))
		c.Ack(0)
		for n := 1; n <= 5; n++ {
			c.Expect(gatewaytest.Data(uint16(n), content[(n-1)*512:n*512]))
			c.Ack(uint16(n))
		}
		c.Expect(gatewaytest.Data(6, content[5*512:6*512]))
		start := time.Now()
		c.Expect(gatewaytest.Data(6, content[5*512:6*512]))
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Errorf("resent after %v, want the negotiated 1s", d)
		}
		c.SendError(0, "bye")
		ts.NextStats(t)
	})
}

// TestRFC1123_4_2_3_5_BroadcastRRQIgnored: a request sent to a broadcast
// address gets no answer at all.
func TestRFC1123_4_2_3_5_BroadcastRRQIgnored(t *testing.T) {
	ts := gatewaytest.NewServerOn(t, "udp4", "0.0.0.0:0", gatewaytest.Files{"f": []byte("x")}, gatewaytest.FixedTimer)
	c := gatewaytest.NewClient(t, ts.Addr())
	rc, err := c.Conn().SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1) })
	c.SendTo(netip.AddrPortFrom(netip.MustParseAddr("127.255.255.255"), ts.Addr().Port()), gatewaytest.ReadRequest("f", "octet"))
	c.ExpectNothing(200 * time.Millisecond)
	if n := ts.Config.Stats().IgnoredBroadcasts; n != 1 {
		t.Errorf("IgnoredBroadcasts %d, want 1", n)
	}
	c.SendTo(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ts.Addr().Port()), gatewaytest.ReadRequest("f", "octet"))
	c.Expect(gatewaytest.Data(1, []byte("x")))
	c.Ack(1)
	ts.NextStats(t)
}

// TestAdaptiveTimeoutKeepsTheFixedDeadline: the adaptive timer spends the
// retries quickly, but the session still waits for its client until
// (retries+1) x Timeout after the last progress, so a client with a slow
// timer (2 s in tftp-hpa, 6 s in curl) is not given up on early.
func TestAdaptiveTimeoutKeepsTheFixedDeadline(t *testing.T) {
	content := gatewaytest.Pattern(20 * 512)
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) {
		s.Timeout, s.Retries, s.MinTimeout = 300*time.Millisecond, 2, 0
	})
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet")
	for n := 1; n <= 5; n++ {
		c.Expect(gatewaytest.Data(uint16(n), content[(n-1)*512:n*512]))
		c.Ack(uint16(n))
	}
	c.Expect(gatewaytest.Data(6, content[5*512:6*512]))
	c.Expect(gatewaytest.Data(6, content[5*512:6*512])) // two quick retransmissions
	c.Expect(gatewaytest.Data(6, content[5*512:6*512]))
	c.ExpectNothing(300 * time.Millisecond) // the retries are spent ...
	c.Ack(6)                                // ... and a late ACK still counts
	c.Expect(gatewaytest.Data(7, content[6*512:7*512]))
	c.SendError(0, "bye")
	if st := ts.NextStats(t); st.Outcome != gateway.OutcomeAborted || st.Retransmits != 2 {
		t.Errorf("outcome %v retransmits %d; want aborted, 2", st.Outcome, st.Retransmits)
	}
}
