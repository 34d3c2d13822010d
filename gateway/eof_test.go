package gateway_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"testing"
	"testing/iotest"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
)

// TestRFC1350_Section6_EmptyFinalBlockAfterDataWithEOF: io.Reader allows the last bytes to
// come with io.EOF (gzip.Reader, http bodies, iotest.DataErrReader do).
// When such a read completes a full block the session must still send the
// terminating empty DATA (RFC 1350 section 6): a full-size block tells the
// client that more is to come, so without it the client waits in vain
// while the server logs the session as ok.
func TestRFC1350_Section6_EmptyFinalBlockAfterDataWithEOF(t *testing.T) {
	gz := func(b []byte) io.Reader {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		r, err := gzip.NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	dataErr := func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) }
	tests := []struct {
		name string
		mode string
		size int
		wrap func([]byte) io.Reader
	}{
		{"DataErrReader_octet_two_blocks", "octet", 1024, dataErr},
		{"DataErrReader_octet_one_block", "octet", 512, dataErr},
		{"DataErrReader_netascii_two_blocks", "netascii", 1024, dataErr},
		{"gzip_reader_octet_one_block", "octet", 512, gz},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := bytes.Repeat([]byte("x"), tt.size)
			h := gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
				return gateway.NewContent(tt.wrap(content), int64(len(content))), nil
			})
			ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer)
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ("f", tt.mode)
			n := tt.size / 512
			for i := 1; i <= n; i++ {
				c.Expect(gatewaytest.Data(uint16(i), content[(i-1)*512:i*512]))
				c.Ack(uint16(i))
			}
			// The final, empty block must follow.
			b, _, ok := c.TryRecv(time.Second)
			if !ok {
				st := ts.NextStats(t)
				t.Fatalf("no DATA %d (empty final block) after the ACK of full block %d; server ended the session with outcome %v, BytesAcked %d",
					n+1, n, st.Outcome, st.BytesAcked)
			}
			if want := gatewaytest.Data(uint16(n+1), nil); !bytes.Equal(b, want) {
				t.Fatalf("got %q, want %q", gatewaytest.Abbrev(b), want)
			}
			c.Ack(uint16(n + 1))
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
				t.Errorf("outcome %v, want ok", st.Outcome)
			}
		})
	}
}
