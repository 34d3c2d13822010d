package gateway_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
)

// TestRFC2349_ContentKeepsItsSize: a content that turns out shorter or
// longer than the size it declared (the tsize the client was told) ends
// the session with ERROR 0 where it differs, instead of a short block the
// client would take for a complete file, or bytes past the size. A file
// truncated or rewritten under a transfer, or a backend's mistake.
func TestRFC2349_ContentKeepsItsSize(t *testing.T) {
	tests := []struct {
		name     string
		mode     string
		declared int64
		actual   int
		wantFull int // full blocks the client gets before the ERROR
	}{
		{"shorter_inside_a_block", "octet", 1000, 700, 1},
		{"shorter_at_a_block_boundary", "octet", 1024, 512, 1},
		{"shorter_empty", "octet", 100, 0, 0},
		{"longer_inside_a_block", "octet", 600, 700, 1},
		// The end is checked before the last full block goes out, so the
		// client never holds every byte of the wrong file.
		{"longer_after_a_multiple_of_the_block_size", "octet", 1024, 1100, 1},
		// netascii sends no tsize (the converted length is not known), but
		// the content's own bytes are still counted against its size: a
		// regression test, a truncated file went out as complete.
		{"netascii_shorter", "netascii", 1000, 10, 0},
		{"netascii_longer", "netascii", 5, 10, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := bytes.Repeat([]byte("0123456789"), 1+tt.actual/10)[:tt.actual] // no netascii conversion
			h := gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
				return gateway.NewContent(io.NopCloser(bytes.NewReader(content)), tt.declared), nil
			})
			ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer)
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", tt.mode)
			for i := 1; i <= tt.wantFull; i++ {
				c.Expect(gatewaytest.Data(uint16(i), content[(i-1)*512:i*512]))
				c.Ack(uint16(i))
			}
			c.Expect(gatewaytest.ErrorPacket(0, "file changed while being sent"))
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeError {
				t.Errorf("outcome %v, want error", st.Outcome)
			}
		})
	}
}
