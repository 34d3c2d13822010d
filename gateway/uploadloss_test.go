package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// TestLossyUploads: the receiving side through a lossy proxy. Uploads
// with loss, duplication and reordering at 1, 5 and 20 %, in lock-step
// and in windows, are stored byte-identical, once, and the server's ACKs
// do not storm: it sends one per window, plus at most two for each
// impairment (a gap and a duplicate each draw one; a lost ACK is sent
// again on a timeout), plus a few for timeouts.
//
// The server's final ACK is spared, as the client's is in
// TestLossyTransfers: the server dallies one timeout for a repeat of the
// last DATA (TestUploadFinalAckDally), but a lost final ACK with a client
// whose timer is longer would fail an upload that was stored, which is
// RFC 1350's known weakness, not what is measured here.
func TestLossyUploads(t *testing.T) {
	var cases []lossCase
	for _, w := range []int{1, 8} {
		for i, p := range []float64{0.01, 0.05, 0.20} {
			cases = append(cases,
				lossCase{name: fmt.Sprintf("loss_%g%%_window_%d", p*100, w), window: w, size: 128<<10 + 77, drop: p, seed: int64(300*w + i)},
				lossCase{name: fmt.Sprintf("duplicate_%g%%_reorder_%g%%_window_%d", p*100, p*100, w), window: w, size: 128<<10 + 77, dup: p, reo: p, seed: int64(700*w + i)},
			)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runLossyUpload(t, tc)
		})
	}
}

func runLossyUpload(t *testing.T, tc lossCase) {
	const blksize = 1468
	content := gatewaytest.Pattern(tc.size)
	h := &memUploads{}
	ts := gatewaytest.NewServer(t, gatewaytest.Files{}, func(s *gateway.Server) {
		s.WriteHandler = h
		s.Timeout, s.Retries = lossTimeout, 20
	})
	last := uint16(tc.size/blksize + 1)
	p := gatewaytest.NewProxy(t, ts.Addr(), gatewaytest.ProxyConfig{
		DropRate: tc.drop, DuplicateRate: tc.dup, ReorderRate: tc.reo, Seed: tc.seed,
		Exempt: func(d gatewaytest.Direction, b []byte) bool {
			blk, err := wire.ParseAck(b)
			return d == gatewaytest.ServerToClient && err == nil && blk == last
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	res, err := tftpclient.Put(ctx, p.Addr().String(), "up", bytes.NewReader(content), int64(len(content)), tftpclient.Options{
		BlockSize: blksize, WindowSize: tc.window, TSize: true,
		Retries: 20, RetransmitTimeout: lossTimeout,
	})
	if err != nil {
		t.Fatalf("Put: %v (after %v, %d bytes)", err, time.Since(start), res.Size)
	}
	st := ts.NextStats(t)
	if st.Outcome != gateway.OutcomeOK || st.BytesReceived != int64(len(content)) {
		t.Errorf("outcome %v, %d bytes received; want ok, %d", st.Outcome, st.BytesReceived, len(content))
	}
	got, ok := h.file("up")
	if !ok || !bytes.Equal(got, content) {
		t.Fatalf("stored %d bytes (%v), not identical to the %d sent", len(got), ok, len(content))
	}
	ps := p.Stats()
	blocks := int64(last)
	w := int64(tc.window)
	events := ps.Dropped[0] + ps.Dropped[1] + ps.Duplicated[0] + ps.Duplicated[1] + ps.Reordered[0] + ps.Reordered[1]
	acks := ps.FromServer[wire.OpACK] + ps.FromServer[wire.OpOACK]
	if limit := (blocks+w-1)/w + 1 + 2*events + 4; acks > limit {
		t.Errorf("server sent %d ACKs > %d = windows %d + 1 + 2*%d impairments + 4: an ACK storm", acks, limit, (blocks+w-1)/w, events)
	}
	if ps.FromServer[wire.OpERROR] != 0 {
		t.Errorf("server sent %d ERRORs", ps.FromServer[wire.OpERROR])
	}
	t.Logf("blocks %d, server ACKs %d, client datagrams %d, impairments %d (dropped %v dup %v reordered %v), %v",
		blocks, acks, ps.Received[gatewaytest.ClientToServer], events, ps.Dropped, ps.Duplicated, ps.Reordered, time.Since(start).Round(time.Millisecond))
}
