package tftpclient

import (
	"io"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/internal/tftpclient/tftpclienttest"
)

// TestTimeToFirstWire: the kernel-stamped time to the first DATA is the
// wait on the server (here a retransmission of DATA 1 after a loss),
// with and without an OACK, and never more than what the caller saw.
func TestTimeToFirstWire(t *testing.T) {
	const rto = 150 * time.Millisecond
	tests := []struct {
		name string
		opts Options
		drop bool // the server loses DATA 1 once and resends it after rto
	}{
		{"no_options", Options{}, false},
		{"OACK", Options{BlockSize: 1024, TSize: true}, false},
		{"no_options_DATA_1_lost", Options{}, true},
		{"OACK_DATA_1_lost", Options{BlockSize: 1024, TSize: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tftpclienttest.NewServer(t, tftpclienttest.Config{
				Files:      map[string][]byte{"f": payload(3000)},
				Retransmit: rto,
				DropData:   func(index, attempt int) bool { return tt.drop && index == 1 && attempt == 0 },
			})
			res, err := Get(ctxT(t), srv.Addr(), "f", io.Discard, fast(tt.opts))
			if err != nil {
				t.Fatal(err)
			}
			w := res.TimeToFirstWire
			if w <= 0 || w > res.TimeToFirst {
				t.Fatalf("TimeToFirstWire %v, TimeToFirst %v: want 0 < wire <= observed", w, res.TimeToFirst)
			}
			if tt.drop && w < rto {
				t.Errorf("TimeToFirstWire %v, want >= %v (the server's resend)", w, rto)
			}
			if !tt.drop && w >= rto {
				t.Errorf("TimeToFirstWire %v without a loss", w)
			}
		})
	}
}
