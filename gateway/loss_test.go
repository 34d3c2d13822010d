package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// Transfers through a lossy proxy (gatewaytest.Proxy) must arrive
// byte-identical, and the server must not flood the network while it
// recovers. Both ends use short retransmission timeouts so that a loss
// costs tens of milliseconds.
//
// The bounds on the DATA packets the server sends, for a file of `blocks`
// blocks, window W and loss rate p in each direction:
//
//  1. Accounting, exact: every DATA is either a block's first
//     transmission or counted in SessionStats.Retransmits, as is every
//     OACK after the first. So
//     DATA(proxy) = blocks + Retransmits - (OACKs(proxy) - 1),
//     and PacketsSent = DATA + OACKs (no ERROR is sent).
//
//  2. Per impairment, from what the proxy actually did: the server resends
//     only on a timeout or when an ACK moves the window to a block it had
//     already sent, and resends at most one window (W packets) each time.
//     A lost DATA or ACK, a duplicated or reordered datagram causes at most
//     two such restarts (the restart, then one more when the client's
//     gap-ACK of RFC 7440 itself is lost or overtaken), so
//     DATA - blocks <= 2*W*(impairments) + slack*W,
//     where slack (4) allows for timeouts that fire spuriously when the race
//     detector slows a run down. A retransmission storm (resending on every
//     duplicate ACK, say) breaks this at once: it grows with the traffic,
//     not with the impairments.
//
//  3. Expected cost, from the rate: a Go-Back-N sender that restarts its
//     window at the first loss sends about
//     E(W, p) = W*p / ((1-p)^2 * (1-(1-p)^W))
//     DATA per block (1/(1-p)^2 in lock-step: each lost DATA or ACK costs
//     one resend). Linearised, E <= 1 + k*p with k = 2*(W+2) over the
//     rates tested, which leaves a margin of 1.4x or more on the
//     retransmissions over E. A duplicated or reordered datagram costs at
//     most one window restart (W) where it hits DATA, about half of them,
//     so with duplication rate d and reordering rate r
//     DATA <= blocks*(1 + 2*(W+2)*p + W*(d+r)) + 4*W.
const lossTimeout = 50 * time.Millisecond

type lossCase struct {
	name           string
	window         int
	size           int
	drop, dup, reo float64
	delay, jitter  time.Duration
	seed           int64
	// offload serves the file in single-port mode from a content whose
	// blocks are at hand, so that the listener's read loop answers the
	// lock-step ACKs (TestSinglePortOffload).
	offload bool
}

func TestLossyTransfers(t *testing.T) {
	var cases []lossCase
	for _, w := range []int{1, 8, 32} {
		for i, p := range []float64{0.01, 0.05, 0.20} {
			cases = append(cases, lossCase{
				name: fmt.Sprintf("loss_%g%%_window_%d", p*100, w), window: w,
				size: 256<<10 + 333, drop: p, seed: int64(100*w + i),
			})
		}
		cases = append(cases, lossCase{
			name: fmt.Sprintf("duplicate_10%%_reorder_10%%_window_%d", w), window: w,
			size: 256<<10 + 333, dup: 0.10, reo: 0.10, seed: int64(7 + w),
		})
	}
	cases = append(cases,
		// A fixed delay keeps the order; jitter wider than the gap between
		// the packets of a burst would shuffle every window, so it is
		// used in lock-step only, where one packet is in flight.
		lossCase{name: "loss_5%_duplicate_5%_reorder_5%_delay_1ms_window_8", window: 8, size: 512 << 10, drop: 0.05, dup: 0.05, reo: 0.05, delay: time.Millisecond, seed: 99},
		lossCase{name: "loss_5%_delay_1ms_jitter_2ms_window_1", window: 1, size: 256 << 10, drop: 0.05, delay: time.Millisecond, jitter: 2 * time.Millisecond, seed: 98},
		lossCase{name: "loss_1%_window_32_1MiB", window: 32, size: 1 << 20, drop: 0.01, seed: 5},
		lossCase{name: "single_port_offloaded_loss_5%_window_1", window: 1, size: 256<<10 + 333, drop: 0.05, seed: 11, offload: true},
		lossCase{name: "single_port_offloaded_loss_20%_window_1", window: 1, size: 256<<10 + 333, drop: 0.20, seed: 12, offload: true},
		lossCase{name: "single_port_offloaded_duplicate_10%_reorder_10%_window_1", window: 1, size: 256<<10 + 333, dup: 0.10, reo: 0.10, seed: 13, offload: true},
		lossCase{name: "single_port_offloaded_loss_5%_delay_1ms_jitter_2ms_window_1", window: 1, size: 256 << 10, drop: 0.05, delay: time.Millisecond, jitter: 2 * time.Millisecond, seed: 14, offload: true},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runLossCase(t, tc)
		})
	}
}

func runLossCase(t *testing.T, tc lossCase) {
	const blksize = 1468
	content := gatewaytest.Pattern(tc.size)
	var h gateway.Handler = gatewaytest.Files{"f": content}
	var atHand atomic.Int64
	if tc.offload {
		h = gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
			return &handContent{b: content, hand: len(content), atHand: &atHand, rds: new(atomic.Int64)}, nil
		})
	}
	ts := gatewaytest.NewServer(t, h, func(s *gateway.Server) {
		s.Timeout, s.Retries, s.SinglePort = lossTimeout, 20, tc.offload
	})
	if tc.offload {
		defer func() {
			if atHand.Load() == 0 {
				t.Error("no block was answered by the read loop")
			}
		}()
	}
	p := gatewaytest.NewProxy(t, ts.Addr(), gatewaytest.ProxyConfig{
		DropRate: tc.drop, DuplicateRate: tc.dup, ReorderRate: tc.reo,
		Delay: tc.delay, Jitter: tc.jitter, Seed: tc.seed,
		// The client sends its final ACK once and returns (it does not
		// dally): losing it would leave the server resending the last
		// window until its retries run out, which is RFC 1350's known
		// weakness, not what is measured here.
		Exempt: ackBlock(uint16(tc.size/blksize + 1)),
	})
	var buf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	res, err := tftpclient.Get(ctx, p.Addr().String(), "f", &buf, tftpclient.Options{
		BlockSize: blksize, WindowSize: tc.window, TSize: true,
		Retries: 20, RetransmitTimeout: lossTimeout,
	})
	if err != nil {
		t.Fatalf("Get: %v (after %v, %d bytes)", err, time.Since(start), res.Size)
	}
	if !bytes.Equal(buf.Bytes(), content) {
		t.Fatalf("received %d bytes, not identical to the %d sent", buf.Len(), len(content))
	}
	st := ts.NextStats(t)
	if st.Outcome != gateway.OutcomeOK || st.BytesAcked != int64(len(content)) {
		t.Errorf("outcome %v, %d bytes acked; want ok, %d", st.Outcome, st.BytesAcked, len(content))
	}
	ps := p.Stats()
	checkDataBounds(t, tc, blksize, st, ps, time.Since(start))
}

// checkDataBounds checks the three bounds documented at the top of the
// file.
func checkDataBounds(t *testing.T, tc lossCase, blksize int, st gateway.SessionStats, ps gatewaytest.ProxyStats, took time.Duration) {
	t.Helper()
	blocks := int64(tc.size/blksize + 1)
	w := int64(tc.window)
	data, oacks := ps.ServerData(), ps.FromServer[wire.OpOACK]
	if oacks < 1 || ps.FromServer[wire.OpERROR] != 0 || ps.FromServer[0] != 0 {
		t.Errorf("server sent %d OACKs, %d ERRORs, %d others; want >= 1, 0, 0", oacks, ps.FromServer[wire.OpERROR], ps.FromServer[0])
	}
	// 1. Accounting. The proxy may miss a packet the loopback dropped
	// under a burst, never see one more.
	fromStats := blocks + st.Retransmits - (oacks - 1)
	if data != fromStats {
		t.Logf("proxy saw %d DATA, stats say %d (blocks %d + retransmits %d - OACK resends %d)", data, fromStats, blocks, st.Retransmits, oacks-1)
	}
	if data > fromStats {
		t.Errorf("proxy saw %d DATA, more than the %d the stats account for", data, fromStats)
	}
	if st.PacketsSent != fromStats+oacks {
		t.Errorf("PacketsSent %d, want %d DATA + %d OACK", st.PacketsSent, fromStats, oacks)
	}
	// 2. Per impairment, checked on the stats' count (the larger).
	events := ps.Dropped[0] + ps.Dropped[1] + ps.Duplicated[0] + ps.Duplicated[1] + ps.Reordered[0] + ps.Reordered[1]
	if limit := blocks + 2*w*events + 4*w; fromStats > limit {
		t.Errorf("DATA sent %d > %d = blocks %d + 2*W*%d impairments + 4*W: a retransmission storm", fromStats, limit, blocks, events)
	}
	// 3. Expected cost from the rates.
	k := 2*float64(w+2)*tc.drop + float64(w)*(tc.dup+tc.reo)
	bound := int64(math.Ceil(float64(blocks)*(1+k))) + 4*w
	if fromStats > bound {
		t.Errorf("DATA sent %d > %d = blocks %d * (1 + 2*(W+2)*%.2f + W*%.2f) + 4*W", fromStats, bound, blocks, tc.drop, tc.dup+tc.reo)
	}
	t.Logf("blocks %d, DATA sent %d (%.3f per block; model E=%.3f), bound %d, impairments %d (dropped %v dup %v reordered %v), retransmits %d, dup ACKs %d, %v",
		blocks, data, float64(data)/float64(blocks), expectedCost(tc.window, tc.drop), bound, events, ps.Dropped, ps.Duplicated, ps.Reordered, st.Retransmits, st.DuplicateAcks, took.Round(time.Millisecond))
}

// expectedCost is E(W, p) above: DATA per block of a Go-Back-N sender.
func expectedCost(w int, p float64) float64 {
	if p == 0 {
		return 1
	}
	q := 1 - p
	return float64(w) * p / (q * q * (1 - math.Pow(q, float64(w))))
}

// TestTargetedLoss drops single packets and checks the recovery cost: the
// DATA resends (Retransmits minus OACK resends) must stay within
// [min, max]. A single loss must never cost more than one window and one
// block, however long the file.
func TestTargetedLoss(t *testing.T) {
	const blksize = 1468
	tests := []struct {
		name     string
		blocks   int
		window   int
		drop     func(gatewaytest.Direction, []byte) bool
		min, max int64 // DATA resends
		oacks    int64
	}{
		// Lock-step: the lost block is resent once, on the timeout.
		{"lockstep_DATA_3", 21, 1, dataBlock(3), 1, 1, 1},
		// RFC 7440: blocks 1-8 go out as a burst; the client ACKs 2 on
		// seeing 4, and the window restarts at 3: blocks 3-8 are sent again.
		{"window_8_DATA_3", 21, 8, dataBlock(3), 6, 6, 1},
		// ACK 0 lost: the OACK is resent once, nothing else.
		{"ACK_0", 21, 8, ackBlock(0), 0, 0, 2},
		// The window-end ACK 8 lost: the server times out and resends
		// 1-8; the client, seeing old blocks, ACKs 8 once.
		{"window_8_ACK_8", 21, 8, ackBlock(8), 8, 8, 1},
		// The last block of a window lost: nothing shows the gap, so the
		// server times out and resends 1-8; the client ACKs 7 on seeing
		// the old block 1 and has 8 a moment later. Resending 8 once more
		// on that ACK is tolerable (9); resending every later window (the
		// server restarting on each ACK its own duplicates provoke) is the
		// bug this case and the next one show.
		{"window_8_DATA_8", 21, 8, dataBlock(8), 8, 9, 1},
		{"window_8_DATA_8_400_blocks", 400, 8, dataBlock(8), 8, 9, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			content := gatewaytest.Pattern((tt.blocks-1)*blksize + 100)
			// Exact resend counts need a timer that never fires spuriously,
			// even on a loaded machine: fixed (MinTimeout >= Timeout) and long.
			const timeout = 4 * lossTimeout
			ts := gatewaytest.NewServer(t, gatewaytest.Files{"f": content}, func(s *gateway.Server) {
				s.Timeout, s.MinTimeout, s.Retries = timeout, timeout, 5
			})
			var once atomic.Bool
			p := gatewaytest.NewProxy(t, ts.Addr(), gatewaytest.ProxyConfig{
				Drop: func(d gatewaytest.Direction, b []byte) bool {
					return tt.drop(d, b) && once.CompareAndSwap(false, true)
				},
			})
			var buf bytes.Buffer
			_, err := tftpclient.Get(context.Background(), p.Addr().String(), "f", &buf, tftpclient.Options{
				BlockSize: blksize, WindowSize: tt.window, TSize: true, Retries: 5,
				// Longer than the server's: the server's timer fires first.
				RetransmitTimeout: 4 * timeout,
			})
			if err != nil || !bytes.Equal(buf.Bytes(), content) {
				t.Fatalf("Get: %v, %d bytes", err, buf.Len())
			}
			st := ts.NextStats(t)
			ps := p.Stats()
			if !once.Load() {
				t.Fatal("the packet to drop never came")
			}
			oacks := ps.FromServer[wire.OpOACK]
			resends := st.Retransmits - (oacks - 1)
			if resends < tt.min || resends > tt.max || oacks != tt.oacks || ps.ServerData() != int64(tt.blocks)+resends {
				t.Errorf("%d blocks: DATA resends %d, OACKs %d, DATA sent %d; want resends in [%d, %d], %d OACK, DATA = blocks + resends",
					tt.blocks, resends, oacks, ps.ServerData(), tt.min, tt.max, tt.oacks)
			}
		})
	}
}

func dataBlock(n uint16) func(gatewaytest.Direction, []byte) bool {
	return func(d gatewaytest.Direction, b []byte) bool {
		blk, _, err := wire.ParseData(b)
		return d == gatewaytest.ServerToClient && err == nil && blk == n
	}
}

func ackBlock(n uint16) func(gatewaytest.Direction, []byte) bool {
	return func(d gatewaytest.Direction, b []byte) bool {
		blk, err := wire.ParseAck(b)
		return d == gatewaytest.ClientToServer && err == nil && blk == n
	}
}
