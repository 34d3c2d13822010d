package gateway_test

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// windowedSession starts a transfer of content with windowsize 4 and a
// negotiated timeout of 5 s (the server's timer: it never fires in these
// tests), acknowledges the first window and receives DATA 5-8.
func windowedSession(t *testing.T, content []byte) (*gatewaytest.Server, *gatewaytest.Client) {
	t.Helper()
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer)
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet", "timeout", "5", "windowsize", "4")
	c.Expect(gatewaytest.OACK("timeout", "5", "windowsize", "4"))
	c.Ack(0)
	for b := 1; b <= 4; b++ {
		c.Expect(gatewaytest.Data(uint16(b), content[(b-1)*512:b*512]))
	}
	c.Ack(4)
	for b := 5; b <= 8; b++ {
		c.Expect(gatewaytest.Data(uint16(b), content[(b-1)*512:b*512]))
	}
	return ts, c
}

// TestRFC7440_ClientTimerDuplicateACKRestartsTheWindow: the tail of a
// window is lost, so nothing shows the client a gap; its timer fires and
// it acknowledges the last block it has again (RFC 7440 section 4, the
// receiver's side). That duplicate, coming after a quiet spell, is the
// client's timer and restarts the window at once instead of at the
// server's own timeout (5 s here): before, the server ignored it, and a
// client whose patience is shorter than the server's timer gave up.
func TestRFC7440_ClientTimerDuplicateACKRestartsTheWindow(t *testing.T) {
	content := gatewaytest.Pattern(12*512 + 100)
	ts, c := windowedSession(t, content)
	// DATA 5-8 "lost": the client's timer (300 ms) re-acknowledges 4.
	time.Sleep(300 * time.Millisecond)
	c.Ack(4)
	for b := 5; b <= 8; b++ {
		c.ExpectWithin(2*time.Second, gatewaytest.Data(uint16(b), content[(b-1)*512:b*512]))
	}
	c.ExpectNothing(200 * time.Millisecond)
	c.Ack(8)
	for b := 9; b <= 12; b++ {
		c.Expect(gatewaytest.Data(uint16(b), content[(b-1)*512:b*512]))
	}
	c.Ack(12)
	c.Expect(gatewaytest.Data(13, content[12*512:]))
	c.Ack(13)
	st := ts.NextStats(t)
	if st.Outcome != gateway.OutcomeOK || st.Retransmits != 4 || st.DuplicateAcks != 1 {
		t.Errorf("outcome %v, retransmits %d, duplicate ACKs %d; want ok, 4, 1", st.Outcome, st.Retransmits, st.DuplicateAcks)
	}
}

// TestRFC7440_DuplicateACKBurstRestartsOnce: EDK2 acknowledges every block
// that arrives out of order with the last in-order one, so a gap brings a
// burst of identical ACKs. The first restarts the window (RFC 7440); the
// rest, arriving within a round trip, are ignored (no Sorcerer's
// Apprentice). Later, after a quiet spell, the client's timer duplicate
// restarts the window once more, and the burst that follows it does not.
func TestRFC7440_DuplicateACKBurstRestartsOnce(t *testing.T) {
	content := gatewaytest.Pattern(12*512 + 100)
	ts, c := windowedSession(t, content)
	// DATA 6 lost; 7 and 8 arrive out of order: ACK 5, 5, 5.
	c.Ack(5)
	c.Ack(5)
	c.Ack(5)
	for b := 6; b <= 9; b++ {
		c.Expect(gatewaytest.Data(uint16(b), content[(b-1)*512:b*512]))
	}
	c.ExpectNothing(300 * time.Millisecond)
	// All of 6-9 lost: the timer's duplicate, then another burst.
	for range 4 {
		c.Ack(5)
	}
	for b := 6; b <= 9; b++ {
		c.ExpectWithin(2*time.Second, gatewaytest.Data(uint16(b), content[(b-1)*512:b*512]))
	}
	c.ExpectNothing(300 * time.Millisecond)
	c.SendError(0, "enough")
	st := ts.NextStats(t)
	if st.Retransmits != 3+4 || st.DuplicateAcks != 2+4 {
		t.Errorf("retransmits %d, duplicate ACKs %d; want 7 (6-8 on the gap, 6-9 on the timer), 6", st.Retransmits, st.DuplicateAcks)
	}
}

// TestRFC7440_DuplicateACKNeverResendsInLockStep: RFC 1123 4.2.3.1 holds
// for windowsize 1 whatever the timing.
func TestRFC7440_DuplicateACKNeverResendsInLockStep(t *testing.T) {
	content := gatewaytest.Pattern(4*512 + 100)
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer)
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet", "timeout", "5")
	c.Expect(gatewaytest.OACK("timeout", "5"))
	c.Ack(0)
	c.Expect(gatewaytest.Data(1, content[:512]))
	c.Ack(1)
	c.Expect(gatewaytest.Data(2, content[512:1024]))
	time.Sleep(300 * time.Millisecond)
	c.Ack(1)
	c.ExpectNothing(500 * time.Millisecond)
	c.SendError(0, "enough")
	ts.NextStats(t)
}

// TestClientTimerRecoversLossyWindows: 60 transfers with windowsize 4
// through a proxy dropping 5 % of the packets each way, by a client that
// re-acknowledges after 300 ms and gives up after 10 tries (3.3 s), while
// the server's negotiated timer is 5 s. Every transfer completes only if
// the server takes the client's timer duplicates for what they are: with
// the server's timer alone, a window whose tail is lost (about one in
// ten) outlasts the client. The DATA sent stay within a Go-Back-N
// sender's cost: no retransmission storm.
func TestClientTimerRecoversLossyWindows(t *testing.T) {
	const (
		transfers = 60
		parallel  = 10
		blocks    = 17 // 4 windows and a final block
	)
	content := gatewaytest.Pattern((blocks-1)*512 + 100)
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, func(s *gateway.Server) { s.Retries = 5 })
	p := gatewaytest.NewProxy(t, ts.Addr(), gatewaytest.ProxyConfig{
		DropRate: 0.05, Seed: 5,
		// The client sends its final ACK once and does not dally; the
		// OACK's loss is recovered by the server's timer alone (a
		// repeated RRQ is not a retransmission request), which is not
		// what is measured here.
		Exempt: func(d gatewaytest.Direction, b []byte) bool {
			op, _ := wire.PacketOpcode(b)
			return op == wire.OpOACK || ackBlock(blocks)(d, b)
		},
	})
	var (
		mu     sync.Mutex
		failed []error
		wg     sync.WaitGroup
		sem    = make(chan struct{}, parallel)
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for range transfers {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var buf bytes.Buffer
			_, err := tftpclient.Get(ctx, p.Addr().String(), "f", &buf, tftpclient.Options{
				WindowSize: 4, Timeout: 5, RetransmitTimeout: 300 * time.Millisecond, Retries: 10,
			})
			if err == nil && !bytes.Equal(buf.Bytes(), content) {
				err = errWrongBytes
			}
			if err != nil {
				mu.Lock()
				failed = append(failed, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Errorf("%d of %d transfers failed, first: %v", len(failed), transfers, failed[0])
	}
	var retransmits int64
	for range transfers {
		retransmits += ts.NextStats(t).Retransmits
	}
	ps := p.Stats()
	data := ps.ServerData()
	// Go-Back-N with W = 4 at p = 5 %: about 1.6 DATA per block (see
	// loss_test.go); allow 1 + 2*(W+2)*p = 1.6 per block and a window per
	// transfer.
	if bound := int64(transfers * (blocks*16/10 + 4)); data > bound {
		t.Errorf("server sent %d DATA for %d blocks, more than %d: a retransmission storm", data, transfers*blocks, bound)
	}
	t.Logf("%d transfers, %d DATA for %d blocks, %d retransmits, dropped %v", transfers, data, transfers*blocks, retransmits, ps.Dropped)
}

var errWrongBytes = errorString("received bytes differ from the content")

type errorString string

func (e errorString) Error() string { return string(e) }

// TestEDK2DuplicateACKBurstsThroughLoss: a client that acknowledges every
// block arriving out of order (EDK2) sends bursts of duplicate ACKs on
// every loss. Through a proxy dropping 5 % of the packets each way, 20
// transfers with windowsize 8 complete, and the DATA the server sends
// stay within a Go-Back-N sender's cost: the bursts never turn into a
// retransmission storm (Sorcerer's Apprentice), client timer or not.
func TestEDK2DuplicateACKBurstsThroughLoss(t *testing.T) {
	const (
		transfers = 20
		blocks    = 65 // 8 windows and a final block
		window    = 8
	)
	content := gatewaytest.Pattern((blocks-1)*512 + 100)
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, func(s *gateway.Server) { s.Retries = 10 })
	p := gatewaytest.NewProxy(t, ts.Addr(), gatewaytest.ProxyConfig{
		DropRate: 0.05, Seed: 7,
		Exempt: func(d gatewaytest.Direction, b []byte) bool {
			op, _ := wire.PacketOpcode(b)
			return op == wire.OpOACK || ackBlock(blocks)(d, b)
		},
	})
	var wg sync.WaitGroup
	errs := make(chan error, transfers)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for range transfers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			_, err := tftpclient.Get(ctx, p.Addr().String(), "f", &buf, tftpclient.Options{
				WindowSize: window, Timeout: 1, RetransmitTimeout: 300 * time.Millisecond, Retries: 10, AckEveryGap: true,
			})
			if err == nil && !bytes.Equal(buf.Bytes(), content) {
				err = errWrongBytes
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("transfer: %v", err)
		}
	}
	var dupAcks int64
	for range transfers {
		dupAcks += ts.NextStats(t).DuplicateAcks
	}
	ps := p.Stats()
	// Go-Back-N with W = 8 at p = 5 %: 1 + 2*(W+2)*p = 2 DATA per block,
	// and a window per transfer.
	if data, bound := ps.ServerData(), int64(transfers*(2*blocks+window)); data > bound {
		t.Errorf("server sent %d DATA for %d blocks, more than %d: a retransmission storm", data, transfers*blocks, bound)
	}
	if dupAcks == 0 {
		t.Error("no duplicate ACK reached the server: the test does not exercise bursts")
	}
	t.Logf("%d DATA for %d blocks, %d duplicate ACKs, dropped %v", ps.ServerData(), transfers*blocks, dupAcks, ps.Dropped)
}

// slowEDK2 fetches f with windowsize w, taking perPacket to process each
// packet (a slow firmware or a slow link), acknowledging every block that
// arrives out of order or again with the last in-order one (EDK2), and
// losing DATA lose once. It returns the DATA packets received.
func slowEDK2(t *testing.T, ts *gatewaytest.Server, w int, perPacket time.Duration, lose uint16) int {
	t.Helper()
	c := gatewaytest.NewClient(t, ts.Addr())
	c.Conn().SetReadBuffer(16 << 20)
	c.RRQ("f", "octet", "windowsize", strconv.Itoa(w), "timeout", "5")
	expected, since, got, lost := uint16(1), 0, 0, false
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := c.Recv(10 * time.Second)
		time.Sleep(perPacket)
		switch b[1] {
		case 6:
			c.Ack(0)
			continue
		case 3:
		default:
			t.Fatalf("got %q", gatewaytest.Abbrev(b))
		}
		got++
		blk := uint16(b[2])<<8 | uint16(b[3])
		if blk == lose && !lost {
			lost = true
			continue
		}
		if blk != expected {
			since = 0
			c.Ack(expected - 1)
			continue
		}
		expected++
		since++
		if len(b) < 4+512 {
			c.Ack(blk)
			return got
		}
		if since == w {
			since = 0
			c.Ack(blk)
		}
	}
	t.Fatal("transfer did not end within 60 s")
	return 0
}

// TestRFC7440_SlowDuplicateACKBurstsFeedNoStorm: a client that
// acknowledges every block arriving out of order or again (EDK2), and
// takes 2 ms per packet (a slow firmware, or a window crossing a slow
// link), sends bursts of duplicate ACKs that last longer than the quiet
// spell (100 ms on loopback). The tail of each burst was taken for the
// client's timer and resent the window the client already had, whose
// copy brought the next burst: after one lost block, every window went
// out twice until the end (1536 DATA for 769 blocks). The ACKs of a burst
// follow each other closely; a timer's duplicate comes after a silence.
func TestRFC7440_SlowDuplicateACKBurstsFeedNoStorm(t *testing.T) {
	const w, windows = 64, 12
	content := gatewaytest.Pattern(w*windows*512 + 100)
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout = 5 * time.Second })
	got := slowEDK2(t, ts, w, 2*time.Millisecond, 2)
	st := ts.NextStats(t)
	blocks := w*windows + 1
	t.Logf("%d DATA for %d blocks; retransmits %d, duplicate ACKs %d, outcome %v", got, blocks, st.Retransmits, st.DuplicateAcks, st.Outcome)
	// One loss: the rest of its window again, at most.
	if got > blocks+2*w {
		t.Errorf("%d DATA for %d blocks and one loss: a retransmission storm", got, blocks)
	}
}

// TestClientTimerAfterARetransmittedACK0 (found in review): the client's
// ACK 0 was lost and its retransmission, 300 ms later, completed the OACK's
// round-trip sample, so the quiet spell grew to over a second and the
// client's timer duplicates after a tail loss were ignored for as long.
// The quiet spell now follows the smallest round trip seen.
func TestClientTimerAfterARetransmittedACK0(t *testing.T) {
	content := gatewaytest.Pattern(12*512 + 100)
	ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer)
	c := gatewaytest.NewClient(t, ts.Addr())
	c.RRQ("f", "octet", "timeout", "5", "windowsize", "4")
	c.Expect(gatewaytest.OACK("timeout", "5", "windowsize", "4"))
	time.Sleep(300 * time.Millisecond) // the first ACK 0 was lost
	c.Ack(0)
	for b := 1; b <= 4; b++ {
		c.Expect(gatewaytest.Data(uint16(b), content[(b-1)*512:b*512]))
	}
	c.Ack(4)
	for b := 5; b <= 8; b++ { // "lost"
		c.Expect(gatewaytest.Data(uint16(b), content[(b-1)*512:b*512]))
	}
	time.Sleep(300 * time.Millisecond)
	c.Ack(4)
	c.ExpectWithin(time.Second, gatewaytest.Data(5, content[4*512:5*512]))
	c.SendError(0, "enough")
	ts.NextStats(t)
}
