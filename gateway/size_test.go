package gateway_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/tftpgw/tftpgw/gateway"
)

// TestRFC2349_ContentKeepsItsSize: a content that turns out shorter or
// longer than the size it declared (the tsize the client was told) ends
// the session with ERROR 0 where it differs, instead of a short block the
// client would take for a complete file, or bytes past the size. A file
// truncated or rewritten under a transfer, or a backend's mistake.
func TestRFC2349_ContentKeepsItsSize(t *testing.T) {
	tests := []struct {
		name     string
		declared int64
		actual   int
		wantFull int // full blocks the client gets before the ERROR
	}{
		{"shorter_inside_a_block", 1000, 700, 1},
		{"shorter_at_a_block_boundary", 1024, 512, 1},
		{"shorter_empty", 100, 0, 0},
		{"longer_inside_a_block", 600, 700, 1},
		{"longer_after_a_multiple_of_the_block_size", 1024, 1100, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := pattern(tt.actual)
			h := gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
				return gateway.NewContent(io.NopCloser(bytes.NewReader(content)), tt.declared), nil
			})
			ts := startServer(t, h, nil)
			c := newClient(t, ts.addr)
			c.rrq("f", "octet")
			for i := 1; i <= tt.wantFull; i++ {
				c.expect(data(uint16(i), content[(i-1)*512:i*512]))
				c.ack(uint16(i))
			}
			c.expect(errPkt(0, "file changed while being sent"))
			if st := ts.nextStats(t); st.Outcome != gateway.OutcomeError {
				t.Errorf("outcome %v, want error", st.Outcome)
			}
		})
	}
}
